"""A 2.5-D articulated person: body proportions, a pedestrian pose sampler, projection to 18 keypoints.

The skeleton lives in a person frame measured in **torso units** T (OpenPose neck to mid-hip distance):
x = the person's left, y = down, z = the person's forward, origin at the mid-hip. A view is a rotation
about the vertical axis (yaw) followed by an orthographic projection onto the image; the camera looks
along -z, so yaw 0 is a front view (the person's right appears on the image left, as in Market's
front views), yaw 180 a back view (OpenPose labels anatomical sides, so there the right joints appear on
the camera's right) and yaw +-90 a profile.

Keypoint labels follow the reference's annotation files (``pose_utils.LABELS``): the joints stored at
indices 14 ("Leye") and 16 ("Lear") are, measured on the real Market annotations, always on the same
image side as Rsho in front views (99.9 % of 12 k images with both eyes), i.e. the *anatomical right*
eye and ear (the CMU ordering the reference renames). The model reproduces that, so synthetic and real
CSVs agree joint by joint.

Detector misses (the authors' OpenPose port, ``compute_coordinates.py``, drops low-confidence joints) are
modelled as view-dependent self-occlusion of the face joints plus independent per-joint drops, calibrated
so that the overall per-joint missing rates equal :data:`MARKET_MISSING_RATES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from deformgan.errors import InputError
from deformgan.keypoints import JOINT, JOINT_NAMES, MISSING, NUM_JOINTS

#: Per-joint missing rates of the real Market-1501 annotations (train + test, 32,668 images), measured
#: among the 27,052 images whose torso (neck, shoulders, hips) is complete, i.e. the images the reference
#: keeps when building pairs (``create_pairs_dataset.py``). Torso joints are never missing there.
MARKET_MISSING_RATES: dict[str, float] = {
    "nose": 0.386, "neck": 0.0, "Rsho": 0.0, "Relb": 0.197, "Rwri": 0.391, "Lsho": 0.0, "Lelb": 0.220,
    "Lwri": 0.415, "Rhip": 0.0, "Rkne": 0.069, "Rank": 0.207, "Lhip": 0.0, "Lkne": 0.070, "Lank": 0.206,
    "Leye": 0.494, "Reye": 0.504, "Lear": 0.446, "Rear": 0.450,
}  # fmt: skip

#: View classes and their probabilities. Market has about 56 % of front-facing crops (Rsho left of Lsho)
#: and 36 % with neither nose nor eyes (back views); the rest are three-quarter views.
VIEW_NAMES: tuple[str, ...] = ("front", "back", "right", "left")
VIEW_PROBABILITIES: tuple[float, ...] = (0.42, 0.38, 0.10, 0.10)
#: Yaw (degrees) of each view class: centre and half-width of a uniform jitter. "right" = the person
#: turns towards the image right (their own left side faces away from the camera).
VIEW_YAW: dict[str, tuple[float, float]] = {
    "front": (0.0, 40.0), "back": (180.0, 40.0), "right": (62.0, 18.0), "left": (-62.0, 18.0),
}  # fmt: skip

#: Detector localisation noise, in torso units (about 1.5 px at 128x64): the spread of the real Market
#: limb-length ratios (e.g. forearm / upper arm 0.72-0.94 interquartile) is mostly this noise.
KEYPOINT_NOISE = 0.04

#: Face joints hidden by the head itself in each view class (a detector never reports them there).
#: In a three-quarter view turning right (yaw > 0) the person's left side (+x) turns away: the
#: anatomical left eye/ear (indices 15 "Reye" and 17 "Rear", see the module docstring) are hidden.
_VIEW_HIDDEN: dict[str, tuple[int, ...]] = {
    "front": (),
    "back": (JOINT["nose"], JOINT["Leye"], JOINT["Reye"]),
    "right": (JOINT["Reye"], JOINT["Rear"]),
    "left": (JOINT["Leye"], JOINT["Lear"]),
}


def _view_hidden_rates() -> np.ndarray:
    """(18,) probability that each joint is hidden by the view alone (analytic, from the view mixture)."""
    rates = np.zeros(NUM_JOINTS)
    for view, p in zip(VIEW_NAMES, VIEW_PROBABILITIES, strict=True):
        rates[list(_VIEW_HIDDEN[view])] += p
    return rates


def drop_probabilities(missing_rates: Mapping[str, float] | None = None) -> np.ndarray:
    """(18,) per-joint probability of an extra random detector miss, given target overall missing rates.

    A joint is missing when the view hides it (probability h) or, otherwise, by an independent drop
    (probability d): rate = h + (1 - h) d, so d = (rate - h) / (1 - h). Rates below h are unattainable.
    """
    rates = dict(MARKET_MISSING_RATES if missing_rates is None else missing_rates)
    unknown = set(rates) - set(JOINT_NAMES)
    if unknown:
        raise InputError(
            f"missing_rates: unknown joint names {sorted(unknown)}; expected names from JOINT_NAMES"
        )
    hidden = _view_hidden_rates()
    drop = np.zeros(NUM_JOINTS)
    for name, rate in rates.items():
        j = JOINT[name]
        if not 0.0 <= rate <= 1.0:
            raise InputError(f"missing_rates[{name!r}]: expected a rate in [0, 1], got {rate}")
        if rate < hidden[j] - 1e-9:
            raise InputError(
                f"missing_rates[{name!r}] = {rate}: below {hidden[j]:.3f}, the rate at which the sampled "
                "views already hide this face joint"
            )
        drop[j] = 0.0 if hidden[j] >= 1.0 else max(0.0, (rate - hidden[j]) / (1.0 - hidden[j]))
    return drop


def expected_missing_rates(missing_rates: Mapping[str, float] | None = None) -> np.ndarray:
    """(18,) overall missing rates the sampler produces for in-frame joints (the configured rates)."""
    hidden = _view_hidden_rates()
    return hidden + (1.0 - hidden) * drop_probabilities(missing_rates)


@dataclass(frozen=True)
class Body:
    """Per-identity body proportions, in torso units T (3-D lengths, before projection).

    Defaults are tuned so that the projected ratios match the Market annotations
    (``benchmarks/pose_statistics.py``).
    """

    height: float = 1.0  # overall scale factor relative to the frame
    shoulder_half_width: float = 0.43
    hip_half_width: float = 0.26
    upper_arm: float = 0.57
    forearm: float = 0.54
    thigh: float = 0.76
    shin: float = 0.75
    neck_length: float = 0.45  # neck keypoint to head centre
    head_radius: float = 0.25
    torso_depth: float = 0.24  # half-thickness of the chest, front to back
    girth: float = 1.0  # limb thickness factor


def sample_body(rng: np.random.Generator) -> Body:
    """Draw one identity's proportions (a few per cent of variation around :class:`Body`)."""
    base = Body()

    def jitter(value: float, rel: float) -> float:
        return float(value * (1.0 + rel * rng.uniform(-1.0, 1.0)))

    return Body(
        height=jitter(1.0, 0.06),
        shoulder_half_width=jitter(base.shoulder_half_width, 0.10),
        hip_half_width=jitter(base.hip_half_width, 0.10),
        upper_arm=jitter(base.upper_arm, 0.06),
        forearm=jitter(base.forearm, 0.06),
        thigh=jitter(base.thigh, 0.06),
        shin=jitter(base.shin, 0.06),
        neck_length=jitter(base.neck_length, 0.06),
        head_radius=jitter(base.head_radius, 0.06),
        torso_depth=jitter(base.torso_depth, 0.12),
        girth=jitter(1.0, 0.15),
    )


@dataclass(frozen=True)
class Pose:
    """Joint angles (radians) of one image, plus the view.

    Limb angles are per side, index 0 = the person's right, 1 = left. ``*_flex`` swings the limb
    forward (+z) from hanging straight down, ``*_abd`` moves it outward; ``elbow``/``knee`` are flexion
    angles (0 = straight; the elbow bends forward, the knee backward).
    """

    view: str
    yaw: float
    head_yaw: float
    lean: float  # upper-body roll in the image plane
    pitch: float  # upper-body forward bend
    arm_flex: tuple[float, float]
    arm_abd: tuple[float, float]
    elbow: tuple[float, float]
    leg_flex: tuple[float, float]
    leg_abd: tuple[float, float]
    knee: tuple[float, float]


def sample_pose(rng: np.random.Generator) -> Pose:
    """Draw a pedestrian pose: standing or walking, with occasional bent arms (phone, bag, pockets).

    Walking is a gait cycle (phase phi, stride a): hips swing +-28 a degrees in antiphase, the swing
    knee bends, arms swing opposite to the legs. Ranges tuned against the Market annotations.
    """
    view = VIEW_NAMES[int(rng.choice(len(VIEW_NAMES), p=VIEW_PROBABILITIES))]
    centre, half = VIEW_YAW[view]
    yaw = np.radians(centre + rng.uniform(-half, half))
    deg = np.radians
    walking = rng.random() < 0.65
    stride = rng.uniform(0.4, 1.0) if walking else rng.uniform(0.0, 0.3)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    swing = np.sin(phase)
    leg_flex = (deg(40.0) * stride * swing, -deg(40.0) * stride * swing)
    # The leg swinging forward (flex > 0) bends its knee mid-swing; the stance leg stays almost straight.
    knee = tuple(
        deg(6.0) + deg(55.0) * stride * max(0.0, np.sin(phase + s * np.pi + 0.6)) + abs(rng.normal(0, deg(9)))
        for s in (0, 1)
    )
    leg_abd = (deg(rng.uniform(0.0, 14.0)), deg(rng.uniform(0.0, 14.0)))
    arm_flex = [-0.8 * leg_flex[0] + rng.normal(0, deg(6)), -0.8 * leg_flex[1] + rng.normal(0, deg(6))]
    arm_abd = [deg(rng.uniform(6.0, 28.0)), deg(rng.uniform(6.0, 28.0))]
    elbow = [deg(rng.uniform(5.0, 50.0)), deg(rng.uniform(5.0, 50.0))]
    for side in (0, 1):
        action = rng.random()
        if action < 0.22:  # forearm raised in front: phone, cup, holding a strap
            arm_flex[side] = deg(rng.uniform(0.0, 35.0))
            elbow[side] = deg(rng.uniform(55.0, 120.0))
            arm_abd[side] = deg(rng.uniform(0.0, 20.0))
        elif action < 0.32:  # hand on hip / in pocket: elbow out
            arm_abd[side] = deg(rng.uniform(15.0, 35.0))
            elbow[side] = deg(rng.uniform(50.0, 100.0))
            arm_flex[side] = deg(rng.uniform(-20.0, 5.0))
    return Pose(
        view=view,
        yaw=float(yaw),
        head_yaw=float(deg(rng.normal(0.0, 12.0))),
        lean=float(deg(rng.normal(0.0, 4.0))),
        pitch=float(deg(rng.uniform(0.0, 8.0))),
        arm_flex=(float(arm_flex[0]), float(arm_flex[1])),
        arm_abd=(float(arm_abd[0]), float(arm_abd[1])),
        elbow=(float(elbow[0]), float(elbow[1])),
        leg_flex=(float(leg_flex[0]), float(leg_flex[1])),
        leg_abd=(float(leg_abd[0]), float(leg_abd[1])),
        knee=(float(knee[0]), float(knee[1])),
    )


def _direction(flex: float, abd: float, side: float) -> np.ndarray:
    """Unit limb direction: hanging down (+y), swung forward by ``flex``, outward (side * x) by ``abd``."""
    return np.array([side * np.sin(abd), np.cos(abd) * np.cos(flex), np.cos(abd) * np.sin(flex)])


def _rotation_y(angle: float) -> np.ndarray:
    """Yaw about the vertical axis: x' = x cos + z sin, z' = -x sin + z cos (see module docstring)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


#: Extra 3-D points (besides the 18 joints) that the renderer needs, appended after them.
EXTRA_POINTS = ("head", "Rtoe", "Ltoe", "Rhand", "Lhand", "hip_centre")
EXTRA = {name: NUM_JOINTS + i for i, name in enumerate(EXTRA_POINTS)}


def skeleton_3d(body: Body, pose: Pose) -> np.ndarray:
    """(18 + len(EXTRA_POINTS), 3) points in the camera-aligned frame, torso units, origin mid-hip.

    Rows 0-17 are the OpenPose joints in :data:`JOINT_NAMES` order; the extra rows are named by
    :data:`EXTRA_POINTS`. Column 2 is the depth towards the camera (larger = nearer).
    """
    b = body
    p = np.zeros((NUM_JOINTS + len(EXTRA_POINTS), 3))
    # Lower body (person frame, right side = -x).
    for side_index, (hip, knee, ankle, toe) in enumerate(
        (("Rhip", "Rkne", "Rank", "Rtoe"), ("Lhip", "Lkne", "Lank", "Ltoe"))
    ):
        side = -1.0 if side_index == 0 else 1.0
        flex, abd = pose.leg_flex[side_index], pose.leg_abd[side_index]
        p[JOINT[hip]] = (side * b.hip_half_width, 0.0, 0.0)
        p[JOINT[knee]] = p[JOINT[hip]] + b.thigh * _direction(flex, abd, side)
        p[JOINT[ankle]] = p[JOINT[knee]] + b.shin * _direction(flex - pose.knee[side_index], abd, side)
        p[EXTRA[toe]] = p[JOINT[ankle]] + np.array([0.0, 0.06, 0.24])
    # Upper body, built upright then bent (pitch) and leaned (roll) about the mid-hip.
    upper = {}
    upper["neck"] = np.array([0.0, -1.0, 0.0])
    for side_index, (sho, elb, wri, hand) in enumerate(
        (("Rsho", "Relb", "Rwri", "Rhand"), ("Lsho", "Lelb", "Lwri", "Lhand"))
    ):
        side = -1.0 if side_index == 0 else 1.0
        flex, abd = pose.arm_flex[side_index], pose.arm_abd[side_index]
        upper[sho] = np.array([side * b.shoulder_half_width, -1.0, 0.0])
        upper[elb] = upper[sho] + b.upper_arm * _direction(flex, abd, side)
        forearm = _direction(flex + pose.elbow[side_index], 0.5 * abd, side)
        upper[wri] = upper[elb] + b.forearm * forearm
        upper[hand] = upper[wri] + 0.09 * forearm
    head_rot = _rotation_y(pose.head_yaw)
    head = np.array([0.0, -1.0 - b.neck_length, 0.05])
    r = b.head_radius
    face = {  # head frame offsets; indices 14/16 are the anatomical right (-x), see the module docstring
        "head": (0.0, 0.0, 0.0),
        "nose": (0.0, 0.22 * r, 0.95 * r),
        "Leye": (-0.36 * r, -0.10 * r, 0.88 * r),
        "Reye": (0.36 * r, -0.10 * r, 0.88 * r),
        "Lear": (-0.97 * r, 0.05 * r, -0.05 * r),
        "Rear": (0.97 * r, 0.05 * r, -0.05 * r),
    }
    for name, offset in face.items():
        upper[name] = head + head_rot @ np.asarray(offset)
    c_p, s_p = np.cos(pose.pitch), np.sin(pose.pitch)
    c_l, s_l = np.cos(pose.lean), np.sin(pose.lean)
    bend = np.array([[1.0, 0.0, 0.0], [0.0, c_p, -s_p], [0.0, s_p, c_p]])  # y up-part goes forward
    roll = np.array([[c_l, -s_l, 0.0], [s_l, c_l, 0.0], [0.0, 0.0, 1.0]])
    upper_rot = roll @ bend
    for name, point in upper.items():
        index = JOINT[name] if name in JOINT else EXTRA[name]
        p[index] = upper_rot @ point
    p[EXTRA["hip_centre"]] = 0.0
    return p @ _rotation_y(pose.yaw).T


@dataclass(frozen=True)
class Framing:
    """Where the person sits in the frame: pixels per torso unit and the mid-hip pixel (x, y)."""

    scale: float
    hip_x: float
    hip_y: float


def sample_framing(rng: np.random.Generator, body: Body, size: tuple[int, int]) -> Framing:
    """Place the person like a detector crop.

    Tall frames (H >= 1.5 W, Market-like): torso = 0.29 H, mid-hip at 0.49 H (the Market medians: torso
    37.6 px, mid-hip row 63 of 128). Squarer frames (DeepFashion-like): a larger person whose head top is
    near the top edge, torso 0.26-0.40 H, so the legs are sometimes cut by the bottom edge (DeepFashion
    misses 71 % of ankles).
    """
    height, width = size
    if height >= 1.5 * width:
        scale = height * 0.29 * body.height * rng.uniform(0.9, 1.06)
        hip_y = height * (0.49 + rng.uniform(-0.03, 0.03))
    else:
        scale = height * rng.uniform(0.26, 0.40) * body.height
        hip_y = height * rng.uniform(0.04, 0.10) + 1.72 * scale
    hip_x = width * (0.5 + rng.uniform(-0.04, 0.04))
    return Framing(scale=float(scale), hip_x=float(hip_x), hip_y=float(hip_y))


def project(points: np.ndarray, framing: Framing) -> np.ndarray:
    """(N, 3) camera-frame points in torso units -> (N, 2) float image (x, y) pixels (orthographic)."""
    return np.stack(
        [framing.hip_x + framing.scale * points[:, 0], framing.hip_y + framing.scale * points[:, 1]], axis=-1
    )


def detected_keypoints(
    points_2d: np.ndarray,
    view: str,
    size: tuple[int, int],
    rng: np.random.Generator,
    drop: np.ndarray,
    noise_px: float = 0.0,
) -> np.ndarray:
    """What a detector reports: (18, 2) int64 (x, y), -1 for joints hidden by the view, randomly dropped
    (probability ``drop``, see :func:`drop_probabilities`) or outside the frame.

    ``noise_px``: standard deviation of an isotropic Gaussian localisation error (pixels) added before
    rounding to integer pixels, as a detector's peaks are off by a pixel or two.
    """
    height, width = size
    jitter = rng.normal(0.0, 1.0, (NUM_JOINTS, 2)) * noise_px
    kp = np.rint(points_2d[:NUM_JOINTS] + jitter).astype(np.int64)
    missing = rng.random(NUM_JOINTS) < drop
    missing[list(_VIEW_HIDDEN[view])] = True
    missing |= (kp[:, 0] < 0) | (kp[:, 0] >= width) | (kp[:, 1] < 0) | (kp[:, 1] >= height)
    kp[missing] = MISSING
    return kp


def sample_keypoints(
    n: int, size: tuple[int, int] = (128, 64), seed: int = 0, missing_rates: Mapping[str, float] | None = None
) -> np.ndarray:
    """(n, 18, 2) int64 detector keypoints of n random people (one identity each), without rendering."""
    drop = drop_probabilities(missing_rates)
    out = np.empty((n, NUM_JOINTS, 2), dtype=np.int64)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        body = sample_body(rng)
        pose = sample_pose(rng)
        framing = sample_framing(rng, body, size)
        points = project(skeleton_3d(body, pose), framing)
        noise = KEYPOINT_NOISE * framing.scale
        out[i] = detected_keypoints(points, pose.view, size, rng, drop, noise)
    return out

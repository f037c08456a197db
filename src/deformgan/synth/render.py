"""Rasterise a synthetic person: per-identity appearance, per-camera background and light.

Body parts are tapered capsules (a segment with a radius varying linearly along it) drawn with a signed
distance and a 1-pixel smooth edge (coverage = clip(0.5 - distance, 0, 1)), which anti-aliases without
supersampling. Each part is evaluated only inside its bounding box. Parts are painted far to near (by
the depth of their 3-D centre), so the far arm goes behind the torso and the near arm in front,
whatever the view. Textures (stripes, checks, a logo) are functions of the part's own coordinates -
the position along the bone and the angle around the limb's cylinder in the *body* frame - so they move
and turn with the part, and a chest logo disappears in a back view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deformgan.keypoints import JOINT
from deformgan.synth.pose import EXTRA, Body, Framing, Pose

HAIR_STYLES = ("short", "long", "bun", "cap")
TOP_PATTERNS = ("plain", "stripes", "checks", "logo")
BOTTOM_STYLES = ("trousers", "shorts", "skirt")
BAGS = ("none", "backpack", "shoulder")

_SKIN_TONES = np.array(
    [[0.98, 0.84, 0.72], [0.93, 0.76, 0.62], [0.85, 0.66, 0.50], [0.72, 0.53, 0.38], [0.55, 0.38, 0.26],
     [0.40, 0.27, 0.18]]
)  # fmt: skip
_HAIR_COLOURS = np.array(
    [[0.08, 0.06, 0.05], [0.20, 0.13, 0.08], [0.38, 0.24, 0.12], [0.70, 0.55, 0.30], [0.55, 0.55, 0.55],
     [0.50, 0.20, 0.08]]
)  # fmt: skip


@dataclass(frozen=True)
class Appearance:
    """One identity's look: RGB colours in [0, 1], garment styles and accessories."""

    skin: np.ndarray
    hair: np.ndarray
    hair_style: str
    top: np.ndarray
    top_secondary: np.ndarray  # stripes / checks / logo colour
    top_pattern: str
    pattern_frequency: float  # stripes or checks per torso unit
    long_sleeves: bool
    bottom: np.ndarray
    bottom_style: str
    shoes: np.ndarray
    bag: str
    bag_colour: np.ndarray


def _random_colour(rng: np.random.Generator, dark_bias: float = 0.0) -> np.ndarray:
    """A clothing colour: saturated, pastel or (often, like real pedestrians) dark/neutral."""
    kind = rng.random()
    if kind < 0.35 + dark_bias:
        return np.full(3, rng.uniform(0.08, 0.35)) + rng.uniform(-0.04, 0.04, 3)
    if kind < 0.5 + dark_bias:
        return np.full(3, rng.uniform(0.6, 0.95)) + rng.uniform(-0.03, 0.03, 3)
    hue = rng.uniform(0.0, 1.0)
    saturation, value = rng.uniform(0.35, 0.9), rng.uniform(0.35, 0.95)
    offsets = np.array([0.0, 2.0 / 3.0, 1.0 / 3.0])
    rgb = value * (1.0 - saturation * np.clip(np.abs(((hue + offsets) % 1.0) * 6.0 - 3.0) - 1.0, 0.0, 1.0))
    return rgb


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Draw one identity's appearance."""
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.95, 1.05)
    top = _random_colour(rng)
    secondary = _random_colour(rng)
    if np.abs(secondary - top).sum() < 0.4:
        secondary = 1.0 - top
    return Appearance(
        skin=np.clip(skin, 0, 1),
        hair=_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15),
        hair_style=HAIR_STYLES[int(rng.choice(4, p=[0.45, 0.3, 0.12, 0.13]))],
        top=np.clip(top, 0, 1),
        top_secondary=np.clip(secondary, 0, 1),
        top_pattern=TOP_PATTERNS[int(rng.choice(4, p=[0.45, 0.2, 0.15, 0.2]))],
        pattern_frequency=float(rng.uniform(3.0, 6.0)),
        long_sleeves=bool(rng.random() < 0.55),
        bottom=np.clip(_random_colour(rng, dark_bias=0.15), 0, 1),
        bottom_style=BOTTOM_STYLES[int(rng.choice(3, p=[0.65, 0.2, 0.15]))],
        shoes=np.clip(_random_colour(rng, dark_bias=0.3), 0, 1),
        bag=BAGS[int(rng.choice(3, p=[0.55, 0.25, 0.2]))],
        bag_colour=np.clip(_random_colour(rng, dark_bias=0.2), 0, 1),
    )


@dataclass(frozen=True)
class Camera:
    """A fixed camera: its scene (wall above a floor, a texture) and its light (gain and colour cast)."""

    index: int  # 1-based, as in Market's c1..c6
    wall: np.ndarray
    floor: np.ndarray
    horizon: float  # fraction of the height where the floor starts
    texture: str  # "tiles", "panels" or "noise"
    texture_period: float  # in fractions of the image height
    gain: float
    cast: np.ndarray
    noise_seed: int


def make_cameras(seed: int, count: int = 6) -> list[Camera]:
    """``count`` cameras with distinct scenes and lights, deterministic in ``seed``."""
    cameras = []
    for index in range(1, count + 1):
        rng = np.random.default_rng([seed, 7_000_003, index])
        cameras.append(
            Camera(
                index=index,
                wall=rng.uniform(0.25, 0.85, 3),
                floor=rng.uniform(0.2, 0.7, 3),
                horizon=float(rng.uniform(0.35, 0.7)),
                texture=("tiles", "panels", "noise")[index % 3],
                texture_period=float(rng.uniform(0.08, 0.25)),
                gain=float(rng.uniform(0.75, 1.15)),
                cast=rng.uniform(0.88, 1.12, 3),
                noise_seed=int(rng.integers(2**31)),
            )
        )
    return cameras


_BACKGROUND_CACHE: dict[tuple, np.ndarray] = {}


def camera_background(camera: Camera, size: tuple[int, int]) -> np.ndarray:
    """(H, W + W/2, 3) float32 scene of a camera (wider than the frame: each image shows a shifted window)."""
    cached = _BACKGROUND_CACHE.get((camera.index, camera.noise_seed, size))
    if cached is not None:
        return cached
    height, width = size
    wide = width + width // 2
    rows = (np.arange(height, dtype=np.float32) / height)[:, None, None]
    cols = (np.arange(wide, dtype=np.float32) / height)[None, :, None]
    is_floor = rows >= camera.horizon
    wall = camera.wall * (0.85 + 0.3 * rows)  # vertical light gradient
    floor = camera.floor * (0.8 + 0.4 * (rows - camera.horizon))
    p = camera.texture_period
    if camera.texture == "tiles":
        wall = wall * (1.0 - 0.12 * (((cols // p) + (rows // p)) % 2))
        floor = floor * (1.0 - 0.1 * (((cols // p) + ((rows - camera.horizon) * 3 // p)) % 2))
    elif camera.texture == "panels":
        wall = wall * (1.0 - 0.25 * ((cols % (2 * p)) < 0.15 * p))  # vertical posts / shop fronts
        floor = floor * (1.0 - 0.08 * ((rows * 8 // p) % 2))
    scene = np.where(is_floor, floor, wall)
    rng = np.random.default_rng(camera.noise_seed)
    grain = rng.normal(0.0, 0.03 if camera.texture == "noise" else 0.015, (height, wide, 1))
    scene = np.clip(scene + grain, 0.0, 1.0).astype(np.float32)
    _BACKGROUND_CACHE[(camera.index, camera.noise_seed, size)] = scene
    return scene


class _Canvas:
    """A float32 (H, W, 3) image plus cached pixel-centre coordinates, for bounding-box compositing."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image
        height, width = image.shape[:2]
        self.height, self.width = height, width
        self.xs = np.arange(width, dtype=np.float32)
        self.ys = np.arange(height, dtype=np.float32)

    def box(self, lo_x: float, lo_y: float, hi_x: float, hi_y: float) -> tuple[int, int, int, int] | None:
        x0, y0 = max(int(np.floor(lo_x)), 0), max(int(np.floor(lo_y)), 0)
        x1, y1 = min(int(np.ceil(hi_x)) + 1, self.width), min(int(np.ceil(hi_y)) + 1, self.height)
        return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)

    def capsule(self, a: np.ndarray, b: np.ndarray, ra: float, rb: float):
        """Coverage of a tapered capsule from a to b (pixels), with its part coordinates.

        Returns None when off-image, else (box, alpha (h, w), t (h, w) in [0, 1] along a -> b,
        v (h, w) in about [-1, 1] across, positive towards the right of the image for a downward bone).
        """
        r = max(ra, rb)
        box = self.box(min(a[0], b[0]) - r - 1, min(a[1], b[1]) - r - 1, max(a[0], b[0]) + r + 1,
                       max(a[1], b[1]) + r + 1)  # fmt: skip
        if box is None:
            return None
        x0, y0, x1, y1 = box
        px = self.xs[None, x0:x1] - np.float32(a[0])
        py = self.ys[y0:y1, None] - np.float32(a[1])
        abx, aby = np.float32(b[0] - a[0]), np.float32(b[1] - a[1])
        length2 = max(float(abx * abx + aby * aby), 1e-6)
        # np.minimum/np.maximum instead of np.clip: same result, without np.clip's Python-level overhead
        # (this function runs ~16 times per image on small boxes, where that overhead dominates).
        t = np.minimum(np.maximum((px * abx + py * aby) * np.float32(1.0 / length2), 0.0), 1.0)
        dx, dy = px - t * abx, py - t * aby
        radius = np.float32(ra) + t * np.float32(rb - ra)
        distance = np.sqrt(dx * dx + dy * dy)
        alpha = np.minimum(np.maximum(np.float32(0.5) + radius - distance, 0.0), 1.0)
        v = (px * aby - py * abx) * np.float32(1.0 / np.sqrt(length2)) / np.maximum(radius, 0.5)
        return box, alpha, t, v

    def paint(self, box, alpha: np.ndarray, colour: np.ndarray) -> None:
        """Alpha-composite ``colour`` ((3,) or (h, w, 3)) over the box."""
        x0, y0, x1, y1 = box
        region = self.image[y0:y1, x0:x1]
        region += alpha[..., None] * (colour - region)


def _shade(colour: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cylinder shading: full brightness facing the camera, 30 % darker at the silhouette."""
    facing = np.sqrt(np.maximum(1.0 - v * v, 0.0))
    return (0.7 + 0.3 * facing)[..., None] * colour.astype(np.float32)


def _top_colour(look: Appearance, t, v, length_t: float, body_angle_offset: float, torso: bool) -> np.ndarray:
    """Top garment colour on a part, from the part coordinates (t along, v across).

    length_t: the part's length in torso units (stripes keep a constant width in body units);
    body_angle_offset: the view yaw, so the angle around the body is camera angle arcsin(v) - yaw.
    """
    pattern = look.top_pattern
    colour = _shade(look.top, v)
    if pattern == "plain" or (pattern == "logo" and not torso):
        return colour
    along = t * length_t * look.pattern_frequency
    if pattern == "stripes":
        mask = (np.floor(along) % 2) == 1
    else:
        around = np.arcsin(np.clip(v, -1.0, 1.0)) - body_angle_offset  # angle on the body, 0 = front
        if pattern == "checks":
            mask = ((np.floor(along) + np.floor(around * 3.0 / np.pi)) % 2) == 1
        else:  # a round chest logo, only on the front of the body
            front = np.cos(around) > 0.0
            mask = front & ((np.sin(around) * 2.6) ** 2 + ((t - 0.3) * 4.5) ** 2 < 0.3)
    return np.where(mask[..., None], _shade(look.top_secondary, v), colour)


def draw_person(
    canvas_image: np.ndarray,
    points_3d: np.ndarray,
    framing: Framing,
    body: Body,
    pose: Pose,
    look: Appearance,
) -> None:
    """Paint one person in place on a float32 (H, W, 3) image in [0, 1].

    points_3d: the output of :func:`deformgan.synth.pose.skeleton_3d` (camera frame, torso units).
    """
    canvas = _Canvas(canvas_image)
    s = framing.scale
    xy = np.stack([framing.hip_x + s * points_3d[:, 0], framing.hip_y + s * points_3d[:, 1]], axis=-1)
    depth = points_3d[:, 2]
    g = body.girth
    j = JOINT
    yaw = pose.yaw
    # Projected half-widths of the elliptic torso cross-section at the shoulders and at the hips.
    cos_y, sin_y = abs(np.cos(yaw)), abs(np.sin(yaw))
    chest = np.hypot(1.08 * body.shoulder_half_width * cos_y, body.torso_depth * sin_y) * s
    waist = np.hypot(1.25 * body.hip_half_width * cos_y, 0.85 * body.torso_depth * sin_y) * s * g
    neck, hip_c, head = xy[j["neck"]], xy[EXTRA["hip_centre"]], xy[EXTRA["head"]]
    chest_top = neck + 0.55 * chest * (hip_c - neck) / max(np.linalg.norm(hip_c - neck), 1e-6)

    items: list[tuple[float, int, object]] = []  # (depth, insertion order, draw callable)

    def add(d: float, fn) -> None:
        items.append((d, len(items), fn))

    def limb(a: int, b: int, ra: float, rb: float, colour_fn, d_bias: float = 0.0) -> None:
        d = 0.5 * (depth[a] + depth[b]) + d_bias

        def draw() -> None:
            cov = canvas.capsule(xy[a], xy[b], ra * s * g, rb * s * g)
            if cov is not None:
                box, alpha, t, v = cov
                canvas.paint(box, alpha, colour_fn(t, v))

        add(d, draw)

    skin = look.skin

    def skin_fn(t, v):
        return _shade(skin, v)

    def solid(colour):
        return lambda t, v: _shade(colour, v)

    def top_fn(length_t: float, torso: bool = False):
        return lambda t, v: _top_colour(look, t, v, length_t, yaw, torso)

    # Legs (the bottom garment), shoes.
    thigh_colour = skin_fn if look.bottom_style == "skirt" else solid(look.bottom)
    shin_colour = solid(look.bottom) if look.bottom_style == "trousers" else skin_fn
    for hip, knee, ankle, toe in (("Rhip", "Rkne", "Rank", "Rtoe"), ("Lhip", "Lkne", "Lank", "Ltoe")):
        limb(j[hip], j[knee], 0.15, 0.115, thigh_colour, 0.02)
        limb(j[knee], j[ankle], 0.115, 0.085, shin_colour, 0.02)
        limb(j[ankle], EXTRA[toe], 0.075, 0.07, solid(look.shoes), 0.03)
    # Arms: sleeves, forearms, hands; the near arm is drawn in front of the torso.
    forearm_colour = top_fn(body.forearm) if look.long_sleeves else skin_fn
    for sho, elb, wri, hand in (("Rsho", "Relb", "Rwri", "Rhand"), ("Lsho", "Lelb", "Lwri", "Lhand")):
        limb(j[sho], j[elb], 0.12, 0.10, top_fn(body.upper_arm), 0.01)
        limb(j[elb], j[wri], 0.095, 0.075, forearm_colour, 0.01)
        limb(j[wri], EXTRA[hand], 0.08, 0.07, skin_fn, 0.012)

    # Torso (top garment) and pelvis (bottom garment); the torso's depth is its centre plane.
    def draw_torso() -> None:
        pelvis = canvas.capsule(hip_c + (0, -0.1 * s), hip_c + (0, 0.05 * s), waist, waist * 0.95)
        if pelvis is not None:
            box, alpha, t, v = pelvis
            canvas.paint(box, alpha, _shade(look.bottom, v))
        cov = canvas.capsule(chest_top, hip_c + (0, -0.12 * s), chest, waist)
        if cov is not None:
            box, alpha, t, v = cov
            canvas.paint(box, alpha, _top_colour(look, t, v, 1.0, yaw, torso=True))

    add(0.0, draw_torso)
    if look.bottom_style == "skirt":
        skirt_end = hip_c + (0, 0.42 * s)

        def draw_skirt() -> None:
            cov = canvas.capsule(hip_c, skirt_end, waist * 0.9, waist * 1.2)
            if cov is not None:
                box, alpha, t, v = cov
                canvas.paint(box, alpha, _shade(look.bottom, v))

        add(0.3 * body.torso_depth + 0.25, draw_skirt)
    # Neck, head with hair and eyes.
    neck_r = 0.09 * s * g
    add(-0.05, lambda: _paint_capsule(canvas, neck, head, neck_r, neck_r, _shade(skin, np.zeros(1))[0]))
    head_yaw = yaw + pose.head_yaw
    head_r = body.head_radius * s
    add(float(depth[EXTRA["head"]]) + 0.05, lambda: _draw_head(canvas, head, head_r, head_yaw, look))
    if look.hair_style == "long":
        # Hair falling behind the head onto the back: its 3-D centre is behind the head centre.
        back = np.array([np.sin(head_yaw), np.cos(head_yaw)]) * -0.45  # (x, depth) of the back of the head
        top = head + (back[0] * head_r, -0.2 * head_r)
        bottom = head + (back[0] * head_r * 1.2, 1.6 * head_r)
        hair_depth = float(depth[EXTRA["head"]] + back[1] * body.head_radius) + 0.04
        hair_col = look.hair * 0.9
        add(hair_depth, lambda: _paint_capsule(canvas, top, bottom, 0.95 * head_r, 0.85 * head_r, hair_col))
    # Bags.
    if look.bag == "backpack":
        pack_depth = -(body.torso_depth + 0.12)
        centre_top = np.array([0.0, -0.85, pack_depth])
        centre_bottom = np.array([0.0, -0.35, pack_depth])
        top_3d, bottom_3d = (_yaw_point(p, yaw) for p in (centre_top, centre_bottom))
        a = np.array([framing.hip_x + s * top_3d[0], framing.hip_y + s * top_3d[1]])
        b = np.array([framing.hip_x + s * bottom_3d[0], framing.hip_y + s * bottom_3d[1]])
        add(float(top_3d[2]), lambda: _paint_capsule(canvas, a, b, 0.3 * s, 0.32 * s, look.bag_colour))
    elif look.bag == "shoulder":
        bag_3d = _yaw_point(np.array([body.hip_half_width + 0.22, -0.05, 0.05]), yaw)
        strap_from = xy[j["Rsho"]]
        bag_xy = np.array([framing.hip_x + s * bag_3d[0], framing.hip_y + s * bag_3d[1]])
        strap_depth = float(_yaw_point(np.array([0.0, -0.5, body.torso_depth + 0.02]), yaw)[2])
        add(strap_depth, lambda: _paint_capsule(canvas, strap_from, bag_xy, 0.025 * s + 0.3, 0.025 * s + 0.3,
                                                look.bag_colour * 0.8))  # fmt: skip
        bag_a, bag_b = bag_xy - (0.12 * s, 0.0), bag_xy + (0.12 * s, 0.0)
        add(
            float(bag_3d[2]) + 0.1,
            lambda: _paint_capsule(canvas, bag_a, bag_b, 0.15 * s, 0.15 * s, look.bag_colour),
        )

    for _, _, draw in sorted(items, key=lambda item: (item[0], item[1])):
        draw()


def _yaw_point(point: np.ndarray, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([point[0] * c + point[2] * s, point[1], -point[0] * s + point[2] * c])


def _paint_capsule(canvas: _Canvas, a, b, ra: float, rb: float, colour: np.ndarray) -> None:
    cov = canvas.capsule(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), ra, rb)
    if cov is not None:
        box, alpha, _, v = cov
        canvas.paint(box, alpha, _shade(colour, v))


def _draw_head(canvas: _Canvas, centre: np.ndarray, radius: float, yaw: float, look: Appearance) -> None:
    """A shaded sphere with hair (by style) and eyes, evaluated per pixel in the head's own frame.

    Each pixel inside the disc is lifted onto the visible hemisphere (z = sqrt(1 - x^2 - y^2)) and
    rotated back by the head yaw, so the hairline, the back of the head and the eyes turn with the head.
    """
    box = canvas.box(
        centre[0] - radius - 1, centre[1] - radius - 2, centre[0] + radius + 1, centre[1] + radius + 1
    )
    if box is None:
        return
    x0, y0, x1, y1 = box
    sx = (canvas.xs[None, x0:x1] - np.float32(centre[0])) / np.float32(radius)
    sy = (canvas.ys[y0:y1, None] - np.float32(centre[1])) / np.float32(radius)
    r2 = sx * sx + sy * sy
    dist = np.sqrt(r2) * radius
    alpha = np.clip(np.float32(0.5) + radius - dist, 0.0, 1.0)
    sz = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    c, s = np.float32(np.cos(yaw)), np.float32(np.sin(yaw))
    hx = sx * c - sz * s  # head frame: x = the person's left, z = forward (inverse of the yaw rotation)
    hz = sx * s + sz * c
    hy = np.broadcast_to(sy, hx.shape)
    style = look.hair_style
    hairline = {"short": -0.3, "long": -0.35, "bun": -0.3, "cap": -0.2}[style]
    back_limit = {"short": -0.35, "long": 0.1, "bun": -0.3, "cap": 0.3}[style]
    hair = (hy < hairline) | (hz < back_limit)
    eyes = (hz > 0.5) & ((np.abs(hx) - 0.36) ** 2 + (hy + 0.1) ** 2 < 0.012)
    shade = (0.72 + 0.28 * sz)[..., None]
    hair_colour = look.hair if style != "cap" else look.top_secondary
    colour = np.where(hair[..., None], hair_colour.astype(np.float32), look.skin.astype(np.float32))
    colour = np.where(eyes[..., None], np.float32(0.12), colour) * shade
    canvas.paint(box, alpha, colour)
    if style == "bun":  # a knot at the back top of the head
        bun = centre + np.array([-np.sin(yaw) * 0.7 * radius, -0.75 * radius])
        _paint_capsule(canvas, bun, bun, 0.45 * radius, 0.45 * radius, look.hair)


def apply_light(image: np.ndarray, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """Camera gain and colour cast (with a small per-image jitter) -> uint8 (H, W, 3)."""
    gain = camera.gain * rng.uniform(0.92, 1.08)
    factor = (gain * camera.cast * rng.uniform(0.97, 1.03, 3) * 255.0).astype(np.float32)
    out = image * factor
    np.clip(out, 0.0, 255.0, out=out)
    out += np.float32(0.5)
    return out.astype(np.uint8)

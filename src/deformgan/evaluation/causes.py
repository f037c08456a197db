"""Likely causes of a bad generated image, computed from the data alone (no generator needed).

The supplementary material's catalogue of failures names: errors of the pose estimator, the 2-D
ambiguity of a pose (a joint hidden behind the body), rare poses, rare appearance, and warping problems
(a narrow profile texture stretched onto a wide frontal pose). Each is measured here by one number per
pair, where a larger value is more suspicious:

- ``missing_keypoints``: joints the generator's part warps need (:data:`MODEL_JOINTS`: shoulders,
  elbows, wrists, hips, knees, ankles, plus "head" when no head keypoint is present) missing in the
  source or the target pose (a count over both); tagged as soon as one is missing;
- ``implausible_bones``: the largest robust z-score of a limb's length (in torso units, log scale) against
  the reference poses' median and MAD (Iglewicz & Hoaglin's modified z-score), in source or target;
- ``rare_pose``: distance of the target pose to its nearest reference pose in a normalised pose space
  (14 body joints, centred on the torso, divided by the torso size; RMS over the joints both poses have);
- ``arm_in_torso``: how deep the deepest target arm joint (elbow, wrist) lies inside the target's torso
  quadrilateral (shoulders, hips), in torso units; negative = distance outside;
- ``large_warp``: the largest ``max(|ln area scale|, ln anisotropy)`` over the valid part affines
  (target -> source, :func:`deformgan.parts.part_affines`): area scale = |det|, anisotropy = ratio of the
  singular values;
- ``rare_appearance``: distance of the source's colour statistics (CIELAB mean and standard deviation
  inside its Ma et al. mask) to its 5 nearest reference images, in units of the reference spread.

"Reference" is the training set when given (poses: training annotations; appearance: training images),
else the other test images (leave-one-out: a pair's own images never count as its neighbours); the
result says which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from scipy.spatial.distance import cdist
from skimage.color import rgb2lab

from deformgan.errors import InputError
from deformgan.evaluation.mask import evaluation_mask
from deformgan.keypoints import JOINT, JOINT_NAMES
from deformgan.parts import HEAD_JOINTS, LIMBS, PART_NAMES, TORSO_JOINTS, part_affines, torso_scale

#: Joints of the body (no eyes/ears: often legitimately missing in profile and back views).
BODY_JOINTS: tuple[str, ...] = (
    "neck", "Rsho", "Relb", "Rwri", "Lsho", "Lelb", "Lwri", "Rhip", "Rkne", "Rank", "Lhip", "Lkne", "Lank",
)  # fmt: skip
#: Joints the 10 part affines of the deformable skip connections are fitted on (torso and limbs,
#: :mod:`deformgan.parts`), in keypoint order. One missing in the target switches its part's warp off; one
#: missing in the source makes the part borrow the twin limb's texture or lose it (the torso). The neck is
#: left out (no part uses it); the head part needs any one of :data:`HEAD_JOINTS`, counted as "head".
MODEL_JOINTS: tuple[str, ...] = tuple(
    sorted({*TORSO_JOINTS, *(j for a, b, _, _ in LIMBS for j in (a, b))}, key=lambda name: JOINT[name])
)
#: Joints of the normalised pose space (the body plus the nose).
POSE_JOINTS: tuple[str, ...] = ("nose", *BODY_JOINTS)
#: Limbs whose length is checked (shoulder and hip widths are left out: they shrink legitimately in
#: profile views, which is a warp question, not an estimator error).
BONES: tuple[tuple[str, str], ...] = (
    ("Rsho", "Relb"), ("Relb", "Rwri"), ("Lsho", "Lelb"), ("Lelb", "Lwri"),
    ("Rhip", "Rkne"), ("Rkne", "Rank"), ("Lhip", "Lkne"), ("Lkne", "Lank"), ("neck", "nose"),
)  # fmt: skip
ARM_JOINTS: tuple[str, ...] = ("Relb", "Rwri", "Lelb", "Lwri")
TORSO_POLYGON: tuple[str, ...] = ("Rsho", "Lsho", "Lhip", "Rhip")
TORSO_CENTRE: tuple[str, ...] = ("Rsho", "Lsho", "Rhip", "Lhip")
#: Modified z-score above which a value is an outlier (Iglewicz & Hoaglin 1993).
OUTLIER_Z = 3.5
MIN_COMMON_JOINTS = 8
NEIGHBOURS = 5
CHUNK = 256  # images (colour features) or rows (distances) at a time: bounded memory on 12,000 pairs


@dataclass(frozen=True)
class Cause:
    """A cause: its key, a short label, what the value means, and its default threshold rule:
    ``("fixed", t)`` (tagged when value > t) or ``("percentile", p)`` (tagged when value > the p-th
    percentile of the value over all pairs)."""

    key: str
    label: str
    unit: str
    rule: tuple[str, float]
    why: str


CAUSES: dict[str, Cause] = {
    c.key: c
    for c in (
        Cause(
            "missing_keypoints", "missing keypoints", "joints", ("fixed", 0.0),
            "a joint the part warps need (shoulder, elbow, wrist, hip, knee, ankle, or every head "
            "keypoint) missing in the source or the target: the pose estimator missed it, or it is hidden",
        ),
        Cause(
            "implausible_bones", "implausible keypoints", "modified z", ("fixed", OUTLIER_Z),
            f"a limb length far from the reference poses' (modified z-score > {OUTLIER_Z}, Iglewicz & "
            "Hoaglin's outlier rule): a misplaced joint",
        ),
        Cause(
            "rare_pose", "rare pose", "torso units", ("percentile", 90.0),
            "the target pose is far from every reference pose (nearest-neighbour distance in the "
            "normalised pose space above the percentile threshold over all pairs)",
        ),
        Cause(
            "arm_in_torso", "2-D ambiguity (arm over torso)", "torso units", ("fixed", 0.0),
            "a target elbow or wrist inside the torso quadrilateral: in front of or behind the body?",
        ),
        Cause(
            "large_warp", "large warp", "ln factor", ("percentile", 90.0),
            "a part affine scales the area or stretches one direction far from 1 (above the "
            "percentile threshold over all pairs): e.g. a narrow profile texture stretched onto a "
            "wide frontal pose",
        ),
        Cause(
            "rare_appearance", "rare appearance", "reference spreads", ("percentile", 90.0),
            "the source's colours are far from the reference images' (distance to the 5 nearest above "
            "the percentile threshold over all pairs)",
        ),
    )
}  # fmt: skip


@dataclass
class CauseValues:
    """Per-pair values (float64 (N,), NaN = not computable) and a one-line detail per pair."""

    values: np.ndarray
    details: list[str]


def _idx(names: Sequence[str]) -> list[int]:
    return [JOINT[n] for n in names]


def _present(kp: np.ndarray) -> np.ndarray:
    return (kp[..., 0] != -1) & (kp[..., 1] != -1)


def _scale(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    st, ok = torso_scale(torch.from_numpy(np.asarray(kp, dtype=np.float64)))
    return st.numpy(), ok.numpy()


# ----------------------------------------------------------------------------------------------
# Keypoints


def _missing_model_joints(kp: np.ndarray) -> np.ndarray:
    """(N, len(MODEL_JOINTS) + 1) bool: each of :data:`MODEL_JOINTS` missing, then "head" (no head
    keypoint at all)."""
    present = _present(kp)
    head_missing = ~present[:, _idx(HEAD_JOINTS)].any(1)
    return np.concatenate([~present[:, _idx(MODEL_JOINTS)], head_missing[:, None]], axis=1)


def missing_keypoints(source_kp: np.ndarray, target_kp: np.ndarray) -> CauseValues:
    """Count of the joints the part warps need (:data:`MODEL_JOINTS`, and "head" when no head keypoint
    is present) missing in the source plus those missing in the target; kp (N, 18, 2).

    The rule is fixed (tagged when the count is above 0), not a percentile: one missing joint already
    costs the generator a part (its warp is off in the target, borrowed or lost in the source), whatever
    the other pairs look like, and a percentile of a count that is 0 for most pairs would tag nothing
    until several joints are missing. On the field's OpenPose annotations it tags most pairs (88 of the
    100 real Market test triplets, 93 of the DeepFashion ones: wrists and the legs of upper-body shots
    are often missing; ``benchmarks/results/failure_causes.md``): sort by the count, or override the
    threshold to tag only pairs missing more joints.
    """
    names = (*MODEL_JOINTS, "head")
    src_missing = _missing_model_joints(np.asarray(source_kp))
    tgt_missing = _missing_model_joints(np.asarray(target_kp))
    details = []
    for s, t in zip(src_missing, tgt_missing, strict=True):
        parts = []
        if t.any():
            parts.append("target " + ", ".join(names[j] for j in np.flatnonzero(t)))
        if s.any():
            parts.append("source " + ", ".join(names[j] for j in np.flatnonzero(s)))
        details.append("; ".join(parts) or "every joint the part warps need is present")
    return CauseValues((src_missing.sum(1) + tgt_missing.sum(1)).astype(np.float64), details)


@dataclass(frozen=True)
class BoneStatistics:
    """Per bone of :data:`BONES`: median and MAD of ln(length / torso scale) over the reference poses."""

    median: np.ndarray
    mad: np.ndarray
    count: np.ndarray


def _log_bones(kp: np.ndarray) -> np.ndarray:
    """ln(bone length / torso scale) (N, len(BONES)); NaN where a joint or the torso scale is missing."""
    kp = np.asarray(kp, dtype=np.float64)
    st, ok = _scale(kp)
    present = _present(kp)
    a, b = _idx([x for x, _ in BONES]), _idx([y for _, y in BONES])
    length = np.linalg.norm(kp[:, a] - kp[:, b], axis=-1)
    # Coincident joints (length 0) are kept as half a pixel: an outlier, not -inf.
    ratio = np.maximum(length, 0.5) / np.where(ok, st, 1.0)[:, None]
    values = np.log(ratio)
    values[~(present[:, a] & present[:, b] & ok[:, None])] = np.nan
    return values


def bone_statistics(reference_kp: np.ndarray) -> BoneStatistics:
    """Median and MAD of each bone's log length over reference poses (N, 18, 2)."""
    values = _log_bones(reference_kp)
    count = np.isfinite(values).sum(0)
    with np.errstate(all="ignore"):
        median = np.nanmedian(values, axis=0)
        mad = np.nanmedian(np.abs(values - median), axis=0)
    return BoneStatistics(median=median, mad=mad, count=count)


def _bone_z(kp: np.ndarray, stats: BoneStatistics) -> np.ndarray:
    spread = np.where(stats.mad > 0, 1.4826 * stats.mad, np.nan)  # 1.4826 MAD = sigma for a Gaussian
    return np.abs(_log_bones(kp) - stats.median) / spread


def implausible_bones(source_kp: np.ndarray, target_kp: np.ndarray, stats: BoneStatistics) -> CauseValues:
    """Largest modified z-score of a bone length in the source or the target (NaN: no bone measurable)."""
    z = np.concatenate([_bone_z(source_kp, stats), _bone_z(target_kp, stats)], axis=1)
    values, details = np.full(len(z), np.nan), []
    nb = len(BONES)
    for i, row in enumerate(z):
        if not np.isfinite(row).any():
            details.append("no bone measurable (torso scale missing)")
            continue
        j = int(np.nanargmax(row))
        values[i] = row[j]
        which, bone = ("source" if j < nb else "target"), BONES[j % nb]
        kp = source_kp[i] if j < nb else target_kp[i]
        st = _scale(kp[None])[0][0]
        length = np.linalg.norm(np.asarray(kp[JOINT[bone[0]]], float) - kp[JOINT[bone[1]]]) / st
        typical = float(np.exp(stats.median[j % nb]))
        details.append(f"{which} {bone[0]}-{bone[1]}: {length:.2f} torso units (typical {typical:.2f})")
    return CauseValues(values, details)


def normalised_poses(kp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poses in the normalised space: :data:`POSE_JOINTS` (x, y) minus the centre of the present torso
    joints, divided by the torso scale -> (poses (N, 14, 2), present (N, 14), ok (N,) torso usable)."""
    kp = np.asarray(kp, dtype=np.float64)
    st, ok = _scale(kp)
    present_all = _present(kp)
    centre_idx = _idx(TORSO_CENTRE)
    weights = present_all[:, centre_idx].astype(np.float64)
    centre = (kp[:, centre_idx] * weights[..., None]).sum(1) / np.maximum(weights.sum(1), 1)[:, None]
    idx = _idx(POSE_JOINTS)
    poses = (kp[:, idx] - centre[:, None]) / np.where(ok, st, 1.0)[:, None, None]
    present = present_all[:, idx] & ok[:, None]
    return poses, present, ok & (weights.sum(1) > 0)


def nearest_pose_distance(
    query_kp: np.ndarray,
    reference_kp: np.ndarray,
    exclude: Sequence[Sequence[int]] | None = None,
    chunk: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """RMS joint distance (torso units) of each query pose to its nearest reference pose.

    Over the joints present in both poses, at least :data:`MIN_COMMON_JOINTS` of them. exclude: per query,
    reference indices that may not be its neighbour (its own image). Returns (distance (N,) NaN where no
    reference pose qualifies, index of the nearest reference (N,), -1 then).
    """
    q, qm, qok = normalised_poses(query_kp)
    r, rm, rok = normalised_poses(reference_kp)
    r, rm = r[rok].astype(np.float32), rm[rok]
    ref_index = np.flatnonzero(rok)
    position = {int(j): i for i, j in enumerate(ref_index)}
    distance = np.full(len(q), np.nan)
    nearest = np.full(len(q), -1, dtype=np.int64)
    rmf = rm.astype(np.float32)
    for start in range(0, len(q), chunk):
        qs = q[start : start + chunk].astype(np.float32)
        qms = (qm[start : start + chunk] & qok[start : start + chunk, None]).astype(np.float32)
        common = qms[:, None, :] * rmf[None]  # (c, M, J)
        d2 = (((qs[:, None] - r[None]) ** 2).sum(-1) * common).sum(-1)
        count = common.sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            rms = np.sqrt(d2 / count)
        rms[count < MIN_COMMON_JOINTS] = np.inf
        if exclude is not None:
            for row, i in enumerate(range(start, min(start + chunk, len(q)))):
                for j in exclude[i]:
                    if j in position:
                        rms[row, position[j]] = np.inf
        best = rms.argmin(1) if rms.shape[1] else np.zeros(len(rms), dtype=np.int64)
        for row, i in enumerate(range(start, min(start + chunk, len(q)))):
            if rms.shape[1] and np.isfinite(rms[row, best[row]]):
                distance[i] = rms[row, best[row]]
                nearest[i] = ref_index[best[row]]
    return distance, nearest


def rare_pose(
    target_kp: np.ndarray,
    reference_kp: np.ndarray,
    reference_names: Sequence[str],
    target_names: Sequence[str],
    excluded_names: Sequence[Sequence[str]] | None = None,
) -> CauseValues:
    """Nearest-reference-pose distance of each target pose (the pair's own images are excluded)."""
    position: dict[str, list[int]] = {}
    for j, name in enumerate(reference_names):
        position.setdefault(name, []).append(j)
    names = excluded_names if excluded_names is not None else [[t] for t in target_names]
    exclude = [[j for n in group for j in position.get(n, [])] for group in names]
    distance, nearest = nearest_pose_distance(target_kp, reference_kp, exclude)
    details = [
        f"nearest reference pose {reference_names[k]}" if k >= 0 else f"fewer than {MIN_COMMON_JOINTS} joints"
        for k in nearest
    ]
    return CauseValues(distance, details)


def arm_in_torso(target_kp: np.ndarray) -> CauseValues:
    """Signed depth (torso units; > 0 inside) of the deepest target arm joint in the torso quadrilateral."""
    kp = np.asarray(target_kp, dtype=np.float64)
    st, ok = _scale(kp)
    present = _present(kp)
    poly_idx, arm_idx = _idx(TORSO_POLYGON), _idx(ARM_JOINTS)
    values, details = np.full(len(kp), np.nan), []
    for i in range(len(kp)):
        if not (ok[i] and present[i, poly_idx].all()):
            details.append("torso incomplete")
            continue
        arms = [j for j in arm_idx if present[i, j]]
        if not arms:
            details.append("no arm joint")
            continue
        contour = kp[i, poly_idx].astype(np.float32).reshape(-1, 1, 2)
        depth = [cv2.pointPolygonTest(contour, (float(kp[i, j, 0]), float(kp[i, j, 1])), True) for j in arms]
        k = int(np.argmax(depth))
        values[i] = depth[k] / st[i]
        where = "inside" if depth[k] > 0 else "outside"
        details.append(f"{JOINT_NAMES[arms[k]]} {abs(values[i]):.2f} torso units {where} the torso")
    return CauseValues(values, details)


# ----------------------------------------------------------------------------------------------
# Warps


def warp_factors(source_kp: np.ndarray, target_kp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair and part: (area scale |det A| (N, 10), anisotropy s1/s2 (N, 10), valid (N, 10)) of the
    part affines A (target -> source pixels, :func:`deformgan.parts.part_affines`)."""
    theta, valid = part_affines(
        torch.from_numpy(np.asarray(source_kp, np.float64)),
        torch.from_numpy(np.asarray(target_kp, np.float64)),
    )
    linear = theta[..., :2].double()
    singular = torch.linalg.svdvals(linear)  # (N, 10, 2), descending
    area = (singular[..., 0] * singular[..., 1]).numpy()
    anisotropy = (singular[..., 0] / singular[..., 1].clamp_min(1e-12)).numpy()
    return area, anisotropy, valid.numpy()


def large_warp(source_kp: np.ndarray, target_kp: np.ndarray) -> CauseValues:
    """max over valid parts of max(|ln area scale|, ln anisotropy); the detail names the worst part."""
    area, anisotropy, valid = warp_factors(source_kp, target_kp)
    with np.errstate(divide="ignore"):
        strength = np.maximum(np.abs(np.log(area)), np.log(anisotropy))
    strength = np.where(valid, strength, -np.inf)
    values, details = np.full(len(area), np.nan), []
    for i in range(len(area)):
        if not valid[i].any():
            details.append("no valid part")
            continue
        p = int(np.argmax(strength[i]))
        values[i] = strength[i, p]
        details.append(
            f"{PART_NAMES[p]}: source/target area x{area[i, p]:.2f}, anisotropy {anisotropy[i, p]:.2f}"
        )
    return CauseValues(values, details)


# ----------------------------------------------------------------------------------------------
# Appearance


def colour_features(images: np.ndarray, kp: np.ndarray | None = None) -> np.ndarray:
    """CIELAB mean and standard deviation (L, a, b) of each uint8 (N, H, W, 3) image -> float64 (N, 6),
    inside the Ma et al. mask of its pose ``kp`` (N, 18, 2) in the image frame (the person), else over the
    whole image (also where the mask is empty)."""
    images = np.asarray(images)
    features = np.empty((len(images), 6))
    for start in range(0, len(images), CHUNK):
        masks = None
        if kp is not None:  # in chunks: the mask's intermediates are (B, 23, H, W)
            poses = torch.from_numpy(np.asarray(kp[start : start + CHUNK], np.float64))
            masks = evaluation_mask(poses, images.shape[1:3]).numpy()
        for j, image in enumerate(images[start : start + CHUNK]):
            lab = rgb2lab(image).reshape(-1, 3)
            if masks is not None and masks[j].any():
                lab = lab[masks[j].reshape(-1)]
            features[start + j, :3] = lab.mean(0)
            features[start + j, 3:] = lab.std(0)
    return features


def rare_appearance(
    features: np.ndarray,
    reference: np.ndarray,
    exclude: Sequence[Sequence[int]] | None = None,
    neighbours: int = NEIGHBOURS,
) -> CauseValues:
    """Mean distance of each feature row to its ``neighbours`` nearest reference rows, after dividing every
    dimension by the reference's standard deviation. exclude: per row, reference rows that may not count."""
    spread = reference.std(0)
    spread = np.where(spread > 0, spread, 1.0)
    a, b = features / spread, reference / spread
    k = min(neighbours, len(b))
    values = np.full(len(a), np.nan)
    for start in range(0, len(a), CHUNK):  # (chunk, M) distances at a time
        d = cdist(a[start : start + CHUNK], b)
        if exclude is not None:
            for row, rows in enumerate(exclude[start : start + CHUNK]):
                d[row, list(rows)] = np.inf
        nearest = np.sort(d, axis=1)[:, :k]
        finite = np.isfinite(nearest)
        total = np.where(finite, nearest, 0).sum(1) / np.maximum(finite.sum(1), 1)
        values[start : start + CHUNK] = np.where(finite.any(1), total, np.nan)
    if features.shape[1] == 6:  # colour_features: CIELAB means, then standard deviations
        details = [
            f"L {f[0]:.0f}, a {f[1]:.0f}, b {f[2]:.0f} (std {f[3]:.0f}, {f[4]:.0f}, {f[5]:.0f})"
            for f in features
        ]
    else:
        details = [", ".join(f"{v:.3g}" for v in f) for f in features]
    return CauseValues(values, details)


def rules_text(rules: Mapping[str, Mapping]) -> str:
    """One line naming the rule of every cause (``thresholds_for``'s output), e.g. "missing keypoints:
    fixed: value > 0; rare pose: value > 90th percentile over all 100 pairs"."""
    return "; ".join(f"{CAUSES[key].label}: {rule['rule']}" for key, rule in rules.items())


def thresholds_for(
    values: Mapping[str, np.ndarray],
    percentile: float | None = None,
    overrides: Mapping[str, float] | None = None,
) -> dict[str, dict]:
    """The threshold of each cause -> {cause: {"threshold", "rule"}}: an override, else the cause's rule
    (``percentile`` replaces the default 90 of percentile rules), percentiles over the finite values."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(CAUSES)
    if unknown:
        raise InputError(f"thresholds: unknown causes {sorted(unknown)}; expected some of {list(CAUSES)}")
    result = {}
    for key, cause in CAUSES.items():
        if key not in values:
            continue
        kind, level = cause.rule
        if key in overrides:
            result[key] = {"threshold": float(overrides[key]), "rule": "given"}
        elif kind == "fixed":
            result[key] = {"threshold": level, "rule": f"fixed: value > {level:g}"}
        else:
            level = percentile if percentile is not None else level
            finite = values[key][np.isfinite(values[key])]
            t = float(np.percentile(finite, level)) if len(finite) else float("nan")
            result[key] = {
                "threshold": t,
                "rule": f"value > {level:g}th percentile over all {len(finite)} pairs",
            }
    return result

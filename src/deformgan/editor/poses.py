"""Poses in and out of the editor: checks, our annotation CSV row, the OpenPose JSON other tools use.

Keypoints here are int64 (18, 2) (x, y) pixels of the model frame, -1 = missing (hidden), as everywhere in
deformgan (:mod:`deformgan.keypoints`).

OpenPose JSON (OpenPose's ``doc/02_output.md``): ``{"people": [{"pose_keypoints_2d": [x0, y0, c0, ...]}]}``
with one (x, y, confidence) triple per joint and ``0, 0, 0`` for a joint that was not detected. The 18-joint
COCO model's order is ours (nose, neck, right shoulder ... the eyes and ears; the field's annotation files
were made with it); files of OpenPose's default BODY_25 model (25 triples, with a mid-hip and the feet) are
read through :data:`COCO18_FROM_BODY25`. Written files carry confidence 1 for every shown joint and the
frame size as ``canvas_width`` / ``canvas_height`` (the fields ControlNet-era pose editors use); a file
that has them is scaled to the model frame on reading, one without them must be in model-frame pixels.
"""

from __future__ import annotations

import json
import math

import numpy as np

from deformgan.errors import InputError
from deformgan.keypoints import ANNOTATION_HEADER, JOINT_NAMES, MISSING, NUM_JOINTS, format_annotation_row

#: BODY_25 index of each of our 18 joints (OpenPose ``poseParameters.cpp``, ``POSE_BODY_25_BODY_PARTS``:
#: 8 is the mid-hip, 19-24 the feet, which COCO-18 lacks).
COCO18_FROM_BODY25: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
OPENPOSE_VERSION = 1.3

#: A frontal standing person in a 128 x 64 (H x W) frame, (x, y) pixels in our joint order: where joints
#: start when keypoints are placed by hand (no pose model, or a joint that was never detected). The
#: person's right is on the image's left; joints 14-17 are the right eye, left eye, right ear, left ear
#: as the field's files hold them (see :mod:`deformgan.pose.blazepose` on the names in ``JOINT_NAMES``).
_TEMPLATE_128x64 = np.array(
    [(32, 18), (32, 30), (23, 31), (20, 47), (18, 62), (41, 31), (44, 47), (46, 62), (26, 63),
     (26, 85), (26, 108), (38, 63), (38, 85), (38, 108), (30, 16), (34, 16), (27, 17), (37, 17)],
    dtype=np.float64,
)  # fmt: skip


def mirror_permutation() -> list[int]:
    """For each joint, the index of its left/right twin (itself for the nose and neck): swapping the sides
    of a pose is ``kp[mirror_permutation()]``. Derived from the names (``Lsho`` <-> ``Rsho`` ...)."""
    index = {name: i for i, name in enumerate(JOINT_NAMES)}
    swap = {"L": "R", "R": "L"}
    return [index.get(swap.get(name[0], "") + name[1:], i) for i, name in enumerate(JOINT_NAMES)]


def template_pose(size: tuple[int, int]) -> np.ndarray:
    """int64 (18, 2) standing pose for a frame of ``size`` (H, W): the 128 x 64 template scaled by the frame
    height and centred horizontally."""
    height, width = size
    scale = height / 128.0
    x = width / 2 + (_TEMPLATE_128x64[:, 0] - 32) * scale
    y = _TEMPLATE_128x64[:, 1] * scale
    kp = np.rint(np.stack([x, y], axis=1)).astype(np.int64)
    return np.clip(kp, 0, [width - 1, height - 1])


def check_keypoints(kp, size: tuple[int, int], where: str) -> np.ndarray:
    """Keypoints as int64 (18, 2) (x, y), every shown joint inside the (H, W) frame, or :class:`InputError`
    naming ``where`` and the joint. Accepts nested lists (JSON) or arrays; values must be integers or
    -1 (missing, both coordinates)."""
    try:
        array = np.asarray(kp, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected 18 [x, y] pairs of numbers") from None
    if array.shape != (NUM_JOINTS, 2):
        raise InputError(f"{where}: expected 18 [x, y] pairs, got shape {array.shape}")
    if not np.isfinite(array).all() or (array != np.round(array)).any():
        raise InputError(f"{where}: coordinates must be whole pixels (integers, -1 = missing)")
    array = array.astype(np.int64)
    missing = (array == MISSING).any(axis=1)
    if ((array == MISSING).sum(axis=1) == 1).any():
        joint = JOINT_NAMES[int(np.argmax((array == MISSING).sum(axis=1) == 1))]
        raise InputError(f"{where}: joint {joint} has only one coordinate set to -1")
    _check_inside(array, ~missing, size, where)
    array[missing] = MISSING
    return array


def _check_inside(kp: np.ndarray, shown: np.ndarray, size: tuple[int, int], where: str) -> None:
    height, width = size
    outside = shown & ((kp[:, 0] < 0) | (kp[:, 0] >= width) | (kp[:, 1] < 0) | (kp[:, 1] >= height))
    if outside.any():
        j = int(np.argmax(outside))
        raise InputError(
            f"{where}: joint {JOINT_NAMES[j]} at (x={kp[j, 0]}, y={kp[j, 1]}) lies outside the "
            f"{width}x{height} (WxH) model frame"
        )


# ----------------------------------------------------------------------------------------------
# Our annotation CSV


def annotation_csv(name: str, kp: np.ndarray) -> str:
    """A one-row annotation file (header + row, ``deformgan.keypoints.read_annotations`` reads it)."""
    if not name or any(c in name for c in ":\n\r"):
        raise InputError(f"pose name {name!r}: expected a non-empty name without ':' or line breaks")
    return f"{ANNOTATION_HEADER}\n{format_annotation_row(name, kp)}\n"


# ----------------------------------------------------------------------------------------------
# OpenPose JSON


def to_openpose_json(kp: np.ndarray, size: tuple[int, int]) -> str:
    """One person's (18, 2) keypoints as OpenPose JSON (COCO-18 triples; hidden joint = 0, 0, 0)."""
    kp = np.asarray(kp, dtype=np.int64)
    triples: list[float] = []
    for x, y in kp:
        triples += [0, 0, 0] if x == MISSING or y == MISSING else [int(x), int(y), 1]
    person = {
        "person_id": [-1],
        "pose_keypoints_2d": triples,
        "face_keypoints_2d": [],
        "hand_left_keypoints_2d": [],
        "hand_right_keypoints_2d": [],
        "pose_keypoints_3d": [],
        "face_keypoints_3d": [],
        "hand_left_keypoints_3d": [],
        "hand_right_keypoints_3d": [],
    }
    document = {
        "version": OPENPOSE_VERSION,
        "canvas_width": int(size[1]),
        "canvas_height": int(size[0]),
        "people": [person],
    }
    return json.dumps(document, indent=1) + "\n"


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{where}: expected numbers in pose_keypoints_2d, got {value!r}")
    return float(value)


def from_openpose_json(text: str, size: tuple[int, int], where: str = "OpenPose JSON") -> list[np.ndarray]:
    """Every person of an OpenPose JSON document as int64 (18, 2) model-frame keypoints (-1 = missing).

    A joint is shown when its confidence is > 0 (OpenPose writes 0, 0, 0 for one it did not detect);
    coordinates are rounded to whole pixels, scaled from ``canvas_width`` x ``canvas_height`` to the model
    frame when the file gives them. Raises :class:`InputError` naming ``where`` for invalid JSON, no people,
    a keypoint list of another length than 18 or 25 triples, or a joint outside the frame.
    """
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(f"{where}: not valid JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("people"), list):
        raise InputError(f"{where}: expected an OpenPose document with a 'people' list")
    if not document["people"]:
        raise InputError(f"{where}: the 'people' list is empty (no pose in the file)")
    height, width = size
    scale = (1.0, 1.0)
    if "canvas_width" in document or "canvas_height" in document:
        cw = _number(document.get("canvas_width"), f"{where}: canvas_width")
        ch = _number(document.get("canvas_height"), f"{where}: canvas_height")
        if cw <= 0 or ch <= 0:
            raise InputError(f"{where}: canvas_width and canvas_height must be > 0, got {cw} x {ch}")
        scale = (width / cw, height / ch)
    poses = []
    for p, person in enumerate(document["people"]):
        here = f"{where}: person {p + 1}"
        values = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if not isinstance(values, list):
            raise InputError(f"{here}: has no 'pose_keypoints_2d' list")
        numbers = np.array([_number(v, here) for v in values], dtype=np.float64)
        if len(numbers) == 3 * NUM_JOINTS:
            triples = numbers.reshape(NUM_JOINTS, 3)
        elif len(numbers) == 3 * 25:
            triples = numbers.reshape(25, 3)[list(COCO18_FROM_BODY25)]
        else:
            raise InputError(
                f"{here}: pose_keypoints_2d has {len(numbers)} values, expected 54 (COCO-18) or 75 (BODY_25)"
            )
        shown = triples[:, 2] > 0
        # Pixel indices (the half-pixel convention of deformgan.pose.framing): identity when not scaled.
        kp = np.rint((triples[:, :2] + 0.5) * np.asarray(scale) - 0.5).astype(np.int64)
        _check_inside(kp, shown, size, here)
        kp[~shown] = MISSING
        poses.append(kp)
    return poses

"""The 18-joint OpenPose/COCO pose: joint layout, annotation files, Gaussian heatmaps, skeleton drawings.

Conventions used everywhere in deformgan (the authors' ``pose_utils.LABELS`` and annotation files):
- keypoints are arrays/tensors of shape (..., 18, 2) in **(x, y) = (column, row) pixel** order,
  integer pixel indices of the image's own resolution, with ``-1`` in both coordinates for a missing joint;
- the field's annotation CSV stores them the other way round (a list of rows y, then a list of columns x):
  the reader and writer here are the only places that convert.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from deformgan.atomic import atomic_write_text
from deformgan.errors import InputError

#: Joint names in index order, exactly as the reference's ``pose_utils.LABELS`` spells them.
JOINT_NAMES: tuple[str, ...] = (
    "nose", "neck", "Rsho", "Relb", "Rwri", "Lsho", "Lelb", "Lwri", "Rhip",
    "Rkne", "Rank", "Lhip", "Lkne", "Lank", "Leye", "Reye", "Lear", "Rear",
)  # fmt: skip
NUM_JOINTS = 18
MISSING = -1
JOINT = {name: i for i, name in enumerate(JOINT_NAMES)}

#: Bones drawn in skeleton figures (0-indexed joint pairs; the OpenPose COCO drawing order).
SKELETON_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17), (2, 16), (5, 17),
)  # fmt: skip

#: One RGB colour per joint (and per bone, by the bone's index), the usual OpenPose palette.
JOINT_COLORS: tuple[tuple[int, int, int], ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip

ANNOTATION_HEADER = "name:keypoints_y:keypoints_x"
PAIRS_HEADER = "from,to"


def is_present(kp: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """(..., 18, 2) keypoints -> (..., 18) bool: the joint was detected (neither coordinate is -1)."""
    return (kp[..., 0] != MISSING) & (kp[..., 1] != MISSING)


# ----------------------------------------------------------------------------------------------
# Annotation and pairs CSV files


#: Coordinates beyond this are not pixel indices of any image (and would overflow later arithmetic).
MAX_COORDINATE = 1 << 20


def _csv_rows(path: Path, header: str, what: str) -> Iterator[tuple[int, str]]:
    """(row number, line without newline) of a CSV file after its header; blank lines skipped.

    Accepts a UTF-8 byte-order mark (spreadsheets write one); a byte that is not UTF-8, a missing file, an
    empty file or a wrong header is an :class:`InputError` naming the file and the row.
    """
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    with path.open("rb") as f:
        if not f.read(1):  # not even a header: an empty file is damage, not "no rows"
            raise InputError(f"{path}: empty {what} file (expected the header {header!r})")
        f.seek(0)
        for row, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if row == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as error:
                raise InputError(
                    f"{path}: row {row}: not UTF-8 text "
                    f"(byte {raw[error.start]:#04x} at column {error.start + 1})"
                ) from None
            if row == 1:
                if line.strip() != header:
                    raise InputError(
                        f"{path}: row 1: expected the header {header!r}, got {line.strip()[:60]!r}"
                    )
                continue
            if line.strip():
                yield row, line


def check_image_name(name: str, where: str) -> str:
    """An image name from a CSV must be a plain file name inside its dataset folder (no folders, no ``..``,
    not absolute): otherwise a CSV could make deformgan read or write outside the dataset."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InputError(f"{where}: {name[:60]!r} is not a plain image file name (no folders, no '..')")
    return name


def _parse_coordinate_list(text: str, where: str, column: str) -> list[int]:
    try:
        values = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise InputError(f"{where}: {column} is not a list of integers: {text.strip()[:60]!r}") from None
    if (
        not isinstance(values, list)
        or len(values) != NUM_JOINTS
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    ):
        raise InputError(
            f"{where}: {column} must be a list of {NUM_JOINTS} integers, got {text.strip()[:60]!r}"
        )
    if any(abs(v) > MAX_COORDINATE for v in values):
        raise InputError(f"{where}: {column} has a coordinate beyond {MAX_COORDINATE} pixels")
    return values


def read_annotations(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an annotation CSV (``name:keypoints_y:keypoints_x``, as
    ``pose_utils.load_pose_cords_from_strings`` reads it).

    Returns ``{image name: int64 array (18, 2)}`` in **(x, y)** pixel order, -1 for a missing joint.
    Raises :class:`InputError` naming the file and row for a missing file, a wrong header, a row that is not
    UTF-8, or a malformed row.
    """
    path = Path(path)
    annotations: dict[str, np.ndarray] = {}
    for row, line in _csv_rows(path, ANNOTATION_HEADER, "annotation"):
        where = f"{path}: row {row}"
        fields = line.split(":")
        if len(fields) != 3:
            raise InputError(
                f"{where}: expected 3 colon-separated fields (name:[y...]:[x...]), got {len(fields)}"
            )
        name = check_image_name(fields[0].strip(), where)
        ys = _parse_coordinate_list(fields[1], where, "keypoints_y")
        xs = _parse_coordinate_list(fields[2], where, "keypoints_x")
        kp = np.stack([np.asarray(xs, dtype=np.int64), np.asarray(ys, dtype=np.int64)], axis=-1)
        # A joint is either fully present or fully missing; a lone -1 is not a coordinate.
        half_missing = (kp[:, 0] == MISSING) != (kp[:, 1] == MISSING)
        if half_missing.any():
            joint = JOINT_NAMES[int(np.argmax(half_missing))]
            raise InputError(f"{where}: joint {joint} has only one coordinate set to -1")
        if (kp < MISSING).any():
            raise InputError(f"{where}: negative coordinate other than -1 (missing)")
        if name in annotations:
            raise InputError(f"{where}: duplicate image name {name!r}")
        annotations[name] = kp
    return annotations


def format_annotation_row(name: str, kp: np.ndarray) -> str:
    """One CSV line (no newline) for ``kp`` (18, 2) in (x, y) order, in the field's byte-exact format."""
    kp = np.asarray(kp).astype(np.int64)
    if kp.shape != (NUM_JOINTS, 2):
        raise InputError(f"keypoints for {name!r} must have shape (18, 2), got {tuple(kp.shape)}")
    ys = ", ".join(str(int(v)) for v in kp[:, 1])
    xs = ", ".join(str(int(v)) for v in kp[:, 0])
    return f"{name}: [{ys}]: [{xs}]"


def write_annotations(path: str | os.PathLike, annotations: Mapping[str, np.ndarray]) -> None:
    """Write ``{name: (18, 2) (x, y)}`` as an annotation CSV (atomic); inverse of :func:`read_annotations`."""
    lines = [ANNOTATION_HEADER] + [format_annotation_row(n, kp) for n, kp in annotations.items()]
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def read_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Read a pairs CSV (header ``from,to``) into a list of (source name, target name)."""
    path = Path(path)
    pairs: list[tuple[str, str]] = []
    for row, line in _csv_rows(path, PAIRS_HEADER, "pairs"):
        where = f"{path}: row {row}"
        fields = [s.strip() for s in line.split(",")]
        if len(fields) != 2 or not all(fields):
            raise InputError(f"{where}: expected two image names 'from,to', got {line.strip()[:80]!r}")
        pairs.append((check_image_name(fields[0], where), check_image_name(fields[1], where)))
    return pairs


def write_pairs(path: str | os.PathLike, pairs: Iterable[tuple[str, str]]) -> None:
    """Write (source, target) name pairs as a pairs CSV (atomic); inverse of :func:`read_pairs`."""
    lines = [PAIRS_HEADER] + [f"{a},{b}" for a, b in pairs]
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------------------------
# Drawing


def draw_skeleton(kp: np.ndarray, size: tuple[int, int], radius: int = 2, thickness: int = 1) -> np.ndarray:
    """Draw a pose as a coloured stick figure on black (for figures).

    kp: (18, 2) in (x, y) pixels, -1 = missing. size: (H, W). Returns uint8 (H, W, 3) RGB.
    Bones whose two joints are present are drawn as anti-aliased lines, joints as filled discs.
    """
    from skimage.draw import disk, line_aa

    height, width = size
    kp = np.asarray(kp)
    present = np.asarray(is_present(kp))
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    for bone, (a, b) in enumerate(SKELETON_LIMBS):
        if not (present[a] and present[b]):
            continue
        color = np.asarray(JOINT_COLORS[bone % len(JOINT_COLORS)], dtype=np.float32)
        for offset in range(-(thickness // 2), thickness // 2 + 1):
            rr, cc, val = line_aa(
                int(kp[a, 1]) + offset, int(kp[a, 0]), int(kp[b, 1]) + offset, int(kp[b, 0])
            )
            ok = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
            rr, cc, val = rr[ok], cc[ok], val[ok]
            canvas[rr, cc] = np.maximum(canvas[rr, cc], val[:, None] * color)
    for joint in np.flatnonzero(present):
        rr, cc = disk((int(kp[joint, 1]), int(kp[joint, 0])), radius, shape=(height, width))
        canvas[rr, cc] = JOINT_COLORS[joint]
    return canvas.clip(0, 255).astype(np.uint8)

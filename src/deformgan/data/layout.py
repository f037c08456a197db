"""Datasets in the field's on-disk layout: where the pieces live, and how images are framed.

Layout (the authors' ``cmd.py`` paths), for a dataset prefix such as ``market``, ``fasion`` or ``synth``::

    ROOT/<prefix>-dataset/train/<images>   ROOT/<prefix>-annotation-train.csv   ROOT/<prefix>-pairs-train.csv
    ROOT/<prefix>-dataset/test/<images>    ROOT/<prefix>-annotation-test.csv    ROOT/<prefix>-pairs-test.csv

An image name is looked up in the train folder first, then in the test folder (the authors'
``pose_dataset.py`` does the same), everywhere in deformgan.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deformgan.errors import InputError
from deformgan.keypoints import MISSING, is_present

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetPreset:
    """How images of a dataset are read.

    image_size: (H, W) of the returned images; native_size: (H, W) of the images on disk;
    x_offset: columns cropped on the left (the crop keeps columns ``x_offset .. x_offset + W - 1``) and
    subtracted from every present keypoint's x.
    """

    name: str
    image_size: tuple[int, int]
    x_offset: int = 0
    native_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.native_size is None:
            object.__setattr__(self, "native_size", self.image_size)
        height, width = self.image_size
        native_height, native_width = self.native_size
        if native_height != height or self.x_offset < 0 or self.x_offset + width > native_width:
            raise InputError(
                f"preset {self.name!r}: a {height}x{width} crop at x_offset {self.x_offset} "
                f"does not fit in {native_height}x{native_width} images"
            )


PRESETS: dict[str, DatasetPreset] = {
    # Market-1501 crops are used at their native size (the authors' ``cmd.py``: 128x64).
    "market": DatasetPreset("market", (128, 64)),
    # DeepFashion as the reference trains it: the 256x256 low-res images (``cmd.py``).
    "deepfashion": DatasetPreset("deepfashion", (256, 256)),
    # PATN's split/resolution used by later work: 40 px cropped from each side, keypoints x - 40
    # (Zhu et al., CVPR 2019).
    "deepfashion-176": DatasetPreset("deepfashion-176", (256, 176), x_offset=40, native_size=(256, 256)),
}


def get_preset(preset: str | DatasetPreset) -> DatasetPreset:
    """A :class:`DatasetPreset` from its name (a key of :data:`PRESETS`) or the preset itself."""
    if isinstance(preset, DatasetPreset):
        return preset
    if preset not in PRESETS:
        raise InputError(f"preset: unknown dataset preset {preset!r}, expected one of {', '.join(PRESETS)}")
    return PRESETS[preset]


# ----------------------------------------------------------------------------------------------
# Where the pieces are


@dataclass(frozen=True)
class DatasetLayout:
    """Where the pieces of one dataset live (the conventional paths; not all of them need to exist).

    ``image_dirs``, ``annotation_files`` and ``pairs_files`` are keyed by split (``"train"``, ``"test"``).
    """

    root: Path
    prefix: str
    image_dirs: dict[str, Path] = field(default_factory=dict)
    annotation_files: dict[str, Path] = field(default_factory=dict)
    pairs_files: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def for_prefix(cls, root: str | os.PathLike, prefix: str) -> DatasetLayout:
        """The conventional paths of dataset ``prefix`` under ``root`` (nothing is checked)."""
        root = Path(root)
        return cls(
            root=root,
            prefix=prefix,
            image_dirs={s: root / f"{prefix}-dataset" / s for s in SPLITS},
            annotation_files={s: root / f"{prefix}-annotation-{s}.csv" for s in SPLITS},
            pairs_files={s: root / f"{prefix}-pairs-{s}.csv" for s in SPLITS},
        )

    def existing_annotation_files(self) -> list[Path]:
        """The annotation CSVs that exist, train first (the order the reference concatenates them)."""
        return [self.annotation_files[s] for s in SPLITS if self.annotation_files[s].is_file()]

    def existing_image_dirs(self) -> list[Path]:
        """The image folders that exist, train first (the authors' lookup order)."""
        return [self.image_dirs[s] for s in SPLITS if self.image_dirs[s].is_dir()]


_PIECE_PATTERNS = (
    re.compile(r"^(?P<prefix>.+)-dataset$"),
    re.compile(r"^(?P<prefix>.+)-annotation-(?:train|test)\.csv$"),
    re.compile(r"^(?P<prefix>.+)-pairs-(?:train|test)\.csv$"),
)


def find_layout(root: str | os.PathLike, prefix: str | None = None) -> DatasetLayout:
    """Find the dataset under ``root`` (the field's layout) and check its essential pieces.

    With ``prefix=None`` the prefix is inferred from the ``<prefix>-dataset`` folder and the
    ``<prefix>-annotation-*.csv`` / ``<prefix>-pairs-*.csv`` files; several prefixes are an error asking
    for ``prefix=``. Required: ``<prefix>-dataset/`` with a ``train/`` or ``test/`` folder, and at least one
    annotation CSV. Pairs CSVs are optional here (:func:`write_pair_files` creates them).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder not found")
    if prefix is None:
        found = sorted(
            {m["prefix"] for entry in os.listdir(root) for pat in _PIECE_PATTERNS if (m := pat.match(entry))}
        )
        if not found:
            raise InputError(
                f"{root}: no dataset found, expected <prefix>-dataset/{{train,test}}/ and "
                "<prefix>-annotation-{train,test}.csv (e.g. market-dataset/, market-annotation-train.csv)"
            )
        if len(found) > 1:
            raise InputError(f"{root}: several datasets ({', '.join(found)}); choose one with prefix=")
        prefix = found[0]
    layout = DatasetLayout.for_prefix(root, prefix)
    dataset_dir = root / f"{prefix}-dataset"
    if not dataset_dir.is_dir():
        raise InputError(f"{dataset_dir}: image folder not found, expected {prefix}-dataset/{{train,test}}/")
    if not layout.existing_image_dirs():
        raise InputError(f"{dataset_dir}: expected a train/ or test/ image folder inside, found neither")
    if not layout.existing_annotation_files():
        raise InputError(
            f"{root}: no keypoint annotations, expected {prefix}-annotation-train.csv "
            f"and/or {prefix}-annotation-test.csv"
        )
    return layout


def image_files(layout: DatasetLayout) -> dict[str, Path]:
    """{file name: path} over the layout's image folders; a train image shadows a test one of the same
    name (the train-then-test lookup order of the authors' ``pose_dataset.py``)."""
    files: dict[str, Path] = {}
    for folder in reversed(layout.existing_image_dirs()):  # test first, so train entries overwrite
        with os.scandir(folder) as entries:
            files.update({e.name: Path(e.path) for e in entries if e.is_file()})
    return files


def shift_keypoints(kp: np.ndarray, x_offset: int) -> np.ndarray:
    """(N, 18, 2) int keypoints -> float32, x - x_offset for present joints, missing stay -1.

    A joint outside the crop keeps its (negative or >= W) x, as PATN's 256x176 protocol does (its heatmap
    tail still enters the frame). The one exception: a joint landing exactly on x = -1 would read as a
    half-missing joint under the -1 convention, so it is marked missing (both coordinates -1).
    """
    present = np.asarray(is_present(kp))
    shifted = kp.astype(np.float32)
    shifted[..., 0] = np.where(present, shifted[..., 0] - x_offset, MISSING)
    lands_on_sentinel = present & (shifted[..., 0] == MISSING)
    shifted[lands_on_sentinel] = MISSING
    return shifted

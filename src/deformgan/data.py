"""Pair datasets in the reference's on-disk layout: discovery, pair generation, images and keypoints.

Layout (reference doc §1.3-§1.5), for a dataset prefix such as ``market``, ``fasion`` or ``synth``::

    ROOT/<prefix>-dataset/train/<images>   ROOT/<prefix>-annotation-train.csv   ROOT/<prefix>-pairs-train.csv
    ROOT/<prefix>-dataset/test/<images>    ROOT/<prefix>-annotation-test.csv    ROOT/<prefix>-pairs-test.csv

Images are returned as float32 (3, H, W) in [-1, 1] = (I / 255 - 0.5) * 2 (doc §1.6, no augmentation);
keypoints as float32 (18, 2) in (x, y) pixels of the returned image, -1 = missing (doc §1.1).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deformgan.errors import InputError
from deformgan.keypoints import (
    JOINT,
    MISSING,
    NUM_JOINTS,
    is_present,
    read_annotations,
    read_pairs,
    write_pairs,
)

SPLITS = ("train", "test")

#: The four joints the model needs (reference ``pose_transform.check_valid``, doc §1.4 step 1).
TORSO_JOINTS: tuple[str, ...] = ("Rsho", "Lsho", "Rhip", "Lhip")
_TORSO_INDEX = np.array([JOINT[name] for name in TORSO_JOINTS])

#: Market-1501 junk (``-1``) and distractor (``0000``) images, dropped from pairs (doc §1.4 step 1).
DISTRACTOR_PREFIXES: tuple[str, ...] = ("-1", "0000")

#: The reference's ``--images_for_test`` default (doc §1.4 step 4).
DEFAULT_TEST_PAIRS = 12000


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
    # Market-1501 crops are used at their native size (doc §1.5, §1.6).
    "market": DatasetPreset("market", (128, 64)),
    # DeepFashion as the reference trains it: the 256x256 low-res images (doc §1.5).
    "deepfashion": DatasetPreset("deepfashion", (256, 256)),
    # PATN's split/resolution used by later work: 40 px cropped from each side, keypoints x - 40
    # (field survey §2.2).
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
# Layout discovery


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
        """The image folders that exist, train first (the reference's lookup order, doc §1.4)."""
        return [self.image_dirs[s] for s in SPLITS if self.image_dirs[s].is_dir()]


_PIECE_PATTERNS = (
    re.compile(r"^(?P<prefix>.+)-dataset$"),
    re.compile(r"^(?P<prefix>.+)-annotation-(?:train|test)\.csv$"),
    re.compile(r"^(?P<prefix>.+)-pairs-(?:train|test)\.csv$"),
)


def find_layout(root: str | os.PathLike, prefix: str | None = None) -> DatasetLayout:
    """Find the dataset under ``root`` (reference layout, doc §1.5) and check its essential pieces.

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


# ----------------------------------------------------------------------------------------------
# Images


def load_image(
    path: str | os.PathLike,
    size: tuple[int, int],
    x_offset: int = 0,
    native_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Read an image file as float32 (3, H, W) in [-1, 1] = (I / 255 - 0.5) * 2 (RGB; doc §1.6).

    size: (H, W) returned; the file must be ``native_size`` (default (H, W + 2 * x_offset), a crop of
    ``x_offset`` columns on each side) and columns ``x_offset .. x_offset + W - 1`` are kept. A file of
    another size is an :class:`InputError` (no silent resizing: keypoints are in the native pixel frame).
    """
    path = Path(path)
    height, width = size
    if native_size is None:
        native_size = (height, width + 2 * x_offset)
    try:
        with Image.open(path) as image:
            _check_image_size(path, image.size, native_size)
            pixels = np.array(image.convert("RGB"))  # a writable copy for torch
    except OSError as error:
        raise InputError(f"{path}: cannot read image ({error})") from None
    pixels = pixels[:, x_offset : x_offset + width]
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).to(torch.float32)
    return (tensor / 255.0 - 0.5) * 2.0


def _check_image_size(path: Path, pil_size: tuple[int, int], native_size: tuple[int, int]) -> None:
    width, height = pil_size
    if (height, width) != tuple(native_size):
        raise InputError(
            f"{path}: expected a {native_size[0]}x{native_size[1]} (HxW) image, got {height}x{width}"
        )


# ----------------------------------------------------------------------------------------------
# Pair generation (reference create_pairs_dataset.py, doc §1.4)


def has_complete_torso(kp: np.ndarray) -> np.ndarray:
    """(..., 18, 2) keypoints -> (...) bool: all of Rsho, Lsho, Rhip, Lhip are present."""
    return np.asarray(is_present(np.asarray(kp)))[..., _TORSO_INDEX].all(axis=-1)


def is_distractor(name: str) -> bool:
    """Market-1501 junk (``-1_...``) or distractor (``0000_...``) image."""
    return name.startswith(DISTRACTOR_PREFIXES)


def person_id(name: str) -> str:
    """Identity of an image: its name up to the first underscore (doc §1.4 step 2)."""
    return name.split("_", 1)[0]


def make_pairs(
    annotations: Mapping[str, np.ndarray], *, test_sample: int | None = None, seed: int = 0
) -> list[tuple[str, str]]:
    """Same-person (source, target) pairs, exactly as the reference's ``create_pairs_dataset.py``.

    annotations: ``{name: (18, 2) keypoints}`` in file order. Images without a complete torso
    (:data:`TORSO_JOINTS`) and Market junk/distractors are dropped; identities are taken in order of first
    appearance (the reference's ``pd.unique``) and, within one, all ordered pairs
    (``itertools.permutations(names, 2)``, file order), so an identity with n images gives n (n - 1) pairs.

    test_sample: if given, return a random sample without replacement of ``min(test_sample, N)`` pairs
    (the test split; the reference uses 12000). The reference draws it with pandas
    ``DataFrame.sample(n, random_state=seed)``, which is ``np.random.RandomState(seed).choice(N, n,
    replace=False)``; the same call is made here, so the draw is identical (it reproduces the standard
    12,000 Market test pairs from the test annotations, see tests).
    """
    groups: dict[str, list[str]] = {}
    for name, kp in annotations.items():
        if is_distractor(name) or not has_complete_torso(kp):
            continue
        groups.setdefault(person_id(name), []).append(name)
    pairs = [pair for names in groups.values() for pair in itertools.permutations(names, 2)]
    if test_sample is None:
        return pairs
    if test_sample < 0:
        raise InputError(f"test_sample: expected a non-negative number of pairs, got {test_sample}")
    chosen = np.random.RandomState(seed).choice(len(pairs), min(test_sample, len(pairs)), replace=False)
    return [pairs[i] for i in chosen]


def write_pair_files(
    root: str | os.PathLike,
    *,
    prefix: str | None = None,
    test_sample: int | None = DEFAULT_TEST_PAIRS,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, tuple[Path, int]]:
    """Create ``<prefix>-pairs-{train,test}.csv`` for a dataset folder (the "own dataset" recipe).

    For each split with an annotation CSV, pairs are made with :func:`make_pairs` (the test split sampled
    to ``test_sample`` pairs; ``None`` keeps all) and written atomically. Every annotated image must exist
    in the image folders (train, then test), so the pairs never name a missing file. Existing pairs files
    are an error unless ``overwrite``. Returns ``{split: (pairs file, number of pairs)}``.
    """
    layout = find_layout(root, prefix)
    files = _list_images(layout)
    splits = [s for s in SPLITS if layout.annotation_files[s].is_file()]
    for split in splits:  # refuse before writing anything, so a refusal never leaves half the files
        out = layout.pairs_files[split]
        if out.exists() and not overwrite:
            raise InputError(f"{out}: pairs file already exists (pass overwrite=True to replace it)")
    written: dict[str, tuple[Path, int]] = {}
    for split in splits:
        annotation_file = layout.annotation_files[split]
        out = layout.pairs_files[split]
        annotations = read_annotations(annotation_file)
        missing = [name for name in annotations if name not in files]
        if missing:
            raise InputError(
                f"{annotation_file}: {len(missing)} annotated image(s) not found in "
                f"{' or '.join(map(str, layout.existing_image_dirs()))}, e.g. {missing[0]!r}"
            )
        pairs = make_pairs(annotations, test_sample=test_sample if split == "test" else None, seed=seed)
        write_pairs(out, pairs)
        written[split] = (out, len(pairs))
    return written


# ----------------------------------------------------------------------------------------------
# The dataset


def _list_images(layout: DatasetLayout) -> dict[str, Path]:
    """{file name: path} over the image folders, a train image shadowing a test one (doc §1.4)."""
    files: dict[str, Path] = {}
    for folder in reversed(layout.existing_image_dirs()):  # test first, so train entries overwrite
        with os.scandir(folder) as entries:
            files.update({e.name: Path(e.path) for e in entries if e.is_file()})
    return files


def _shift_keypoints(kp: np.ndarray, x_offset: int) -> np.ndarray:
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


class PairDataset(torch.utils.data.Dataset):
    """(source, target) image pairs of one person with their keypoints (reference ``PoseHMDataset`` data).

    root: folder in the reference layout (see :func:`find_layout`); split: ``"train"`` or ``"test"``;
    preset: name in :data:`PRESETS` or a :class:`DatasetPreset`; pairs: ``None`` (the split's pairs CSV),
    a pairs CSV path or a list of (source, target) names; annotations: ``None`` (the train and test
    annotation CSVs concatenated, as the reference does) or one or more CSV paths; prefix: dataset prefix
    when ``root`` holds several.

    Construction validates every pair without decoding images: both names are annotated, both have a
    complete torso (the model needs one; ``allow_incomplete_torso=True`` keeps such pairs) and both image
    files exist (looked up in the train folder, then the test folder). Image sizes are checked when an
    item is loaded, or for all images at once by :meth:`check_images`.

    Item: dict(source_image, target_image: float32 (3, H, W) in [-1, 1]; source_kp, target_kp: float32
    (18, 2) (x, y) pixels of the returned image, -1 = missing; source_name, target_name: str).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        preset: str | DatasetPreset = "market",
        pairs: str | os.PathLike | Sequence[tuple[str, str]] | None = None,
        annotations: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        prefix: str | None = None,
        allow_incomplete_torso: bool = False,
    ):
        if split not in SPLITS:
            raise InputError(f"split: expected 'train' or 'test', got {split!r}")
        self.split = split
        self.preset = get_preset(preset)
        self.layout = find_layout(root, prefix)
        self.annotations = self._read_annotations(annotations)
        self.pairs, pairs_source = self._read_pairs(pairs)

        names = list(self.annotations)
        index = {name: i for i, name in enumerate(names)}
        native_kp = np.stack([self.annotations[n] for n in names]) if names else np.zeros((0, NUM_JOINTS, 2))
        torso_ok = has_complete_torso(native_kp)
        files = _list_images(self.layout)
        folders = " or ".join(str(d) for d in self.layout.existing_image_dirs())

        pair_index = np.empty((len(self.pairs), 2), dtype=np.int64)
        for i, pair in enumerate(self.pairs):
            where = pairs_source(i)
            for side, name in enumerate(pair):
                j = index.get(name)
                if j is None:
                    raise InputError(f"{where}: image {name!r} has no keypoints in {self._annotation_desc}")
                if not torso_ok[j] and not allow_incomplete_torso:
                    absent = [n for n in TORSO_JOINTS if not is_present(native_kp[j, JOINT[n]])]
                    raise InputError(
                        f"{where}: image {name!r} lacks torso joint(s) {', '.join(absent)}; the model needs "
                        f"all of {', '.join(TORSO_JOINTS)} (pass allow_incomplete_torso=True to keep it)"
                    )
                if name not in files:
                    raise InputError(f"{where}: image file {name!r} not found in {folders}")
                pair_index[i, side] = j

        self._names = names
        self._index = index
        self._paths = [files.get(n) for n in names]
        self._keypoints = _shift_keypoints(native_kp, self.preset.x_offset)
        self._pair_index = pair_index

    # -- construction helpers

    def _read_annotations(self, annotations) -> dict[str, np.ndarray]:
        if annotations is None:
            paths = self.layout.existing_annotation_files()
        elif isinstance(annotations, (str, os.PathLike)):
            paths = [Path(annotations)]
        else:
            paths = [Path(p) for p in annotations]
        if not paths:
            raise InputError("annotations: expected at least one annotation CSV")
        self._annotation_desc = " + ".join(str(p) for p in paths)
        merged: dict[str, np.ndarray] = {}
        origin: dict[str, Path] = {}
        for path in paths:
            for name, kp in read_annotations(path).items():
                if name in merged:
                    raise InputError(f"{path}: image {name!r} is also annotated in {origin[name]}")
                merged[name] = kp
                origin[name] = path
        return merged

    def _read_pairs(self, pairs):
        if pairs is None:
            path = self.layout.pairs_files[self.split]
            if not path.is_file():
                raise InputError(
                    f"{path}: pairs file not found (create it with deformgan.data.write_pair_files "
                    "or pass pairs=)"
                )
            pairs = path
        if isinstance(pairs, (str, os.PathLike)):
            path = Path(pairs)
            # read_pairs skips blank lines; rows are numbered as in a file without them (header = row 1).
            return read_pairs(path), lambda i: f"{path}: row {i + 2}"
        listed = []
        for i, pair in enumerate(pairs):
            if len(pair) != 2 or not all(isinstance(n, str) and n for n in pair):
                raise InputError(
                    f"pairs: item {i}: expected a (source, target) pair of image names, got {pair!r}"
                )
            listed.append((pair[0], pair[1]))
        return listed, lambda i: f"pairs: item {i}"

    # -- access

    def __len__(self) -> int:
        return len(self._pair_index)

    def keypoints(self, name: str) -> torch.Tensor:
        """float32 (18, 2) keypoints of image ``name`` in the returned image's (x, y) frame, -1 = missing."""
        if name not in self._index:
            raise InputError(f"image {name!r} has no keypoints in {self._annotation_desc}")
        return torch.from_numpy(self._keypoints[self._index[name]].copy())

    def _image(self, j: int) -> torch.Tensor:
        preset = self.preset
        return load_image(self._paths[j], preset.image_size, preset.x_offset, preset.native_size)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | str]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"pair index {i} out of range for {len(self)} pairs")
        source, target = (int(j) for j in self._pair_index[i])
        return {
            "source_image": self._image(source),
            "source_kp": torch.from_numpy(self._keypoints[source].copy()),
            "target_image": self._image(target),
            "target_kp": torch.from_numpy(self._keypoints[target].copy()),
            "source_name": self._names[source],
            "target_name": self._names[target],
        }

    def check_images(self) -> int:
        """Check the size of every image used by a pair (header only, no decoding); return how many.

        Raises :class:`InputError` naming the first file whose size differs from the preset's native size.
        """
        used = np.unique(self._pair_index)
        for j in used:
            path = self._paths[j]
            try:
                with Image.open(path) as image:  # lazy: reads the header only
                    _check_image_size(path, image.size, self.preset.native_size)
            except OSError as error:
                raise InputError(f"{path}: cannot read image ({error})") from None
        return len(used)


__all__ = [
    "DEFAULT_TEST_PAIRS",
    "DISTRACTOR_PREFIXES",
    "PRESETS",
    "SPLITS",
    "TORSO_JOINTS",
    "DatasetLayout",
    "DatasetPreset",
    "PairDataset",
    "find_layout",
    "get_preset",
    "has_complete_torso",
    "is_distractor",
    "load_image",
    "make_pairs",
    "person_id",
    "write_pair_files",
]

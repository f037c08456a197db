"""The training and test pairs as a torch Dataset: two images of one person and their keypoints.

Images are float32 (3, H, W) in [-1, 1] (:func:`deformgan.images.from_uint8`, no augmentation, as the
authors' loader); keypoints float32 (18, 2) in (x, y) pixels of the returned image, -1 = missing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deformgan.data.layout import SPLITS, DatasetPreset, find_layout, get_preset, image_files, shift_keypoints
from deformgan.errors import InputError
from deformgan.images import from_uint8, read_image
from deformgan.keypoints import JOINT, NUM_JOINTS, is_present, read_annotations, read_pairs
from deformgan.parts import TORSO_JOINTS, has_complete_torso


def load_image(path: str | os.PathLike, preset: DatasetPreset) -> torch.Tensor:
    """Read a dataset image as float32 (3, H, W) in [-1, 1], cropped as ``preset`` says.

    The file must be ``preset.native_size``; columns ``x_offset .. x_offset + W - 1`` are kept. Another
    size is an :class:`InputError` (no silent resizing: keypoints are in the native pixel frame).
    """
    pixels = read_image(path, preset.native_size)
    width = preset.image_size[1]
    return from_uint8(pixels[:, preset.x_offset : preset.x_offset + width])


class PairDataset(torch.utils.data.Dataset):
    """(source, target) image pairs of one person with their keypoints (reference ``PoseHMDataset`` data).

    root: folder in the reference layout (see :func:`find_layout`); split: ``"train"`` or ``"test"``;
    preset: name in :data:`PRESETS` or a :class:`DatasetPreset`; pairs: ``None`` (the split's pairs CSV),
    a pairs CSV path or a list of (source, target) names; annotations: ``None`` (the train and test
    annotation CSVs concatenated, as the reference does) or one or more CSV paths; prefix: dataset prefix
    when ``root`` holds several.

    Construction validates every pair without decoding images: both names are annotated, both have a
    complete torso (the model needs one; ``allow_incomplete_torso=True`` keeps such pairs) and both image
    files exist (looked up in the train folder, then the test folder). Images are decoded and their size
    checked when an item is loaded, or for all images at once by :meth:`check_images`.

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
        files = image_files(self.layout)
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
        self._keypoints = shift_keypoints(native_kp, self.preset.x_offset)
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
        return load_image(self._paths[j], self.preset)

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

    def check_images(self, progress: bool = False) -> int:
        """Decode every image used by a pair and check its size; return how many were checked.

        Raises :class:`InputError` naming the first unreadable, truncated or wrongly sized file.
        """
        from tqdm.auto import tqdm

        used = np.unique(self._pair_index)
        for j in tqdm(used, desc=f"check {self.split}", unit="img", disable=not progress):
            read_image(self._paths[j], self.preset.native_size)
        return len(used)

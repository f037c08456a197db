"""Test helpers: synthetic people, poses, method output folders in every format of
``deformgan.evaluation.formats``, and dataset folders in the field's layout (for test_formats, test_compare,
test_failures, test_report_browser, test_cli)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deformgan.images import write_image
from deformgan.keypoints import JOINT, draw_skeleton, write_annotations, write_pairs

MARKET = (128, 64)

#: A frontal standing pose in a 128x64 frame, (x, y) pixels.
STANDING = {
    "nose": (32, 18), "neck": (32, 30), "Rsho": (24, 32), "Relb": (20, 48), "Rwri": (18, 62),
    "Lsho": (40, 32), "Lelb": (44, 48), "Lwri": (46, 62), "Rhip": (27, 66), "Rkne": (26, 88),
    "Rank": (26, 110), "Lhip": (37, 66), "Lkne": (38, 88), "Lank": (38, 110), "Leye": (34, 16),
    "Reye": (30, 16), "Lear": (36, 17), "Rear": (28, 17),
}  # fmt: skip


def standing_pose() -> np.ndarray:
    """(18, 2) int (x, y) keypoints of :data:`STANDING`."""
    kp = np.full((18, 2), -1, dtype=np.int64)
    for name, xy in STANDING.items():
        kp[JOINT[name]] = xy
    return kp


def random_pose(rng: np.random.Generator, jitter: float = 3.0) -> np.ndarray:
    """The standing pose with every joint moved by up to ``jitter`` px (clipped to the Market frame)."""
    kp = standing_pose().astype(np.float64) + rng.uniform(-jitter, jitter, (18, 2))
    kp[:, 0] = kp[:, 0].clip(0, MARKET[1] - 1)
    kp[:, 1] = kp[:, 1].clip(0, MARKET[0] - 1)
    return kp.round().astype(np.int64)


def person(kp: np.ndarray, rng: np.random.Generator, size: tuple[int, int] = MARKET) -> np.ndarray:
    """A textured background with the pose drawn thick in a random colour: uint8 (H, W, 3)."""
    background = rng.integers(60, 200, (1, 1, 3)) + rng.integers(-20, 20, (*size, 3))
    figure = draw_skeleton(kp, size, radius=4, thickness=5)
    colour = rng.integers(0, 255, 3)
    image = np.where(figure.any(-1, keepdims=True), colour, background)
    return image.clip(0, 255).astype(np.uint8)


class Synthetic:
    """N synthetic pairs: names, keypoints (annotation CSV), source / target / generated images."""

    def __init__(self, n: int, seed: int = 0, noise: float = 20.0):
        rng = np.random.default_rng(seed)
        self.pairs = [(f"p{i:03d}_a.jpg", f"p{i:03d}_b.jpg") for i in range(n)]
        self.keypoints = {}
        sources, targets = [], []
        for a, b in self.pairs:
            self.keypoints[a] = random_pose(rng)
            self.keypoints[b] = random_pose(rng)
            sources.append(person(self.keypoints[a], rng))
            targets.append(person(self.keypoints[b], rng))
        self.source = np.stack(sources)
        self.target = np.stack(targets)
        noisy = self.target.astype(np.float64) + rng.normal(0, noise, self.target.shape)
        self.generated = noisy.clip(0, 255).astype(np.uint8)

    def annotations(self, path: Path) -> Path:
        write_annotations(path, self.keypoints)
        return path

    def pose_panels(self) -> tuple[np.ndarray, np.ndarray]:
        src = np.stack([draw_skeleton(self.keypoints[a], MARKET) for a, _ in self.pairs])
        tgt = np.stack([draw_skeleton(self.keypoints[b], MARKET) for _, b in self.pairs])
        return src, tgt


def _write_lossless(image: np.ndarray, path: Path) -> None:
    """PNG bytes under any name (the dataset's .jpg names; readers decode by content): exact pixels."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")


def write_dataset(root: Path, test: Synthetic, train: Synthetic, prefix: str = "synth") -> Path:
    """A dataset folder in the field's layout (``<prefix>-dataset/{train,test}/``, annotation and pairs
    CSVs): ``test``'s sources and targets are the test images, its pairs the test pairs; ``train``'s images,
    renamed ``train-NNN.jpg``, are the training split. Pixels are exact (PNG bytes). Returns ``root``;
    the training names map to ``train`` by :func:`train_names`."""
    images = root / f"{prefix}-dataset"
    for (a, b), source, target in zip(test.pairs, test.source, test.target, strict=True):
        _write_lossless(source, images / "test" / a)
        _write_lossless(target, images / "test" / b)
    write_annotations(root / f"{prefix}-annotation-test.csv", test.keypoints)
    write_pairs(root / f"{prefix}-pairs-test.csv", test.pairs)
    renamed = train_names(train)
    pixels = dict(zip([a for a, _ in train.pairs], train.source, strict=True))
    pixels.update(zip([b for _, b in train.pairs], train.target, strict=True))
    for old, new in renamed.items():
        _write_lossless(pixels[old], images / "train" / new)
    write_annotations(
        root / f"{prefix}-annotation-train.csv", {new: train.keypoints[old] for old, new in renamed.items()}
    )
    return root


def train_names(train: Synthetic) -> dict[str, str]:
    """{name in ``train`` -> training file name in :func:`write_dataset`'s folder}, in file order."""
    names = [n for pair in train.pairs for n in pair]
    return {name: f"train-{i:03d}.jpg" for i, name in enumerate(names)}


def write_folder(
    folder: Path,
    fmt: str,
    pairs: Sequence[tuple[str, str]],
    generated: np.ndarray,
    source: np.ndarray | None = None,
    target: np.ndarray | None = None,
    poses: tuple[np.ndarray, np.ndarray] | None = None,
    suffix: str = ".png",
    numbers: Sequence[int] | None = None,
) -> Path:
    """Write a method folder in format ``fmt`` ("generated", "strips", "vis", "vis3", "numbered",
    "numbered1", "named", "named-stems") and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, (a, b) in enumerate(pairs):
        if fmt in ("strips", "vis3", "numbered"):
            image = np.concatenate([source[i], target[i], generated[i]], axis=1)
        elif fmt == "vis":
            image = np.concatenate([source[i], poses[0][i], target[i], poses[1][i], generated[i]], axis=1)
        else:
            image = generated[i]
        if fmt in ("generated", "strips"):
            name = f"{a}_{b}{suffix}"
        elif fmt in ("vis", "vis3"):
            name = f"{a}___{b}_vis{suffix}"
        elif fmt in ("numbered", "numbered1"):
            name = f"{(numbers[i] if numbers is not None else i):05d}{suffix}"
        elif fmt == "named":
            name = f"{a}___{b}{suffix}"
        elif fmt == "named-stems":
            name = f"{Path(a).stem}_{Path(b).stem}{suffix}"
        else:
            raise ValueError(fmt)
        write_image(image, folder / name)
    return folder

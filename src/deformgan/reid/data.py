"""Re-ID data: the Market-1501 layout, deformgan's synthetic layout, extra (generated) image folders.

**Market-1501** (Zheng et al., ICCV 2015): ``ROOT/bounding_box_train/`` (training, 751 identities),
``ROOT/query/`` and ``ROOT/bounding_box_test/`` (the gallery). Names are ``PPPP_cCsS_FFFFFF_BB.jpg``:
identity ``PPPP`` (``-1`` = junk box, ``0000`` = distractor), camera ``C``, sequence ``S``, frame, box.

**deformgan synthetic people** (``deformgan synth``): ``ROOT/<prefix>-dataset/{train,test}/`` with the same
names (PNG, six cameras) and identity-disjoint splits. The test split has no query folder, so one is made
deterministically: for every test identity seen by at least two cameras, one image of each camera that
holds two or more of its images becomes a query (chosen with ``numpy.random.default_rng([seed, identity,
camera])``); everything else is the gallery. Every query then keeps a good match (same identity, other
camera) in the gallery, as every Market query does.

**Extra folders** (e.g. generated people for the augmented training set): images plus an optional
``manifest.csv`` (columns ``name,identity,camera``, more columns allowed; see :func:`write_manifest`).
With a manifest, it lists the images and gives their labels; without one, every image name must start
with a Market name ``PPPP_cCsS_FFFFFF_BB`` (anything may follow, e.g. deformgan's ``<from>_<to>.png``) and
its identity and camera are read from there. Identities of extra images must be positive.

Images are returned by :class:`ReIDImageDataset` as float tensors (3, H, W) normalised with the ImageNet
mean and standard deviation (what torchvision's ImageNet weights expect), with the identity label.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deformgan.atomic import atomic_write_text
from deformgan.errors import InputError
from deformgan.images import read_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MARKET_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
MANIFEST = "manifest.csv"
MANIFEST_COLUMNS = ("name", "identity", "camera")
#: ImageNet statistics used by torchvision's pretrained weights.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

_MARKET_STEM = r"(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})"
_MARKET_NAME = re.compile(_MARKET_STEM + r"\.(?:jpg|jpeg|png)", re.IGNORECASE)
_MARKET_PREFIX = re.compile(_MARKET_STEM + r".*\.(?:jpg|jpeg|png)", re.IGNORECASE)


@dataclass(frozen=True)
class ReIDImage:
    """One image: its path, identity (-1 junk, 0 distractor, > 0 a person) and 1-based camera."""

    path: Path
    identity: int
    camera: int


@dataclass(frozen=True)
class ReIDSplits:
    """A Re-ID dataset: training images, queries and gallery, and which layout it was read from."""

    root: Path
    layout: str  # "market" or "synthetic"
    train: list[ReIDImage]
    query: list[ReIDImage]
    gallery: list[ReIDImage]

    def summary(self) -> dict:
        """Counts for reports: images and identities per split."""
        return {
            "root": str(self.root),
            "layout": self.layout,
            **{
                split: {
                    "images": len(images),
                    "identities": len({im.identity for im in images if im.identity > 0}),
                }
                for split, images in (("train", self.train), ("query", self.query), ("gallery", self.gallery))
            },
        }


def parse_market_name(name: str, where: str | os.PathLike = "", prefix_only: bool = False) -> tuple[int, int]:
    """``"0002_c1s1_000451_03.jpg"`` -> (identity 2, camera 1); ``-1_c3s2_...`` -> (-1, 3).

    prefix_only: accept anything between the Market stem and the image suffix (generated-image names).
    Raises InputError naming ``where`` (the file) when the name does not follow the Market pattern.
    """
    pattern = _MARKET_PREFIX if prefix_only else _MARKET_NAME
    match = pattern.fullmatch(name)
    if match is None:
        expected = "PPPP_cCsS_FFFFFF_BB<anything>" if prefix_only else "PPPP_cCsS_FFFFFF_BB"
        raise InputError(
            f"{Path(where) / name if where else name}: expected a Market-1501 image name {expected}.jpg/.png "
            "(PPPP identity or -1, C camera digit, S sequence digit)"
        )
    camera = int(match[2])
    if camera < 1:
        raise InputError(f"{Path(where) / name if where else name}: camera numbers start at 1, got c0")
    return int(match[1]), camera


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: expected an image folder, which does not exist")
    # Other files (Market-1501 ships Thumbs.db files) are not images and are ignored.
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def list_market_folder(folder: str | os.PathLike, prefix_only: bool = False) -> list[ReIDImage]:
    """All images of one Market-style folder, sorted by name, labelled from their names."""
    folder = Path(folder)
    images = []
    for path in _image_files(folder):
        identity, camera = parse_market_name(path.name, folder, prefix_only=prefix_only)
        images.append(ReIDImage(path=path, identity=identity, camera=camera))
    if not images:
        raise InputError(f"{folder}: expected Market-1501 images (.jpg/.png), found none")
    return images


def split_query_gallery(
    images: Sequence[ReIDImage], seed: int = 0
) -> tuple[list[ReIDImage], list[ReIDImage]]:
    """Queries and gallery from a test split without a query folder (module docstring for the rule)."""
    by_identity: dict[int, dict[int, list[ReIDImage]]] = defaultdict(lambda: defaultdict(list))
    for image in images:
        by_identity[image.identity][image.camera].append(image)
    queries: set[Path] = set()
    for identity, cameras in by_identity.items():
        if identity <= 0 or len(cameras) < 2:
            continue
        for camera, group in sorted(cameras.items()):
            if len(group) >= 2:
                pick = int(np.random.default_rng([seed, identity, camera]).integers(len(group)))
                queries.add(group[pick].path)
    query = [im for im in images if im.path in queries]
    gallery = [im for im in images if im.path not in queries]
    return query, gallery


def find_synthetic_dataset(root: Path, prefix: str | None = None) -> Path:
    """``root/<prefix>-dataset`` holding ``train/`` and ``test/``; with no prefix, the only such folder."""
    if prefix is not None:
        candidates = [root / f"{prefix}-dataset"]
    else:
        candidates = sorted(p for p in root.glob("*-dataset") if p.is_dir())
    candidates = [p for p in candidates if (p / "train").is_dir() and (p / "test").is_dir()]
    if len(candidates) != 1:
        found = ", ".join(p.name for p in candidates) or "none"
        raise InputError(
            f"{root}: expected Market-1501 folders ({', '.join(MARKET_FOLDERS.values())}) or one "
            f"<prefix>-dataset/{{train,test}} folder (deformgan synth); found {found}"
        )
    return candidates[0]


def load_reid_dataset(root: str | os.PathLike, prefix: str | None = None, query_seed: int = 0) -> ReIDSplits:
    """Read a Market-1501 root or a deformgan synthetic root (module docstring) -> :class:`ReIDSplits`."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: dataset folder does not exist")
    market = {split: root / folder for split, folder in MARKET_FOLDERS.items()}
    if any(path.is_dir() for path in market.values()):
        missing = [str(path) for path in market.values() if not path.is_dir()]
        if missing:
            raise InputError(f"{root}: incomplete Market-1501 layout, missing {', '.join(missing)}")
        splits = {split: list_market_folder(path) for split, path in market.items()}
        return ReIDSplits(root=root, layout="market", **splits)
    dataset = find_synthetic_dataset(root, prefix)
    train = list_market_folder(dataset / "train")
    query, gallery = split_query_gallery(list_market_folder(dataset / "test"), seed=query_seed)
    if not query:
        raise InputError(
            f"{dataset / 'test'}: no test identity has two images in one camera and images in another "
            "camera; cannot form queries (write more poses per identity)"
        )
    return ReIDSplits(root=root, layout="synthetic", train=train, query=query, gallery=gallery)


def write_manifest(folder: str | os.PathLike, rows: Iterable[Mapping[str, object]]) -> Path:
    """Write ``folder/manifest.csv`` atomically: one row per image with at least name, identity, camera.

    Extra keys become extra columns (e.g. the conditioning image and the target pose of a generated
    image); the columns are the union of the keys, the three required ones first. Returns the path.
    """
    rows = [dict(row) for row in rows]
    extra: list[str] = []
    for index, row in enumerate(rows):
        missing = [c for c in MANIFEST_COLUMNS if c not in row]
        if missing:
            raise InputError(f"manifest row {index}: missing {', '.join(missing)}")
        extra.extend(k for k in row if k not in MANIFEST_COLUMNS and k not in extra)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*MANIFEST_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(Path(folder) / MANIFEST, buffer.getvalue())


def _positive_int(value: str, what: str, minimum: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InputError(f"{what}: expected an integer >= {minimum}, got {value!r}") from None
    if number < minimum:
        raise InputError(f"{what}: expected an integer >= {minimum}, got {number}")
    return number


def read_extra_folder(folder: str | os.PathLike) -> list[ReIDImage]:
    """Images of an extra training folder with their labels (manifest or names; module docstring)."""
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.is_file():
        images = list_market_folder(folder, prefix_only=True)
        for image in images:
            if image.identity <= 0:
                raise InputError(f"{image.path}: extra training images need a person identity > 0")
        return images
    images = []
    with open(manifest, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                f"{manifest}: expected columns {', '.join(MANIFEST_COLUMNS)}, missing {', '.join(missing)}"
            )
        for line, row in enumerate(reader, start=2):
            where = f"{manifest}:{line}"
            path = folder / row["name"]
            if Path(row["name"]).name != row["name"] or not path.is_file():
                raise InputError(f"{where}: image {row['name']!r} is not a file in {folder}")
            identity = _positive_int(row["identity"], f"{where} identity", 1)
            camera = _positive_int(row["camera"], f"{where} camera", 1)
            images.append(ReIDImage(path=path, identity=identity, camera=camera))
    if not images:
        raise InputError(f"{manifest}: lists no images")
    return images


def identity_labels(images: Iterable[ReIDImage]) -> list[int]:
    """Sorted positive identities of ``images``: label i of a classifier stands for identity ``[i]``."""
    return sorted({im.identity for im in images if im.identity > 0})


def train_transform(size: tuple[int, int], flip: bool = True):
    """Training transform: resize to (H, W) (bilinear, antialiased), random horizontal flip, ImageNet
    normalisation -> float (3, H, W)."""
    from torchvision import transforms

    steps = [transforms.Resize(tuple(size), antialias=True)]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return transforms.Compose(steps)


def eval_transform(size: tuple[int, int]):
    """Evaluation transform: resize to (H, W) and ImageNet normalisation -> float (3, H, W)."""
    return train_transform(size, flip=False)


class ReIDImageDataset(torch.utils.data.Dataset):
    """``images`` as a torch Dataset: item i is a dict with ``image`` (3, H, W) float, ``label`` (the class
    index of its identity in ``identities``, -1 when it has none), ``identity``, ``camera`` and ``index``.

    cache: keep every decoded RGB image in memory after its first read (decoding is most of the data time
    of a small network on a CPU; a 128x64 image takes 24 KiB). The transform still runs on every access.
    """

    def __init__(
        self,
        images: Sequence[ReIDImage],
        transform,
        identities: Sequence[int] | None = None,
        cache: bool = False,
    ):
        self.images = list(images)
        self.transform = transform
        self.identities = list(identities) if identities is not None else identity_labels(self.images)
        self._label = {identity: i for i, identity in enumerate(self.identities)}
        self._cache: dict[int, Image.Image] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.images)

    def label(self, i: int) -> int:
        return self._label.get(self.images[i].identity, -1)

    def __getitem__(self, i: int) -> dict:
        item = self.images[i]
        image = self._cache.get(i) if self._cache is not None else None
        if image is None:
            image = Image.fromarray(read_image(item.path))  # every image mode read right, or one line
            if self._cache is not None:
                self._cache[i] = image
        return {
            "image": self.transform(image),
            "label": self.label(i),
            "identity": item.identity,
            "camera": item.camera,
            "index": i,
        }

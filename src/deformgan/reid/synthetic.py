"""A multi-camera Re-ID set of synthetic people where pose augmentation can matter, and its oracle renderer.

The Deformable GANs supplementary material (§4) augments the Market-1501 training set with generated
people; real Market cannot be downloaded here, so :func:`write_reid_experiment` renders a Re-ID set with
:mod:`deformgan.synth`'s people (per-identity body and clothes, six cameras with their own scene and
light) built so that new poses of the training people are informative:

- **pose-starved training split**: every training identity is seen by ``train_cameras`` cameras in
  ``train_poses_per_camera`` poses each (default 2 x 2 = 4 images), each image in its own pose;
- **validation and test splits** of identities disjoint from the training ones and from each other
  (validation is for tuning, never the test): each identity is seen by ``eval_cameras`` cameras with
  ``eval_images_per_camera`` images each; the first image of every (identity, camera) is a **query**,
  the others go to the **gallery**, with ``distractors`` further people (identity ``0000``, one image
  each) that are never queried;
- the **generator's dataset** (``ROOT/generator``, deformgan's layout, prefix ``synth``): the training
  images only, their keypoints and all same-identity pairs, so a pose generator trained on it has seen no
  validation or test identity.

Every image is a pure function of ``(seed, identity, pose, camera)`` (:meth:`SyntheticReID.render`):
identity ``i`` has body and clothes from ``numpy.random.default_rng([seed, 0x1D, i])``, pose ``p`` its
joint angles and framing draws from ``default_rng([seed, 0x9053, p])`` (the framing is scaled by the
identity's height), and the shifted background window, light jitter and detector misses come from
``default_rng([seed, 0x1111, i, p, c])``. Poses are numbered globally (each image has its own), and the
file name's frame field is the pose number: ``0007_c3s1_000123_01.png`` is identity 7 in pose 123 seen by
camera 3.

The **oracle** (:class:`OracleRenderer`) draws the source identity, in the pose of the target image, in
the source image's camera: what a perfect pose generator would produce (the generator keeps the source's
background and light, so the camera is the source's), the ceiling of generated augmentation.

Layout written (Market-1501 folders for the Re-ID side, :mod:`deformgan.reid.data`)::

    ROOT/bounding_box_train/   ROOT/query/   ROOT/bounding_box_test/      (training; test queries, gallery)
    ROOT/reid-annotation-train.csv                                          (keypoints of the training images)
    ROOT/val/query/   ROOT/val/bounding_box_test/                           (validation split)
    ROOT/generator/synth-dataset/train/   synth-annotation-train.csv   synth-pairs-train.csv
    ROOT/experiment.json                                                    (spec, every image's labels)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from deformgan.atomic import atomic_write_bytes, atomic_write_text
from deformgan.errors import InputError
from deformgan.keypoints import write_annotations, write_pairs
from deformgan.reid.data import MARKET_FOLDERS, ReIDImage, list_market_folder

EXPERIMENT_FILE = "experiment.json"
EXPERIMENT_FORMAT = "deformgan.reid.synthetic"
EXPERIMENT_VERSION = 1
ANNOTATION_FILE = "reid-annotation-train.csv"
GENERATOR_DIR, GENERATOR_PREFIX = "generator", "synth"
VAL_DIR = "val"
NUM_CAMERAS = 6
_IDENTITY_STREAM, _POSE_STREAM, _IMAGE_STREAM = 0x1D, 0x9053, 0x1111


@dataclass(frozen=True)
class ReIDExperimentSpec:
    """How many people, cameras and images each split has (module docstring), and the image size (H, W).

    Identities are numbered train (1..), then validation, then test, then distractors (written as
    ``0000``). ``distractors`` is per evaluation split.
    """

    train_identities: int = 100
    train_cameras: int = 2
    train_poses_per_camera: int = 2
    val_identities: int = 50
    test_identities: int = 50
    eval_cameras: int = 3
    eval_images_per_camera: int = 2
    distractors: int = 100
    size: tuple[int, int] = (128, 64)
    seed: int = 0

    def __post_init__(self) -> None:
        minimum = {"train_identities": 2, "distractors": 0, "seed": 0}
        for f in fields(self):
            if f.name == "size":
                continue
            value = getattr(self, f.name)
            low = minimum.get(f.name, 1)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise InputError(f"{f.name}: expected an integer >= {low}, got {value!r}")
        if self.train_cameras > NUM_CAMERAS or self.eval_cameras > NUM_CAMERAS:
            raise InputError(f"train_cameras / eval_cameras: at most {NUM_CAMERAS} cameras exist")
        if self.eval_cameras < 2:
            raise InputError("eval_cameras: expected >= 2 (a query needs a match seen by another camera)")
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) < 16:
            raise InputError(f"size: expected (H, W) of at least 16 pixels, got {self.size!r}")
        object.__setattr__(self, "size", size)

    @property
    def first_val(self) -> int:
        return self.train_identities + 1

    @property
    def first_test(self) -> int:
        return self.first_val + self.val_identities

    @property
    def first_distractor(self) -> int:
        return self.first_test + self.test_identities

    def to_dict(self) -> dict:
        values = asdict(self)
        values["size"] = list(self.size)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> ReIDExperimentSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"experiment spec: unknown keys {', '.join(unknown)}")
        values = dict(values)
        if "size" in values:
            values["size"] = tuple(values["size"])
        return cls(**values)


@dataclass(frozen=True)
class RenderedImage:
    """One rendered image: pixels uint8 (H, W, 3), detector keypoints (18, 2) int64 (x, y), -1 missing."""

    image: np.ndarray
    keypoints: np.ndarray


class SyntheticReID:
    """The renderer of one experiment seed: ``render(identity, pose, camera, size)`` (module docstring)."""

    def __init__(self, seed: int):
        from deformgan.synth.render import make_cameras

        self.seed = int(seed)
        self.cameras = make_cameras(self.seed, NUM_CAMERAS)
        self._people: dict[int, tuple] = {}

    def person(self, identity: int) -> tuple:
        """(body, appearance) of ``identity`` (as :mod:`deformgan.synth` samples them)."""
        from deformgan.synth.pose import sample_body
        from deformgan.synth.render import sample_appearance

        if identity not in self._people:
            rng = np.random.default_rng([self.seed, _IDENTITY_STREAM, identity])
            self._people[identity] = (sample_body(rng), sample_appearance(rng))
        return self._people[identity]

    def render(self, identity: int, pose: int, camera: int, size: tuple[int, int]) -> RenderedImage:
        """Identity ``identity`` in pose number ``pose`` seen by camera ``camera`` (1-based)."""
        from deformgan.synth import render_person
        from deformgan.synth.pose import sample_framing, sample_pose

        if not 1 <= camera <= NUM_CAMERAS:
            raise InputError(f"camera: expected 1..{NUM_CAMERAS}, got {camera}")
        body, appearance = self.person(int(identity))
        pose_rng = np.random.default_rng([self.seed, _POSE_STREAM, int(pose)])
        angles = sample_pose(pose_rng)
        framing = sample_framing(pose_rng, body, size)
        rng = np.random.default_rng([self.seed, _IMAGE_STREAM, int(identity), int(pose), int(camera)])
        person = render_person(
            size,
            body=body,
            appearance=appearance,
            pose=angles,
            framing=framing,
            camera=self.cameras[camera - 1],
            rng=rng,
        )
        return RenderedImage(image=person.image, keypoints=person.keypoints)


def image_name(label: int, camera: int, pose: int) -> str:
    """Market-style name: ``PPPP_cCs1_FFFFFF_01.png`` with the pose number as the frame."""
    if not 0 <= pose < 1_000_000:
        raise InputError(f"pose: expected a number below 1,000,000 (the frame field), got {pose}")
    return f"{label:04d}_c{camera}s1_{pose:06d}_01.png"


def _encode_png(image: np.ndarray) -> bytes:
    from deformgan.synth.dataset import encode_png

    return encode_png(image)


def write_reid_experiment(
    out: str | os.PathLike, spec: ReIDExperimentSpec | None = None, progress: bool = True
) -> Path:
    """Render the Re-ID experiment of ``spec`` into ``out`` (module docstring for the layout); returns out.

    Refuses (InputError) a folder that already holds an experiment made with another spec; the same spec
    is written again byte for byte (files are atomic).
    """
    spec = spec or ReIDExperimentSpec()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    meta_path = out / EXPERIMENT_FILE
    if meta_path.is_file():
        previous = json.loads(meta_path.read_text()).get("spec")
        if previous != spec.to_dict():
            raise InputError(
                f"{out}: holds an experiment with another spec ({previous}); choose another folder"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out}: output folder is not empty and holds no {EXPERIMENT_FILE}")
    renderer = SyntheticReID(spec.seed)
    folders = {
        "train": out / MARKET_FOLDERS["train"],
        "test/query": out / MARKET_FOLDERS["query"],
        "test/gallery": out / MARKET_FOLDERS["gallery"],
        "val/query": out / VAL_DIR / MARKET_FOLDERS["query"],
        "val/gallery": out / VAL_DIR / MARKET_FOLDERS["gallery"],
        "generator": out / GENERATOR_DIR / f"{GENERATOR_PREFIX}-dataset" / "train",
    }
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[str, int, int, int, int]] = []  # (folder key, identity, label, camera, pose)
    pose = 0
    split_rng = np.random.default_rng([spec.seed, 0xCA3])
    for identity in range(1, spec.train_identities + 1):
        cameras = np.sort(split_rng.choice(NUM_CAMERAS, spec.train_cameras, replace=False)) + 1
        for camera in cameras:
            for _ in range(spec.train_poses_per_camera):
                pose += 1
                plan.append(("train", identity, identity, int(camera), pose))
    for split, first, count in (
        ("val", spec.first_val, spec.val_identities),
        ("test", spec.first_test, spec.test_identities),
    ):
        for identity in range(first, first + count):
            cameras = np.sort(split_rng.choice(NUM_CAMERAS, spec.eval_cameras, replace=False)) + 1
            for camera in cameras:
                for k in range(spec.eval_images_per_camera):
                    pose += 1
                    role = "query" if k == 0 else "gallery"
                    plan.append((f"{split}/{role}", identity, identity, int(camera), pose))
    distractor = spec.first_distractor
    for split in ("val", "test"):
        for _ in range(spec.distractors):
            pose += 1
            camera = int(split_rng.integers(NUM_CAMERAS)) + 1
            plan.append((f"{split}/gallery", distractor, 0, camera, pose))
            distractor += 1

    from tqdm.auto import tqdm

    annotations: dict[str, np.ndarray] = {}
    images: dict[str, dict] = {}
    for key, identity, label, camera, pose in tqdm(plan, desc="reid synth", unit="img", disable=not progress):
        rendered = renderer.render(identity, pose, camera, spec.size)
        name = image_name(label, camera, pose)
        data = _encode_png(rendered.image)
        atomic_write_bytes(folders[key] / name, data)
        if key == "train":
            atomic_write_bytes(folders["generator"] / name, data)
            annotations[name] = rendered.keypoints
        images[f"{key}/{name}"] = {"identity": identity, "label": label, "camera": camera, "pose": pose}

    write_annotations(out / ANNOTATION_FILE, annotations)
    gen_root = out / GENERATOR_DIR
    write_annotations(gen_root / f"{GENERATOR_PREFIX}-annotation-train.csv", annotations)
    from deformgan.data import make_pairs

    write_pairs(gen_root / f"{GENERATOR_PREFIX}-pairs-train.csv", make_pairs(annotations))
    metadata = {
        "format": EXPERIMENT_FORMAT,
        "version": EXPERIMENT_VERSION,
        "spec": spec.to_dict(),
        "identities": {
            "train": [1, spec.train_identities],
            "val": [spec.first_val, spec.first_test - 1],
            "test": [spec.first_test, spec.first_distractor - 1],
            "distractors": [spec.first_distractor, distractor - 1],
        },
        "images": images,
    }
    atomic_write_text(meta_path, json.dumps(metadata, indent=1) + "\n")
    return out


@dataclass(frozen=True)
class ReIDExperiment:
    """A written experiment: its root, spec and per-image records (``split/role/name`` -> identity, label,
    camera, pose)."""

    root: Path
    spec: ReIDExperimentSpec
    images: dict[str, dict]

    @property
    def generator_data(self) -> Path:
        """The pose generator's dataset root (training identities only)."""
        return self.root / GENERATOR_DIR

    @property
    def annotations(self) -> Path:
        """Keypoints of the Re-ID training images."""
        return self.root / ANNOTATION_FILE

    def train_pose(self, name: str) -> int:
        """Pose number of training image ``name``."""
        record = self.images.get(f"train/{name}")
        if record is None:
            raise InputError(f"{name}: not a training image of the experiment in {self.root}")
        return int(record["pose"])

    def eval_split(self, split: str) -> tuple[list[ReIDImage], list[ReIDImage]]:
        """(queries, gallery) of ``split`` ("val" or "test")."""
        if split == "test":
            base = self.root
        elif split == "val":
            base = self.root / VAL_DIR
        else:
            raise InputError(f"split: expected 'val' or 'test', got {split!r}")
        return (
            list_market_folder(base / MARKET_FOLDERS["query"]),
            list_market_folder(base / MARKET_FOLDERS["gallery"]),
        )


def load_reid_experiment(root: str | os.PathLike) -> ReIDExperiment:
    """Read ``root/experiment.json`` written by :func:`write_reid_experiment`."""
    root = Path(root)
    path = root / EXPERIMENT_FILE
    if not path.is_file():
        raise InputError(f"{root}: not a synthetic Re-ID experiment (missing {EXPERIMENT_FILE})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if meta.get("format") != EXPERIMENT_FORMAT:
        raise InputError(f"{path}: not a synthetic Re-ID experiment (format {meta.get('format')!r})")
    return ReIDExperiment(root=root, spec=ReIDExperimentSpec.from_dict(meta["spec"]), images=meta["images"])


class OracleRenderer:
    """The perfect generator of an experiment: source identity, target image's pose, source camera.

    Called with a list of :class:`deformgan.reid.augment.AugmentItem` -> uint8 (B, H, W, 3).
    """

    def __init__(self, experiment: ReIDExperiment):
        self.experiment = experiment
        self.renderer = SyntheticReID(experiment.spec.seed)
        self.size = experiment.spec.size

    def describe(self) -> dict:
        return {"renderer": "oracle", "experiment": str(self.experiment.root.resolve())}

    def __call__(self, items: Sequence) -> np.ndarray:
        images = []
        for item in items:
            pose = self.experiment.train_pose(item.target)
            images.append(self.renderer.render(item.identity, pose, item.camera, self.size).image)
        return np.stack(images)


__all__ = [
    "OracleRenderer",
    "ReIDExperiment",
    "ReIDExperimentSpec",
    "SyntheticReID",
    "image_name",
    "load_reid_experiment",
    "write_reid_experiment",
]

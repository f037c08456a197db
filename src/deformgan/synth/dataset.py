"""Write a synthetic-people dataset in the Market-1501 layout, and preview grids.

Layout (the field's, :mod:`deformgan.data.layout`): ``OUT/<prefix>-dataset/{train,test}/*.png``,
``OUT/<prefix>-annotation-{train,test}.csv``, ``OUT/<prefix>-pairs-{train,test}.csv``, plus
``OUT/synth.json`` (seed, size, counts, version, per-image identity / camera / view). Image names follow
Market: ``0001_c2s1_000123_01.png`` (identity, camera, sequence, frame, box); the identity is the name
up to the first ``_``. Identities are split disjointly between train and test; both pairs files hold all
ordered same-identity pairs, so for a pair (a, b) image b is the exact ground truth for a's person in
b's pose.

Everything is a pure function of the seed: each identity and each image has its own random stream
(``numpy.random.default_rng([seed, identity, ...])``), so the same seed writes byte-identical files.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deformgan.atomic import atomic_write_bytes
from deformgan.data import DatasetLayout, make_pairs
from deformgan.errors import InputError
from deformgan.keypoints import NUM_JOINTS, draw_skeleton, write_annotations, write_pairs
from deformgan.synth.pose import (
    KEYPOINT_NOISE,
    MARKET_MISSING_RATES,
    Body,
    Framing,
    Pose,
    detected_keypoints,
    drop_probabilities,
    project,
    sample_body,
    sample_framing,
    sample_pose,
    skeleton_3d,
)
from deformgan.synth.render import (
    Appearance,
    Camera,
    apply_light,
    camera_background,
    draw_person,
    make_cameras,
    sample_appearance,
)

#: Version of the generator's output; bump whenever the same seed would give different files.
SYNTH_VERSION = 1
NUM_CAMERAS = 6
_IDENTITY_STREAM, _IMAGE_STREAM = 0, 1


MAX_SIDE = 2048


def parse_size(size: str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``"128x64"`` or ``(128, 64)`` -> (H, W); raises InputError unless both are integers in [16, 2048]
    (the field works at 128x64 to 256x256; 2048 keeps one image's buffers under a few hundred MB)."""
    if isinstance(size, str):
        match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", size)
        if match is None:
            raise InputError(f"size: expected HxW with positive integers (e.g. 128x64), got {size!r}")
        height, width = int(match[1]), int(match[2])
    else:
        try:
            height, width = (int(v) for v in size)
        except (TypeError, ValueError):
            raise InputError(f"size: expected (H, W) or 'HxW' with positive integers, got {size!r}") from None
        if (height, width) != tuple(size):
            raise InputError(f"size: expected integer (H, W), got {size!r}")
    if height < 16 or width < 16:
        raise InputError(f"size: expected H and W of at least 16 pixels, got {height}x{width}")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise InputError(f"size: expected H and W of at most {MAX_SIDE} pixels, got {height}x{width}")
    return height, width


@dataclass(frozen=True)
class RenderedPerson:
    """One rendered image: uint8 (H, W, 3), detector keypoints (18, 2) int64 (x, y) -1 missing, and the
    exact projected joint positions (18, 2) float (x, y) before detector misses, noise and rounding."""

    image: np.ndarray
    keypoints: np.ndarray
    joints: np.ndarray
    view: str
    camera: int


def render_person(
    size: tuple[int, int],
    *,
    body: Body,
    appearance: Appearance,
    pose: Pose,
    framing: Framing,
    camera: Camera,
    rng: np.random.Generator,
    drop: np.ndarray | None = None,
) -> RenderedPerson:
    """Render one person in one pose seen by one camera (see :mod:`deformgan.synth.render`).

    drop: per-joint extra miss probabilities (:func:`deformgan.synth.pose.drop_probabilities`);
    default: the Market rates.
    """
    height, width = size
    scene = camera_background(camera, size)
    shift = int(rng.integers(scene.shape[1] - width + 1))
    canvas = scene[:, shift : shift + width].copy()
    points_3d = skeleton_3d(body, pose)
    draw_person(canvas, points_3d, framing, body, pose, appearance)
    image = apply_light(canvas, camera, rng)
    joints = project(points_3d, framing)[:NUM_JOINTS]
    drop = drop_probabilities() if drop is None else drop
    keypoints = detected_keypoints(joints, pose.view, size, rng, drop, KEYPOINT_NOISE * framing.scale)
    return RenderedPerson(
        image=image, keypoints=keypoints, joints=joints, view=pose.view, camera=camera.index
    )


def render_sample(
    seed: int,
    identity: int,
    index: int,
    size: tuple[int, int] = (128, 64),
    cameras: list[Camera] | None = None,
    drop: np.ndarray | None = None,
) -> RenderedPerson:
    """Image ``index`` of identity ``identity`` for ``seed`` (deterministic, independent of other images)."""
    cameras = make_cameras(seed, NUM_CAMERAS) if cameras is None else cameras
    id_rng = np.random.default_rng([seed, identity, _IDENTITY_STREAM])
    body = sample_body(id_rng)
    appearance = sample_appearance(id_rng)
    rng = np.random.default_rng([seed, identity, _IMAGE_STREAM, index])
    camera = cameras[int(rng.integers(len(cameras)))]
    pose = sample_pose(rng)
    framing = sample_framing(rng, body, size)
    return render_person(
        size, body=body, appearance=appearance, pose=pose, framing=framing, camera=camera, rng=rng, drop=drop
    )


@dataclass(frozen=True)
class SyntheticDataset:
    """What :func:`write_synthetic_dataset` wrote: the layout (as :func:`deformgan.data.find_layout`
    returns it), images and pairs per split, and the metadata file."""

    layout: DatasetLayout
    num_images: dict[str, int]
    num_pairs: dict[str, int]
    metadata_file: Path


def encode_png(image: np.ndarray) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (zlib level 1: 3x faster than the default, files ~10 % larger)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _check_count(name: str, value: int, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= maximum:
        raise InputError(f"{name}: expected an integer in [{minimum}, {maximum}], got {value!r}")
    return int(value)


def _prepare_output(out: Path, prefix: str, overwrite: bool) -> DatasetLayout:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"{out}: cannot create the output folder ({error.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"{out}: output folder is not writable")
    layout = DatasetLayout.for_prefix(out, prefix)
    for folder in layout.image_dirs.values():
        existing = sorted(folder.glob("*.png")) if folder.is_dir() else []
        if existing and not overwrite:
            raise InputError(
                f"{folder}: already holds {len(existing)} images; choose an empty --out or overwrite"
            )
        for path in existing:  # only our own image type in our own folder, never anything else
            path.unlink()
        folder.mkdir(parents=True, exist_ok=True)
    return layout


def write_synthetic_dataset(
    out: str | os.PathLike,
    identities: int = 40,
    poses_per_identity: int = 8,
    size: str | tuple[int, int] = (128, 64),
    seed: int = 0,
    test_fraction: float = 0.25,
    prefix: str = "synth",
    progress: bool = True,
    missing_rates: Mapping[str, float] | None = None,
    overwrite: bool = False,
    cameras_per_identity: int = NUM_CAMERAS,
) -> SyntheticDataset:
    """Render and write a synthetic-people dataset in the Market layout (module docstring).

    identities >= 2 people, each in ``poses_per_identity`` >= 2 images; ``round(identities *
    test_fraction)`` (at least 1, at most identities - 1) identities go to the test split. size: (H, W)
    or "HxW" (128x64 Market-like, 256x256 DeepFashion-like with a larger person). missing_rates: target
    per-joint detector-miss rates (default :data:`~deformgan.synth.pose.MARKET_MISSING_RATES`).
    cameras_per_identity: how many of the six cameras see each person (chosen per identity); 6 (default)
    = any camera, 1 = every image of a person comes from one camera, so every pair shares scene and light.
    Raises InputError for bad arguments or an unwritable / non-empty output folder.
    """
    identities = _check_count("identities", identities, 2, 9999)
    poses_per_identity = _check_count("poses_per_identity", poses_per_identity, 2, 999_999)
    seed = _check_count("seed", seed, 0, 2**63 - 1)
    cameras_per_identity = _check_count("cameras_per_identity", cameras_per_identity, 1, NUM_CAMERAS)
    height, width = parse_size(size)
    if not isinstance(test_fraction, (int, float)) or not 0.0 < test_fraction < 1.0:
        raise InputError(f"test_fraction: expected a number strictly between 0 and 1, got {test_fraction!r}")
    if not re.fullmatch(r"[A-Za-z0-9]+", prefix):
        raise InputError(f"prefix: expected letters and digits only (it names files), got {prefix!r}")
    drop = drop_probabilities(missing_rates)
    layout = _prepare_output(Path(out), prefix, overwrite)

    split_rng = np.random.default_rng([seed, 0x5EED])
    num_test = min(max(1, round(identities * test_fraction)), identities - 1)
    order = split_rng.permutation(np.arange(1, identities + 1))
    test_ids = {int(i) for i in order[:num_test]}
    cameras = make_cameras(seed, NUM_CAMERAS)

    from tqdm.auto import tqdm

    annotations: dict[str, dict[str, np.ndarray]] = {"train": {}, "test": {}}
    images_meta: dict[str, dict] = {}
    with tqdm(total=identities * poses_per_identity, desc="synth", unit="img", disable=not progress) as bar:
        for identity in range(1, identities + 1):
            split = "test" if identity in test_ids else "train"
            seen_by = cameras
            if cameras_per_identity < NUM_CAMERAS:  # this person's cameras, repeated to the full list
                chosen = np.random.default_rng([seed, identity, 3]).choice(
                    NUM_CAMERAS, cameras_per_identity, replace=False
                )
                seen_by = [cameras[int(chosen[i % cameras_per_identity])] for i in range(NUM_CAMERAS)]
            name_rng = np.random.default_rng([seed, identity, 2])
            frames = np.sort(name_rng.choice(1_000_000, size=poses_per_identity, replace=False))
            for index in range(poses_per_identity):
                person = render_sample(seed, identity, index, (height, width), seen_by, drop)
                sequence, box = int(name_rng.integers(1, 7)), int(name_rng.integers(1, 9))
                name = f"{identity:04d}_c{person.camera}s{sequence}_{int(frames[index]):06d}_{box:02d}.png"
                atomic_write_bytes(layout.image_dirs[split] / name, encode_png(person.image))
                annotations[split][name] = person.keypoints
                images_meta[name] = {
                    "identity": identity,
                    "split": split,
                    "camera": person.camera,
                    "view": person.view,
                }
                bar.update(1)

    num_pairs = {}
    for split in ("train", "test"):
        write_annotations(layout.annotation_files[split], annotations[split])
        pairs = make_pairs(annotations[split])
        write_pairs(layout.pairs_files[split], pairs)
        num_pairs[split] = len(pairs)
    num_images = {split: len(annotations[split]) for split in ("train", "test")}
    metadata = {
        "generator": "deformgan.synth",
        "version": SYNTH_VERSION,
        "seed": seed,
        "size": [height, width],
        "prefix": prefix,
        "identities": identities,
        "poses_per_identity": poses_per_identity,
        "test_fraction": test_fraction,
        "counts": {"images": num_images, "pairs": num_pairs},
        "train_identities": sorted(set(range(1, identities + 1)) - test_ids),
        "test_identities": sorted(test_ids),
        "cameras": NUM_CAMERAS,
        "cameras_per_identity": cameras_per_identity,
        "missing_rates": dict(MARKET_MISSING_RATES if missing_rates is None else missing_rates),
        "images": images_meta,
    }
    metadata_file = Path(out) / "synth.json"
    atomic_write_bytes(metadata_file, (json.dumps(metadata, indent=1) + "\n").encode())
    return SyntheticDataset(
        layout=layout, num_images=num_images, num_pairs=num_pairs, metadata_file=metadata_file
    )


def overlay_skeleton(image: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) image with the (18, 2) keypoints' skeleton drawn over it (where the drawing is lit)."""
    drawing = draw_skeleton(keypoints, image.shape[:2])
    lit = drawing.max(axis=-1, keepdims=True) > 0
    return np.where(lit, drawing, image)


def preview_grid(
    out_png: str | os.PathLike,
    count: int = 16,
    columns: int = 8,
    size: str | tuple[int, int] = (128, 64),
    seed: int = 0,
    skeleton: bool = True,
    zoom: int = 2,
) -> Path:
    """Write a PNG grid of ``count`` synthetic people (one per identity); with ``skeleton`` each person
    is shown twice, plain and with the detector keypoints overlaid. Returns the path."""
    count = _check_count("count", count, 1, 1024)
    columns = _check_count("columns", columns, 1, 1024)
    zoom = _check_count("zoom", zoom, 1, 16)
    height, width = parse_size(size)
    cameras = make_cameras(seed, NUM_CAMERAS)
    tiles = []
    for identity in range(1, count + 1):
        person = render_sample(seed, identity, 0, (height, width), cameras)
        tile = person.image
        if skeleton:
            tile = np.concatenate([tile, overlay_skeleton(person.image, person.keypoints)], axis=1)
        tiles.append(tile)
    rows = -(-count // columns)
    tile_h, tile_w = tiles[0].shape[:2]
    gap = 2
    grid = np.full((rows * (tile_h + gap), min(count, columns) * (tile_w + gap), 3), 255, dtype=np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        grid[
            r * (tile_h + gap) : r * (tile_h + gap) + tile_h, c * (tile_w + gap) : c * (tile_w + gap) + tile_w
        ] = tile
    grid = grid.repeat(zoom, axis=0).repeat(zoom, axis=1)
    path = Path(out_png)
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    atomic_write_bytes(path, encode_png(grid))
    return path

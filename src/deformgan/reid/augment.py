"""Augment a Re-ID training set with generated people: every training person in K new poses.

The Deformable GANs supplementary material (§4) trains Re-ID networks on A = T + generated images: each
training image of Market-1501 is the conditioning image of generated people in target poses taken from
other training images, and each generated image is labelled with the identity of its conditioning image.
:func:`augment` does that with a trained deformgan checkpoint:

- the **sources** are the training images (identity > 0) with a complete torso
  (:func:`deformgan.parts.has_complete_torso`; the generator was trained on such pairs only); the others
  are skipped and counted in ``augment.json``;
- the **target poses** of a source are ``per_image`` distinct torso-complete training images other than
  the source itself, of any identity, drawn with ``numpy.random.default_rng([seed, crc32(source name)])``
  (so the draws of one image do not depend on the others);
- a generated image is named ``<source stem>_<target stem>.png`` (it starts with the source's Market
  name, so its labels can also be read from the name), labelled with the **source identity and camera**,
  and listed in ``manifest.csv`` (:func:`deformgan.reid.data.write_manifest`: name, identity, camera,
  source, target, k), which :func:`deformgan.reid.data.read_extra_folder` and
  ``train_reid(extra=[out])`` read.

Keypoints come from an annotation CSV of the training images (``name:keypoints_y:keypoints_x``, the
field's format; for Market-1501 the authors' ``market-annotation-train.csv``), (x, y) pixels of the
image files, which must have the generator's size (128x64 for Market).

**Resuming.** ``out/augment.json`` records the settings first (and the rendering time so far);
every image is written atomically and images already present are skipped, so an interrupted run started
again with the same settings continues where it stopped. The manifest is written last, so a folder with
a manifest is complete; a complete folder is left as it is. Starting again with other settings is
refused.

:func:`augment_with` runs the same plan with any renderer (e.g. the synthetic oracle,
:class:`deformgan.reid.synthetic.OracleRenderer`); :func:`shuffle_labels` makes the negative control
(the same images, identities permuted) and :func:`first_targets` the same augmentation with a smaller K.
"""

from __future__ import annotations

import csv
import json
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from deformgan.atomic import atomic_write_bytes, atomic_write_text
from deformgan.errors import InputError
from deformgan.keypoints import read_annotations
from deformgan.reid.data import MANIFEST, ReIDImage, load_reid_dataset, read_extra_folder, write_manifest

SETTINGS_FILE = "augment.json"
SETTINGS_FORMAT = "deformgan.reid.augment"
SETTINGS_VERSION = 1


@dataclass(frozen=True)
class AugmentItem:
    """One image to generate: ``source`` (training image) drawn in the pose of training image ``target``.

    source_kp, target_kp: (18, 2) (x, y) pixels, -1 = missing. identity, camera: the labels (the
    source's). k: index of this target among the source's draws. name: output file name.
    """

    name: str
    source: ReIDImage
    target: str
    source_kp: np.ndarray
    target_kp: np.ndarray
    k: int

    @property
    def identity(self) -> int:
        return self.source.identity

    @property
    def camera(self) -> int:
        return self.source.camera

    def manifest_row(self) -> dict:
        return {
            "name": self.name,
            "identity": self.identity,
            "camera": self.camera,
            "source": self.source.path.name,
            "target": self.target,
            "k": self.k,
        }


#: A renderer: items -> uint8 (B, H, W, 3) images, in item order.
Renderer = Callable[[Sequence[AugmentItem]], np.ndarray]


def find_annotations(data: str | os.PathLike) -> Path:
    """The only ``*-annotation-train.csv`` directly in ``data`` (InputError when none or several)."""
    found = sorted(Path(data).glob("*-annotation-train.csv"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise InputError(
            f"{data}: expected one <prefix>-annotation-train.csv with the training images' keypoints "
            f"(found {listed}); pass annotations="
        )
    return found[0]


def plan_augmentation(
    images: Sequence[ReIDImage], keypoints: dict[str, np.ndarray], per_image: int = 10, seed: int = 0
) -> tuple[list[AugmentItem], dict]:
    """The images to generate for ``images`` (module docstring for the rule) -> (items, counts).

    keypoints: {file name: (18, 2) (x, y)} for every image. Raises InputError when an image has no
    keypoints or fewer than ``per_image`` other torso-complete poses exist.
    """
    from deformgan.parts import has_complete_torso

    if isinstance(per_image, bool) or not isinstance(per_image, int) or per_image < 1:
        raise InputError(f"per_image: expected a positive integer, got {per_image!r}")
    names = [im.path.name for im in images]
    if len(set(names)) != len(names):
        raise InputError("training images: two images share a file name; names must be unique")
    missing = [n for n in names if n not in keypoints]
    if missing:
        raise InputError(f"keypoints: {len(missing)} training image(s) have none, e.g. {missing[0]!r}")
    kp = np.stack([np.asarray(keypoints[n], dtype=np.float32) for n in names]) if names else None
    torso = has_complete_torso(kp) if kp is not None else np.zeros(0, dtype=bool)
    pool = np.flatnonzero(torso)
    if len(pool) - 1 < per_image:
        raise InputError(
            f"per_image: {per_image} target poses per image need at least {per_image + 1} torso-complete "
            f"training poses, found {len(pool)}"
        )
    items: list[AugmentItem] = []
    for i in np.flatnonzero(torso):
        source = images[i]
        rng = np.random.default_rng([seed, zlib.crc32(source.path.name.encode())])
        candidates = pool[pool != i]
        for k, j in enumerate(rng.choice(candidates, per_image, replace=False)):
            target = names[j]
            items.append(
                AugmentItem(
                    name=f"{source.path.stem}_{Path(target).stem}.png",
                    source=source,
                    target=target,
                    source_kp=kp[i],
                    target_kp=kp[j],
                    k=k,
                )
            )
    counts = {
        "training_images": len(images),
        "sources": int(torso.sum()),
        "skipped_sources_without_torso": int((~torso).sum()),
        "pose_pool": len(pool),
        "generated": len(items),
    }
    return items, counts


def _check_settings(out: Path, settings: dict) -> None:
    path = out / SETTINGS_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise InputError(f"{path}: not valid JSON; remove the folder or choose another out") from None
        if previous.get("settings") != settings:
            raise InputError(
                f"{out}: holds an augmentation made with other settings ({path}); choose another out folder"
            )
    elif out.is_dir() and any(out.iterdir()):
        raise InputError(
            f"{out}: folder is not empty and holds no {SETTINGS_FILE}; choose an empty out folder"
        )


def augment_with(
    render: Renderer,
    items: Sequence[AugmentItem],
    out: str | os.PathLike,
    settings: dict,
    counts: dict | None = None,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "augment",
) -> Path:
    """Render ``items`` into ``out`` in batches (skipping files already there), then write the manifest.

    settings: JSON-able description of what makes this augmentation (checked when resuming, stored in
    ``augment.json`` with ``counts``). Returns ``out``.
    """
    from tqdm.auto import tqdm

    from deformgan.images import write_image

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size: expected a positive integer, got {batch_size!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output path exists and is not a folder")
    _check_settings(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    previous = json.loads((out / SETTINGS_FILE).read_text()) if (out / SETTINGS_FILE).is_file() else {}
    spent = float(previous.get("seconds", 0.0))  # rendering time of earlier, interrupted invocations
    record = {"format": SETTINGS_FORMAT, "version": SETTINGS_VERSION, "settings": settings, "counts": counts}
    if previous.get("complete") and (out / MANIFEST).is_file():
        if all((out / item.name).is_file() for item in items):
            return out  # done before: nothing to render, nothing to rewrite
    atomic_write_text(
        out / SETTINGS_FILE, json.dumps({**record, "complete": False, "seconds": spent}, indent=1) + "\n"
    )
    todo = [item for item in items if not (out / item.name).is_file()]
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="img", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        pixels = render(batch)
        if pixels.shape[0] != len(batch) or pixels.dtype != np.uint8 or pixels.ndim != 4:
            raise RuntimeError(f"renderer returned {pixels.dtype} {pixels.shape} for {len(batch)} items")
        for item, image in zip(batch, pixels, strict=True):
            write_image(image, out / item.name)
        bar.update(len(batch))
        seconds = spent + time.perf_counter() - began
        atomic_write_text(
            out / SETTINGS_FILE,
            json.dumps({**record, "complete": False, "seconds": seconds}, indent=1) + "\n",
        )
    bar.close()
    write_manifest(out, [item.manifest_row() for item in items])
    seconds = round(spent + time.perf_counter() - began, 1)
    atomic_write_text(
        out / SETTINGS_FILE, json.dumps({**record, "complete": True, "seconds": seconds}, indent=1) + "\n"
    )
    return out


class GeneratorRenderer:
    """A trained deformgan generator as a renderer: source image + source/target keypoints -> image."""

    def __init__(self, checkpoint: str | os.PathLike, device: str | torch.device = "auto"):
        from deformgan.generate import load_generator
        from deformgan.runtime import resolve_device

        self.device = resolve_device(device)
        self.generator, self.config = load_generator(checkpoint, self.device)
        self.size = tuple(int(v) for v in self.config.image_size)

    @torch.no_grad()
    def __call__(self, items: Sequence[AugmentItem]) -> np.ndarray:
        from deformgan.conditioning import conditioning_for
        from deformgan.images import from_uint8, read_image, to_uint8

        sources = np.stack([read_image(item.source.path, self.size) for item in items])
        source_kp = torch.as_tensor(np.stack([item.source_kp for item in items]), dtype=torch.float32)
        target_kp = torch.as_tensor(np.stack([item.target_kp for item in items]), dtype=torch.float32)
        cond = conditioning_for(self.config, source_kp.to(self.device), target_kp.to(self.device))
        return to_uint8(self.generator(from_uint8(sources).to(self.device), cond))


def training_images_and_keypoints(
    data: str | os.PathLike, annotations: str | os.PathLike | None = None
) -> tuple[list[ReIDImage], dict[str, np.ndarray], Path]:
    """The training images (identity > 0) of a Re-ID root and their keypoints -> (images, {name: kp},
    annotation file)."""
    splits = load_reid_dataset(data)
    images = [im for im in splits.train if im.identity > 0]
    if not images:
        raise InputError(f"{data}: no training images with a person identity")
    path = Path(annotations) if annotations is not None else find_annotations(data)
    if not path.is_file():
        raise InputError(f"{path}: annotation file not found")
    return images, read_annotations(path), path


def augment(
    checkpoint: str | os.PathLike,
    data: str | os.PathLike,
    out: str | os.PathLike,
    per_image: int = 10,
    seed: int = 0,
    annotations: str | os.PathLike | None = None,
    batch_size: int = 16,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Generate ``per_image`` new poses of every training image of ``data`` with a deformgan checkpoint.

    checkpoint: run folder or ``ckpt-*`` folder. data: Re-ID root (Market-1501 folders or a deformgan
    synthetic root). out: folder of the generated images + ``manifest.csv`` + ``augment.json`` (use it as
    ``train_reid(extra=[out])``). annotations: keypoints CSV of the training images (default: the only
    ``*-annotation-train.csv`` in ``data``). Resumable (module docstring). Returns ``out``.
    """
    images, keypoints, annotation_file = training_images_and_keypoints(data, annotations)
    items, counts = plan_augmentation(images, keypoints, per_image, seed)
    render = GeneratorRenderer(checkpoint, device)
    for item in items[:1]:  # a wrong-size image stops here, before anything is written
        from deformgan.images import read_image

        read_image(item.source.path, render.size)
    settings = {
        "renderer": "deformgan",
        "checkpoint": str(Path(checkpoint).resolve()),
        "data": str(Path(data).resolve()),
        "annotations": str(annotation_file.resolve()),
        "per_image": per_image,
        "seed": seed,
    }
    return augment_with(render, items, out, settings, counts, batch_size=batch_size, progress=progress)


def shuffle_labels(folder: str | os.PathLike, out: str | os.PathLike, seed: int = 0) -> Path:
    """Negative control: copy an extra folder's images into ``out`` with its identity column permuted.

    Each image keeps its camera; ``original_identity`` records the true label. The images are the same
    bytes, so anything A gains over this control comes from the identity information they carry.
    """
    folder, out = Path(folder), Path(out)
    images = read_extra_folder(folder)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise InputError(f"{out}: folder is not empty and holds no {MANIFEST}; choose an empty out folder")
    out.mkdir(parents=True, exist_ok=True)
    permuted = np.random.default_rng([seed, 0x5_4FF1E]).permutation([im.identity for im in images])
    with open(folder / MANIFEST, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row, image, identity in zip(rows, images, permuted, strict=True):
        atomic_write_bytes(out / image.path.name, image.path.read_bytes())
        row["original_identity"] = row["identity"]
        row["identity"] = int(identity)
    write_manifest(out, rows)
    return out


def first_targets(folder: str | os.PathLike, out: str | os.PathLike, count: int) -> Path:
    """Copy into ``out`` the images of an augmented folder whose draw index ``k`` is below ``count``
    (the first ``count`` target poses of every source image), with their manifest rows: an augmentation
    with K = ``count`` whose images are a subset of the folder's (the same pixels, fewer of them)."""
    folder, out = Path(folder), Path(out)
    read_extra_folder(folder)  # checks the folder and its manifest
    with open(folder / MANIFEST, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if "k" not in rows[0]:
        raise InputError(f"{folder / MANIFEST}: no k column (not written by deformgan.reid.augment)")
    keep = [row for row in rows if int(row["k"]) < count]
    if not keep:
        raise InputError(f"count: expected a positive number of target poses, got {count}")
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise InputError(f"{out}: folder is not empty and holds no {MANIFEST}; choose an empty out folder")
    out.mkdir(parents=True, exist_ok=True)
    for row in keep:
        atomic_write_bytes(out / row["name"], (folder / row["name"]).read_bytes())
    write_manifest(out, keep)
    return out


__all__ = [
    "AugmentItem",
    "first_targets",
    "GeneratorRenderer",
    "augment",
    "augment_with",
    "find_annotations",
    "plan_augmentation",
    "shuffle_labels",
    "training_images_and_keypoints",
]

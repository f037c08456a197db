"""Evaluate a folder of generated images, in any of the formats methods publish (:mod:`.formats`).

:func:`evaluate` (``deformgan evaluate``) reads the folder, finds the ground truth (a dataset folder:
target and source images, keypoints, training images for FID; and/or annotation CSVs; or the strips
themselves), and scores it in :func:`deformgan.evaluation.scores.score_images`'s schema
(``{metric: {"value", "reason", "n", ...}, "meta": {...}}``). The pairwise metrics (SSIM, mask-SSIM, L1,
LPIPS) are also kept per pair (:func:`score_method`), for the comparison pages and the failure ranking;
their means are exactly what :func:`score_images` reports.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deformgan.data import DatasetLayout, find_layout, get_preset, image_files
from deformgan.errors import InputError
from deformgan.evaluation import metrics as M
from deformgan.evaluation.formats import FORMATS, MethodImages, read_method
from deformgan.evaluation.scores import (
    DEEPFASHION_CROP,
    METRICS,
    modern_view,
    score_images,
    target_masks,
    write_results,
)
from deformgan.images import from_uint8, list_images, read_image
from deformgan.keypoints import read_annotations, read_pairs
from deformgan.pretrained import MissingWeightsError

#: Metrics that have one value per pair (kept per pair, averaged for the aggregate).
PAIRWISE: tuple[str, ...] = ("ssim", "mask_ssim", "l1", "lpips")
#: Direction of each pairwise metric: True when a higher value is better.
HIGHER_IS_BETTER: dict[str, bool] = {"ssim": True, "mask_ssim": True, "l1": False, "lpips": False}

NO_TARGET = "no target images (use strips, or pass the dataset folder)"
NO_KEYPOINTS = "no target keypoints (pass the dataset folder or annotation CSVs)"
UNNAMED = (
    "numbered strips carry no pair names, so the target's keypoints are unknown (mask-SSIM needs them; "
    "pass the pairs CSV to name the files)"
)


# ----------------------------------------------------------------------------------------------
# Ground truth


@dataclass
class GroundTruth:
    """Keypoints ({name: (18, 2) (x, y)} or None), the annotation files they came from, the dataset
    layout (or None)."""

    keypoints: dict[str, np.ndarray] | None
    annotation_files: list[Path]
    layout: DatasetLayout | None
    _files: dict[str, Path] | None = field(default=None, repr=False)

    def image_path(self, name: str) -> Path:
        """The dataset file of image ``name`` (train folder first, as the authors' loader looks)."""
        if self.layout is None:
            raise InputError(f"image {name}: no dataset folder given")
        if self._files is None:
            self._files = image_files(self.layout)
        if name not in self._files:
            folders = ", ".join(str(f) for f in self.layout.existing_image_dirs())
            raise InputError(f"image {name} not found in {folders}")
        return self._files[name]


def load_ground_truth(
    data: str | os.PathLike | None = None,
    annotations: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
) -> GroundTruth:
    """Keypoints from ``annotations`` (one CSV or several), else from every annotation CSV of ``data``."""
    layout = find_layout(data) if data is not None else None
    if isinstance(annotations, (str, os.PathLike)):
        annotations = [annotations]
    files = [Path(p) for p in annotations] if annotations else []
    if not files and layout is not None:
        files = layout.existing_annotation_files()
    keypoints: dict[str, np.ndarray] | None = None
    if files:
        keypoints = {}
        for path in files:
            keypoints.update(read_annotations(path))
    return GroundTruth(keypoints=keypoints, annotation_files=files, layout=layout)


def x_offset_for(frame: tuple[int, int], dataset: str | None = None) -> int:
    """Columns to subtract from annotation x so keypoints land in the image frame: the preset's offset
    (``deepfashion-176``: 40), else 40 for a 256x176 frame (PATN's crop of the 256x256 annotations)."""
    if dataset is not None:
        preset = get_preset(dataset)
        if tuple(preset.image_size) != tuple(frame):
            raise InputError(
                f"dataset {dataset!r}: images are {preset.image_size[0]}x{preset.image_size[1]}, "
                f"but the method's images are {frame[0]}x{frame[1]}"
            )
        return preset.x_offset
    return DEEPFASHION_CROP if tuple(frame) == (256, 176) else 0


def read_dataset_images(
    truth: GroundTruth, names: Sequence[str], frame: tuple[int, int], x_offset: int = 0
) -> np.ndarray:
    """The dataset images ``names`` as uint8 (N, H, W, 3), cut to columns [x_offset, x_offset + W)."""
    images = []
    for name in names:
        path = truth.image_path(name)
        image = read_image(path)[:, x_offset : x_offset + frame[1]]
        if image.shape[:2] != tuple(frame):
            raise InputError(
                f"{path}: expected {frame[0]}x{frame[1]} (after the x crop of {x_offset}), "
                f"got {image.shape[0]}x{image.shape[1]}"
            )
        images.append(image)
    return np.stack(images)


def train_image_chunks(
    truth: GroundTruth, frame: tuple[int, int], x_offset: int, batch: int = 200
) -> Callable[[], Iterable[np.ndarray]] | None:
    """A callable yielding the dataset's training images in uint8 chunks (FID's real set), or None."""
    if truth.layout is None or not truth.layout.image_dirs["train"].is_dir():
        return None
    files = list_images(truth.layout.image_dirs["train"])
    if not files:
        return None

    def chunks() -> Iterable[np.ndarray]:
        for start in range(0, len(files), batch):
            images = []
            for path in files[start : start + batch]:
                image = read_image(path)[:, x_offset : x_offset + frame[1]]
                if image.shape[:2] != tuple(frame):
                    raise InputError(f"{path}: expected a {frame[0]}x{frame[1]} image (after crop)")
                images.append(image)
            yield np.stack(images)

    return chunks


# ----------------------------------------------------------------------------------------------
# Scores


def _entry(value: float | None, reason: str | None, n: int) -> dict:
    return {"value": None if value is None else float(value), "reason": reason, "n": n}


def lpips_per_pair(
    generated: np.ndarray,
    target: np.ndarray,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 50,
) -> np.ndarray:
    """LPIPS of every pair -> float64 (N,), at the field's resolution (:func:`modern_view`: DeepFashion
    256x256 -> central 256x176), inputs mapped to [-1, 1] by :func:`deformgan.images.from_uint8`."""
    model = M.LPIPS(weights).to(device)
    gen, ref = modern_view(generated), modern_view(target)
    scores = []
    for start in range(0, len(gen), batch_size):
        a = from_uint8(gen[start : start + batch_size]).to(device)
        b = from_uint8(ref[start : start + batch_size]).to(device)
        scores.append(model(a, b).cpu())
    return torch.cat(scores).double().numpy()


def pair_scores(
    generated: np.ndarray,
    target: np.ndarray | None,
    mask: np.ndarray | None,
    *,
    metrics: Sequence[str] = PAIRWISE,
    mask_reason: str = NO_KEYPOINTS,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 50,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Per-pair scores -> ({metric: float64 (N,)}, {metric: reason it could not be computed}).

    generated, target: uint8 (N, H, W, 3); mask: bool (N, H, W) Ma et al. masks of the target poses
    (mask-SSIM), or None (then ``mask_reason`` says why). SSIM/mask-SSIM/L1 are
    :func:`deformgan.evaluation.metrics.ssim` / ``l1`` (the paper's protocol), LPIPS AlexNet v0.1.
    """
    values: dict[str, np.ndarray] = {}
    reasons: dict[str, str] = {}
    for name in metrics:
        if name not in PAIRWISE:
            raise InputError(f"metric {name!r} has no per-pair value; expected one of {', '.join(PAIRWISE)}")
        if target is None:
            reasons[name] = NO_TARGET
        elif name == "ssim":
            values[name] = M.ssim(generated, target)
        elif name == "l1":
            values[name] = M.l1(generated, target)
        elif name == "mask_ssim":
            if mask is None:
                reasons[name] = mask_reason
            else:
                values[name] = M.ssim(generated, target, mask)
        elif name == "lpips":
            try:
                values[name] = lpips_per_pair(generated, target, weights, device, batch_size)
            except MissingWeightsError as error:
                reasons[name] = f"weights missing: {error.filename}"
            except M.MetricUnavailable as error:
                reasons[name] = str(error)
    return values, reasons


@dataclass
class Scored:
    """A method's scores: ``results`` in evaluate's schema (one entry per requested metric), ``per_pair``
    {metric: float64 (N,)} for the pairwise metrics that could be computed, in the images' order."""

    results: dict[str, dict]
    per_pair: dict[str, np.ndarray]


MASK_CHUNK = 256  # pairs per evaluation-mask batch: its (B, 23, H, W) intermediates stay under ~1 GB


def evaluation_masks(
    pairs: Sequence[tuple[str, str]],
    keypoints: Mapping[str, np.ndarray],
    frame: tuple[int, int],
    x_offset: int,
) -> np.ndarray:
    """Ma et al. masks (bool (N, H, W)) of the target poses of ``pairs``:
    :func:`~deformgan.evaluation.scores.target_masks` in chunks of :data:`MASK_CHUNK` pairs."""
    pairs = list(pairs)
    chunks = [
        target_masks(pairs[start : start + MASK_CHUNK], keypoints, frame, x_offset)
        for start in range(0, len(pairs), MASK_CHUNK)
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, *frame), bool)


def masks_for(
    images: MethodImages, truth: GroundTruth, x_offset: int
) -> tuple[np.ndarray | None, str | None]:
    """The evaluation masks of the images' target poses -> (bool (N, H, W) or None, reason if None)."""
    if truth.keypoints is None:
        return None, NO_KEYPOINTS
    if images.pairs is None:
        return None, UNNAMED
    return evaluation_masks(images.pairs, truth.keypoints, images.frame, x_offset), None


def score_method(
    images: MethodImages,
    truth: GroundTruth,
    *,
    target: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    mask_reason: str | None = None,
    x_offset: int = 0,
    metrics: Sequence[str] = METRICS,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 50,
    progress: bool = False,
) -> Scored:
    """Score one method's images -> :class:`Scored`.

    target: the ground-truth images to score against (default: the images' own target panels, else the
    dataset's images of the target names). mask / mask_reason: the evaluation masks (default: computed
    from ``truth``'s keypoints). x_offset: keypoint x shift into the frame (:func:`x_offset_for`).
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InputError(f"metrics: unknown {', '.join(unknown)}; expected some of {', '.join(METRICS)}")
    if target is None:
        target = images.target
    if target is None and truth.layout is not None and images.pairs is not None:
        target = read_dataset_images(truth, [b for _, b in images.pairs], images.frame, x_offset)
    if mask is None and mask_reason is None:
        mask, mask_reason = masks_for(images, truth, x_offset)
    n = len(images.generated)
    pairwise = [m for m in metrics if m in PAIRWISE]
    per_pair, reasons = pair_scores(
        images.generated, target, mask, metrics=pairwise, mask_reason=mask_reason or NO_KEYPOINTS,
        weights=weights, device=device, batch_size=batch_size,
    )  # fmt: skip
    rest = [m for m in metrics if m not in PAIRWISE]
    others = {}
    if rest:
        others = score_images(
            images.generated, target, mask, metrics=rest,
            real_images=train_image_chunks(truth, images.frame, x_offset, max(batch_size, 200)),
            weights=weights, device=device, batch_size=batch_size, progress=progress,
        )  # fmt: skip
        generic = "mask_is" in others and others["mask_is"]["reason"] == NO_KEYPOINTS
        if generic and mask_reason and mask_reason != NO_KEYPOINTS:
            others["mask_is"] = _entry(None, mask_reason, 0)  # say why there are no keypoints
    results = {}
    for name in metrics:
        if name in per_pair:
            results[name] = _entry(per_pair[name].mean(), None, n)
        elif name in reasons:
            results[name] = _entry(None, reasons[name], 0)
        else:
            results[name] = others[name]
    return Scored(results=results, per_pair=per_pair)


# ----------------------------------------------------------------------------------------------
# One folder, evaluate's way


def select_pairs(
    images: MethodImages, pairs: Sequence[tuple[str, str]]
) -> tuple[MethodImages, list[tuple[str, str]], list[tuple[str, str]]]:
    """The images of ``pairs`` in that order -> (subset, requested pairs without an image, images of no
    requested pair). Raises :class:`InputError` when none of the pairs has an image."""
    position = {key: i for i, key in enumerate(images.keys)}
    wanted = [tuple(p) for p in pairs]
    present = [p for p in wanted if p in position]
    missing = [p for p in wanted if p not in position]
    requested = set(wanted)
    extra = [k for k in images.keys if k not in requested]
    if not present:
        example = f" (e.g. {wanted[0][0]} -> {wanted[0][1]})" if wanted else ""
        raise InputError(f"{images.folder}: none of the {len(wanted)} requested pairs has an image{example}")
    return images.subset([position[p] for p in present]), missing, extra


def _examples(keys: Sequence[tuple[str, str]], count: int = 5) -> list[str]:
    return [f"{a} -> {b}" if b else a for a, b in keys[:count]]


def evaluate(
    generated: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    annotations: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    pairs: str | os.PathLike | Sequence[tuple[str, str]] | None = None,
    first_number: int = 0,
    frame: tuple[int, int] | None = None,
    dataset: str | None = None,
    out: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 50,
    metrics: Sequence[str] = METRICS,
    triplets: bool = False,
    progress: bool = True,
) -> dict:
    """``deformgan evaluate`` for a folder in any of the formats of :mod:`.formats` -> evaluate's schema.

    pairs: restricts named formats to these pairs (default: the dataset's test pairs with ``data``, else
    every image; requested pairs without an image are listed under ``meta.missing``, images of no pair
    under ``meta.extra``, and the scores are on the pairs present); names numbered strips (row i = file
    ``first_number + i``). The ``meta`` entry adds ``format`` and ``format_description`` (which format
    was detected) and ``target_source`` ("strips" or "dataset"). triplets (``--triplets``): a folder
    without target panels is an error. data: dataset root (:func:`deformgan.data.find_layout`);
    annotations: keypoint CSV(s) instead of the dataset's; dataset: a preset name of
    :data:`deformgan.data.PRESETS` (checks the size; ``deepfashion-176`` shifts keypoints by x - 40);
    out: a ``.json`` file or a folder for ``metrics.json`` + ``metrics.md``; weights: file or folder of
    pretrained weights; metrics: a subset of :data:`METRICS`.
    """
    truth = load_ground_truth(data, annotations)
    pairs_source = "every image of the folder"
    listed = pairs
    if isinstance(pairs, (str, os.PathLike)):
        pairs_source, listed = str(pairs), read_pairs(pairs)
    elif pairs is not None:
        pairs_source = "the given pairs"
    elif truth.layout is not None and truth.layout.pairs_files["test"].is_file():
        pairs_source = f"the dataset's test pairs ({truth.layout.pairs_files['test']})"
        listed = read_pairs(truth.layout.pairs_files["test"])
    explicit = None if pairs is None else listed  # only pairs the user gave name numbered strips
    images = read_method(
        generated,
        known=truth.keypoints,
        pairs=explicit,
        first_number=first_number,
        frame=frame,
        progress=progress,
        strips=triplets,
    )
    if triplets and images.target is None:
        raise InputError(
            f"{generated}: expected strips with a target panel (--triplets), found {images.format!r} images "
            f"({FORMATS[images.format]})"
        )
    missing: list[tuple[str, str]] = []
    extra: list[tuple[str, str]] = []
    if listed is not None and images.format != "numbered":
        images, missing, extra = select_pairs(images, listed)
    elif images.format == "numbered":
        pairs_source = "numbered files" + (f" named by {pairs_source}" if explicit is not None else "")
    x_offset = x_offset_for(images.frame, dataset)
    scored = score_method(
        images, truth, x_offset=x_offset, metrics=metrics, weights=weights, device=device,
        batch_size=batch_size, progress=progress,
    )  # fmt: skip
    results: dict = dict(scored.results)
    results["meta"] = {
        "generated": str(generated),
        "format": images.format,
        "format_description": images.description,
        "pairs": len(images.keys),
        "pairs_source": pairs_source,
        "missing": {"count": len(missing), "examples": _examples(missing)},
        "extra": {"count": len(extra), "examples": _examples(extra)},
        "named": images.pairs is not None,
        "target_source": "strips" if images.target is not None else ("dataset" if truth.layout else None),
        "image_size": list(images.frame),
        "lpips_fid_size": list(modern_view(images.generated[:1]).shape[1:3]),
        "annotations": [str(p) for p in truth.annotation_files],
        "data": None if data is None else str(data),
        "dataset": dataset,
    }
    if out is not None:
        write_results(results, out)
    return results


def method_summary(results: Mapping[str, Mapping]) -> dict[str, float | None]:
    """{metric: value} of one result dict (the metric entries only)."""
    return {k: v.get("value") for k, v in results.items() if k in METRICS}

"""Scores of in-memory images: the paper's protocol and the later field's, in one result schema.

:func:`score_images` takes uint8 images (N, H, W, 3) and returns one entry per metric of :data:`METRICS`,
always of the form

    {"value": float | None, "reason": str | None, "n": int, ...extras}

``value`` is None exactly when the metric could not be computed, and ``reason`` then says why in one line
(e.g. ``"weights missing: alexnet-owt-7be5be79.pth"``). Extras: ``std`` (IS, mask-IS: std over the 10
splits), ``mean_margin`` (ds_hog: mean best SVM margin, 0 for images without detection). Folders of
generated images are read and scored by :mod:`deformgan.evaluation.evaluate`; :func:`write_results` and
:func:`markdown_table` write the results. See docs/evaluation.md for the definition of each metric.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from deformgan.atomic import atomic_write_text
from deformgan.data.layout import shift_keypoints
from deformgan.errors import InputError
from deformgan.evaluation import metrics as M
from deformgan.evaluation.mask import evaluation_mask
from deformgan.images import from_uint8
from deformgan.pretrained import MissingWeightsError

#: Metric keys, in table order.
METRICS: tuple[str, ...] = ("ssim", "mask_ssim", "is", "mask_is", "ds", "ds_hog", "lpips", "fid", "l1")

#: The modern metrics (LPIPS, FID) are computed at the field's resolutions (Zhu et al., CVPR 2019):
#: Market 128x64 as is; DeepFashion 256x176, i.e. the central 176 columns of the 256x256 frame Def-GAN
#: generates in.
DEEPFASHION_CROP = 40

CHUNK = 500  # images masked at a time for mask-IS (bounded memory on 8,570-pair test sets)

# ----------------------------------------------------------------------------------------------
# Scoring in-memory images


def _entry(value: float | None = None, reason: str | None = None, n: int = 0, **extras: float) -> dict:
    return {"value": None if value is None else float(value), "reason": reason, "n": n, **extras}


def _unavailable(reason: str) -> dict:
    return _entry(None, reason)


def _guard(compute: Callable[[], dict]) -> dict:
    """Run one metric; a missing weights file or an unusable library becomes ``value: None`` + reason."""
    try:
        return compute()
    except MissingWeightsError as error:
        return _unavailable(f"weights missing: {error.filename}")
    except M.MetricUnavailable as error:
        return _unavailable(str(error))


def modern_view(images: np.ndarray) -> np.ndarray:
    """The images at the field's LPIPS/FID resolution: 256x256 DeepFashion frames -> central 256x176."""
    if images.shape[1:3] == (256, 256):
        return images[:, :, DEEPFASHION_CROP : 256 - DEEPFASHION_CROP]
    return images


def _chunks(n: int, size: int) -> Iterable[slice]:
    return (slice(start, min(start + size, n)) for start in range(0, n, size))


def _masked(images: np.ndarray, mask: np.ndarray, index: slice) -> np.ndarray:
    return M.apply_mask(images[index], mask[index])


def score_images(
    generated: np.ndarray,
    target: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    *,
    metrics: Sequence[str] = METRICS,
    real_images: Callable[[], Iterable[np.ndarray]] | None = None,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 50,
    progress: bool = False,
) -> dict[str, dict]:
    """Score uint8 images (N,H,W,3) -> ``{metric: {"value", "reason", "n", ...}}`` for each of ``metrics``.

    target: the ground-truth images (SSIM, mask-SSIM, L1, LPIPS); mask: bool (N,H,W) evaluation masks of
    the target poses (mask-SSIM, mask-IS); real_images: a callable yielding uint8 chunks of the real
    training images at the generated images' frame size (FID). A metric whose inputs are not given gets
    ``value: None`` and a reason. weights: a file or folder handed to :func:`find_weights`.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise InputError(f"metrics: unknown {', '.join(unknown)}; expected some of {', '.join(METRICS)}")
    generated = M.check_uint8_images("generated", generated)
    n = len(generated)
    no_target = "no target images (use triplets, or pass the dataset folder)"
    no_mask = "no target keypoints (pass the dataset folder or annotation CSVs)"
    results: dict[str, dict] = {}

    def need(name: str) -> bool:
        return name in metrics

    if need("ssim"):
        results["ssim"] = (
            _entry(M.ssim(generated, target).mean(), n=n) if target is not None else _unavailable(no_target)
        )
    if need("mask_ssim"):
        if target is None or mask is None:
            results["mask_ssim"] = _unavailable(no_target if target is None else no_mask)
        else:
            results["mask_ssim"] = _entry(M.ssim(generated, target, mask).mean(), n=n)
    if need("l1"):
        results["l1"] = (
            _entry(M.l1(generated, target).mean(), n=n) if target is not None else _unavailable(no_target)
        )
    if need("ds_hog"):

        def hog() -> dict:
            found = M.hog_detections(generated)
            return _entry(found.detected.mean(), n=n, mean_margin=float(found.max_margin.mean()))

        results["ds_hog"] = _guard(hog)

    if need("ds"):

        def ds() -> dict:
            detector = M.PersonDetector(weights).to(device)
            return _entry(M.detection_scores(generated, detector, batch_size).mean(), n=n)

        results["ds"] = _guard(ds)

    if need("lpips"):

        def lpips() -> dict:
            if target is None:
                return _unavailable(no_target)
            model = M.LPIPS(weights).to(device)
            gen, ref = modern_view(generated), modern_view(target)
            scores = []
            for index in _chunks(n, batch_size):
                a = from_uint8(gen[index]).to(device)
                b = from_uint8(ref[index]).to(device)
                scores.append(model(a, b).cpu())
            return _entry(torch.cat(scores).double().mean().item(), n=n)

        results["lpips"] = _guard(lpips)

    if need("is") or need("mask_is") or need("fid"):
        results.update(
            _inception_metrics(generated, mask, metrics, real_images, weights, device, batch_size, progress)
        )
    return {name: results[name] for name in metrics}


def _inception_metrics(
    generated: np.ndarray,
    mask: np.ndarray | None,
    metrics: Sequence[str],
    real_images: Callable[[], Iterable[np.ndarray]] | None,
    weights: str | os.PathLike | None,
    device: str | torch.device,
    batch_size: int,
    progress: bool,
) -> dict[str, dict]:
    n = len(generated)
    try:
        inception = M.InceptionV3(weights).to(device)
    except MissingWeightsError as error:
        return {m: _unavailable(f"weights missing: {error.filename}") for m in ("is", "mask_is", "fid")}
    except M.MetricUnavailable as error:
        return {m: _unavailable(str(error)) for m in ("is", "mask_is", "fid")}
    results: dict[str, dict] = {}
    pool3 = None
    if "is" in metrics or "fid" in metrics:
        pool3, logits = M.inception_outputs(generated, inception, batch_size, progress)
        if n >= M.IS_SPLITS:
            mean, std = M.inception_score_from_logits(logits)
            results["is"] = _entry(mean, n=n, std=std)
        else:
            results["is"] = _unavailable(f"needs at least {M.IS_SPLITS} images (one per split), got {n}")
    if "mask_is" in metrics:
        if mask is None:
            results["mask_is"] = _unavailable(
                "no target keypoints (pass the dataset folder or annotation CSVs)"
            )
        elif n < M.IS_SPLITS:
            results["mask_is"] = _unavailable(f"needs at least {M.IS_SPLITS} images (one per split), got {n}")
        else:
            logits = torch.cat(
                [
                    M.inception_outputs(_masked(generated, mask, i), inception, batch_size)[1]
                    for i in _chunks(n, CHUNK)
                ]
            )
            mean, std = M.inception_score_from_logits(logits)
            results["mask_is"] = _entry(mean, n=n, std=std)
    if "fid" in metrics:
        if real_images is None:
            results["fid"] = _unavailable(
                "no real training images (pass the dataset folder with <prefix>-dataset/train)"
            )
        else:
            fid = M.FID(inception, batch_size)
            modern = modern_view(generated)
            if modern.shape != generated.shape:  # DeepFashion: a second pass at 256x176
                fid.update(modern, real=False)
            else:
                fid.update_features(pool3, real=False)
            n_real = 0
            for real in real_images():
                fid.update(modern_view(real), real=True)
                n_real += len(real)
            if n_real < 2 or n < 2:
                results["fid"] = _unavailable(
                    f"needs at least 2 real and 2 generated images, got {n_real} and {n}"
                )
            else:
                results["fid"] = _entry(fid.compute(), n=n, n_real=n_real)
    return results


# ----------------------------------------------------------------------------------------------
# Folder evaluation


def target_masks(
    pairs: Sequence[tuple[str, str]],
    keypoints: Mapping[str, np.ndarray],
    size: tuple[int, int],
    x_offset: int = 0,
) -> np.ndarray:
    """Ma et al. evaluation masks (bool (N,H,W)) of the target poses of ``pairs`` (``produce_ma_mask``)."""
    missing = [to for _, to in pairs if to not in keypoints]
    if missing:
        raise InputError(
            f"no keypoints for target image {missing[0]} ({len(missing)} targets without annotation)"
        )
    kp = shift_keypoints(np.stack([keypoints[to] for _, to in pairs]), x_offset)
    kp = torch.from_numpy(kp)
    return evaluation_mask(kp, size).numpy()


# ----------------------------------------------------------------------------------------------
# Output


def format_metric(entry: Mapping) -> str:
    """One table cell: ``0.290``, ``3.185 ± 0.112`` (IS), or ``n/a (<reason>)``."""
    if entry.get("value") is None:
        return f"n/a ({entry.get('reason')})"
    text = f"{entry['value']:.3f}" if abs(entry["value"]) < 1000 else f"{entry['value']:.1f}"
    if "std" in entry:
        text += f" ± {entry['std']:.3f}"
    if "mean_margin" in entry:
        text += f" (margin {entry['mean_margin']:.2f})"
    return text


def markdown_table(rows: Mapping[str, Mapping[str, Mapping]], metrics: Sequence[str] | None = None) -> str:
    """``{row label: results}`` -> a Markdown table, one column per metric (default: every key present)."""
    if metrics is None:
        metrics = [m for m in METRICS if any(m in r for r in rows.values())]
    lines = ["| | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for label, result in rows.items():
        cells = [format_metric(result[m]) if m in result else "" for m in metrics]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(results: Mapping, out: str | os.PathLike) -> tuple[Path, Path]:
    """Write the results as JSON and as a Markdown table (atomically) -> their paths.

    ``out`` ending in ``.json`` is the JSON file itself (the table goes beside it, ``.md``); any other
    ``out`` is a folder receiving ``metrics.json`` and ``metrics.md``.
    """
    out = Path(out)
    json_path = out if out.suffix == ".json" else out / "metrics.json"
    md_path = json_path.with_suffix(".md")
    atomic_write_text(json_path, json.dumps(results, indent=2) + "\n")
    label = Path(results.get("meta", {}).get("generated", "generated")).name or "generated"
    scores = {k: v for k, v in results.items() if k in METRICS}
    atomic_write_text(md_path, markdown_table({label: scores}))
    return json_path, md_path


def _maybe_tqdm(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="img", leave=False)

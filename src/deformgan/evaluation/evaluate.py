"""Score a folder of generated images: the paper's protocol and the later field's.

Input folder: one PNG per test pair named ``<from>_<to>.png`` (both names keep their ``.jpg``/``.png``
extension), or with ``triplets=True`` the reference's ``[source | target | generated]`` horizontal strips
(``test.py`` output). Output: a dict (and, with ``out=``, ``metrics.json`` + ``metrics.md``) with one entry
per metric of :data:`METRICS`, always of the form

    {"value": float | None, "reason": str | None, "n": int, ...extras}

``value`` is None exactly when the metric could not be computed, and ``reason`` then says why in one line
(e.g. ``"weights missing: alexnet-owt-7be5be79.pth"``). Extras: ``std`` (IS, mask-IS: std over the 10
splits), ``mean_margin`` (ds_hog: mean best SVM margin, 0 for images without detection). The run's settings
are under the key ``"meta"``. See docs/evaluation.md for the definition of each metric.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deformgan.atomic import atomic_write_text
from deformgan.data.layout import find_layout, get_preset, image_files, shift_keypoints
from deformgan.errors import InputError
from deformgan.evaluation import metrics as M
from deformgan.evaluation.mask import evaluation_mask
from deformgan.images import list_images, read_image
from deformgan.keypoints import read_annotations, read_pairs
from deformgan.pretrained import MissingWeightsError

#: Metric keys, in table order.
METRICS: tuple[str, ...] = ("ssim", "mask_ssim", "is", "mask_is", "ds", "ds_hog", "lpips", "fid", "l1")

#: The modern metrics (LPIPS, FID) are computed at the field's resolutions (Zhu et al., CVPR 2019):
#: Market 128x64 as is; DeepFashion 256x176, i.e. the central 176 columns of the 256x256 frame Def-GAN
#: generates in.
DEEPFASHION_CROP = 40

CHUNK = 500  # images masked at a time for mask-IS (bounded memory on 8,570-pair test sets)

_PAIR_NAME = re.compile(r"\.(?:jpg|jpeg|png)_", re.IGNORECASE)


# ----------------------------------------------------------------------------------------------
# Reading the generated folder


def parse_pair_name(filename: str, known: Iterable[str] | None = None) -> tuple[str, str]:
    """``"<from>_<to>.png"`` -> (from, to), both names ending in .jpg/.jpeg/.png.

    Image names contain underscores themselves (Market: ``0007_c2s3_070952_01.jpg``), so the split is at
    an ``.<ext>_`` boundary. With several candidate boundaries, the one whose two halves are both ``known``
    names (e.g. annotated images) wins; without ``known`` an ambiguous name is an error.
    """
    stem = filename[:-4] if filename.lower().endswith(".png") else filename
    candidates = []
    for match in _PAIR_NAME.finditer(stem):
        source, target = stem[: match.end() - 1], stem[match.end() :]
        if re.search(r"\.(?:jpg|jpeg|png)$", target, re.IGNORECASE):
            candidates.append((source, target))
    if known is not None and len(candidates) > 1:
        known = set(known)
        candidates = [c for c in candidates if c[0] in known and c[1] in known] or candidates
    if len(candidates) != 1:
        what = "no" if not candidates else "an ambiguous"
        raise InputError(
            f"{filename}: {what} pair name, expected <from>_<to>.png with both names ending in .jpg or .png "
            "(e.g. 0007_c2s3_070952_01.jpg_0007_c3s3_077419_03.jpg.png)"
        )
    return candidates[0]


@dataclass
class GeneratedSet:
    """Images to score: ``pairs`` [(from, to)], ``generated`` uint8 (N,H,W,3), ``target`` uint8 or None.

    ``missing``: requested pairs without an image in the folder; ``extra``: image files of the folder that
    no requested pair names (both empty when every image of the folder is scored).
    """

    pairs: list[tuple[str, str]]
    files: list[Path]
    generated: np.ndarray
    target: np.ndarray | None
    missing: list[tuple[str, str]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


def read_generated(
    folder: str | os.PathLike,
    *,
    triplets: bool = False,
    pairs: Sequence[tuple[str, str]] | None = None,
    known: Iterable[str] | None = None,
    progress: bool = False,
) -> GeneratedSet:
    """Read the generated PNGs of ``folder``: all of them in file-name order, or those of ``pairs`` in their
    order (pairs without an image and images of no pair are listed in ``missing`` / ``extra``).

    With ``triplets=True`` each strip is cut into three equal widths and the target (middle) and generated
    (right) images are returned.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: folder of generated images not found")
    if pairs is None:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
        if not files:
            raise InputError(f"{folder}: no .png images (expected <from>_<to>.png files)")
        names = [parse_pair_name(f.name, known) for f in files]
    else:
        wanted = [tuple(p) for p in pairs]
        names = [p for p in wanted if (folder / f"{p[0]}_{p[1]}.png").is_file()]
        missing = [p for p in wanted if p not in set(names)]
        named = {f"{a}_{b}.png" for a, b in wanted}
        extra = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".png" and p.name not in named)
        if not names:
            raise InputError(
                f"{folder}: none of the {len(wanted)} requested pairs has an image "
                f"(expected e.g. {wanted[0][0]}_{wanted[0][1]}.png)"
                if wanted
                else f"{folder}: no pairs requested"
            )
        files = [folder / f"{a}_{b}.png" for a, b in names]
    generated, targets = [], []
    shape = None
    for path in _maybe_tqdm(files, progress, "read"):
        image = read_image(path)
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise InputError(f"{path}: size {image.shape[1]}x{image.shape[0]} differs from the first image's")
        if triplets:
            width = image.shape[1] // 3
            if image.shape[1] != 3 * width:
                raise InputError(f"{path}: a triplet strip must be 3 images wide, got width {image.shape[1]}")
            targets.append(image[:, width : 2 * width])
            generated.append(image[:, 2 * width :])
        else:
            generated.append(image)
    return GeneratedSet(
        pairs=list(names),
        files=files,
        generated=np.stack(generated),
        target=np.stack(targets) if triplets else None,
        missing=missing if pairs is not None else [],
        extra=extra if pairs is not None else [],
    )


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
                a = torch.from_numpy(np.ascontiguousarray(gen[index])).to(device)
                b = torch.from_numpy(np.ascontiguousarray(ref[index])).to(device)
                scores.append(model(_to_signed(a), _to_signed(b)).cpu())
            return _entry(torch.cat(scores).double().mean().item(), n=n)

        results["lpips"] = _guard(lpips)

    if need("is") or need("mask_is") or need("fid"):
        results.update(
            _inception_metrics(generated, mask, metrics, real_images, weights, device, batch_size, progress)
        )
    return {name: results[name] for name in metrics}


def _to_signed(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B,H,W,3) -> float (B,3,H,W) in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


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


def _read_keypoint_files(paths: Sequence[str | os.PathLike]) -> dict[str, np.ndarray]:
    keypoints: dict[str, np.ndarray] = {}
    for path in paths:
        keypoints.update(read_annotations(path))
    return keypoints


def _frame_offset(size: tuple[int, int], dataset: str | None) -> int:
    """Columns to subtract from annotation x so keypoints match the image frame (DeepFashion 256x176)."""
    if dataset is not None:
        preset = get_preset(dataset)
        if tuple(preset.image_size) != tuple(size):
            raise InputError(
                f"dataset {dataset!r}: images are {preset.image_size[0]}x{preset.image_size[1]}, "
                f"but the generated images are {size[0]}x{size[1]}"
            )
        return preset.x_offset
    return DEEPFASHION_CROP if tuple(size) == (256, 176) else 0


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


def _train_image_reader(folder: Path, size: tuple[int, int], x_offset: int, batch: int):
    files = list_images(folder)

    def chunks() -> Iterable[np.ndarray]:
        for index in _chunks(len(files), batch):
            images = [read_image(p)[:, x_offset : x_offset + size[1]] for p in files[index]]
            for path, image in zip(files[index], images, strict=True):
                if image.shape[:2] != tuple(size):
                    raise InputError(f"{path}: expected a {size[0]}x{size[1]} image (after crop)")
            yield np.stack(images)

    return chunks if files else None


def evaluate(
    generated: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    annotations: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    pairs: str | os.PathLike | Sequence[tuple[str, str]] | None = None,
    triplets: bool = False,
    dataset: str | None = None,
    out: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    batch_size: int = 50,
    metrics: Sequence[str] = METRICS,
    progress: bool = True,
) -> dict:
    """Score the generated images of a folder (see the module docstring for inputs and the result schema).

    generated: folder of ``<from>_<to>.png`` images (or triplet strips with ``triplets=True``).
    data: dataset root (reference layout, :func:`deformgan.data.find_layout`): target images (train, then
    test folder), keypoints (all annotation CSVs) and the training images for FID. annotations: CSV
    file(s) used instead of the dataset's for the keypoints. pairs: pairs CSV or list restricting the
    evaluation (default: the dataset's test pairs with ``data``, else every PNG in the folder; requested
    pairs without an image are reported under ``meta.missing``, images of no pair under ``meta.extra``,
    and the scores are on the pairs present). dataset: preset name of :data:`deformgan.data.PRESETS`
    (checks the image size; "deepfashion-176" shifts keypoints by x - 40); default: inferred from the
    size. out: folder receiving ``metrics.json`` and ``metrics.md`` (written atomically). weights: file or
    folder of pretrained weights. metrics: subset of :data:`METRICS`.
    """
    layout = None
    if data is not None:
        layout = find_layout(data)
    if isinstance(annotations, (str, os.PathLike)):
        annotations = [annotations]
    annotation_files = (
        list(annotations) if annotations else (layout.existing_annotation_files() if layout else [])
    )
    keypoints = _read_keypoint_files(annotation_files) if annotation_files else None
    pairs_source = "every image of the folder"
    if isinstance(pairs, (str, os.PathLike)):
        pairs_source = str(pairs)
        pairs = read_pairs(pairs)
    elif pairs is not None:
        pairs_source = "the given pairs"
    elif layout is not None and layout.pairs_files["test"].is_file():
        pairs_source = f"the dataset's test pairs ({layout.pairs_files['test']})"
        pairs = read_pairs(layout.pairs_files["test"])

    images = read_generated(generated, triplets=triplets, pairs=pairs, known=keypoints, progress=progress)
    size = images.generated.shape[1:3]
    x_offset = _frame_offset(size, dataset)
    target = images.target
    if target is None and layout is not None:
        target = _read_targets(layout, images.pairs, size, x_offset, progress)
    mask = target_masks(images.pairs, keypoints, size, x_offset) if keypoints is not None else None
    real_images = None
    if layout is not None and layout.image_dirs["train"].is_dir():
        real_images = _train_image_reader(layout.image_dirs["train"], size, x_offset, max(batch_size, 200))

    results = score_images(
        images.generated,
        target,
        mask,
        metrics=metrics,
        real_images=real_images,
        weights=weights,
        device=device,
        batch_size=batch_size,
        progress=progress,
    )
    modern = modern_view(images.generated[:1]).shape[1:3]
    results["meta"] = {
        "generated": str(generated),
        "pairs": len(images.pairs),
        "pairs_source": pairs_source,
        "missing": {
            "count": len(images.missing),
            "examples": [f"{a}_{b}.png" for a, b in images.missing[:5]],
        },
        "extra": {"count": len(images.extra), "examples": images.extra[:5]},
        "triplets": triplets,
        "image_size": list(size),
        "lpips_fid_size": list(modern),
        "annotations": [str(p) for p in annotation_files],
        "data": None if data is None else str(data),
        "dataset": dataset,
    }
    if out is not None:
        write_results(results, out)
    return results


def _read_targets(
    layout, pairs: Sequence[tuple[str, str]], size: tuple[int, int], x_offset: int, progress: bool
):
    files = image_files(layout)
    folders = ", ".join(str(f) for f in layout.existing_image_dirs())
    targets = []
    for _, name in _maybe_tqdm(pairs, progress, "targets"):
        if name not in files:
            raise InputError(f"target image {name} not found in {folders}")
        image = read_image(files[name])[:, x_offset : x_offset + size[1]]
        if image.shape[:2] != tuple(size):
            raise InputError(
                f"{files[name]}: expected {size[0]}x{size[1]} after crop, "
                f"got {image.shape[0]}x{image.shape[1]}"
            )
        targets.append(image)
    return np.stack(targets)


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

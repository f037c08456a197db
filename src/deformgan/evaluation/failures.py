"""A failure browser: the worst generated pairs of a method, tagged with their likely causes.

:func:`find_failures` ranks every test pair of a method's output folder (any format of :mod:`.formats`)
from worst to best by a per-pair score (mask-SSIM by default), computes the causes of
:mod:`.causes` for every pair, tags a pair with a cause when its value exceeds the cause's threshold
(a fixed rule or a percentile over all pairs, stated in the output), and writes into ``out``:

- ``failures.html`` + ``failures/NNN.png``: the worst N pairs: source, target, generated, the source and
  target skeletons, the source warped to the target pose by the part affines (the deformable skip
  connection applied to the image, :func:`deformgan.warp.deform`, max over parts), the ten per-part warps,
  the tags with their values; sortable by rank, score or any cause value;
- ``failures.json`` / ``failures.md``: for each cause its threshold rule, how often it is tagged among the
  worst decile and among all pairs (and the ratio), the Spearman correlation of its value with the
  badness of the score; then every pair ranked, with its values, details and tags.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from deformgan.atomic import atomic_write_text
from deformgan.data import shift_keypoints
from deformgan.errors import InputError
from deformgan.evaluation import causes as C
from deformgan.evaluation.evaluate import (
    HIGHER_IS_BETTER,
    PAIRWISE,
    GroundTruth,
    evaluation_masks,
    load_ground_truth,
    pair_scores,
    read_dataset_images,
    select_pairs,
    x_offset_for,
)
from deformgan.evaluation.figures import grid, hstack, overlay_skeleton, skeleton_tile, text_tile, upscale
from deformgan.evaluation.formats import read_method
from deformgan.evaluation.report_html import Column, html_table, table_page
from deformgan.images import list_images, read_image, to_uint8, write_image
from deformgan.keypoints import read_annotations, read_pairs
from deformgan.parts import part_affines, part_masks
from deformgan.warp import deform

#: Short labels of :data:`deformgan.parts.PART_NAMES` for the per-part sheets.
PART_LABELS = (
    "torso",
    "head",
    "R thigh",
    "L thigh",
    "R shin",
    "L shin",
    "R arm",
    "L arm",
    "R fore",
    "L fore",
)
#: Column headers of the cause values on the page (the full label is the header's tooltip).
SHORT_LABELS = {
    "missing_keypoints": "missing joints", "implausible_bones": "bone z", "rare_pose": "pose NN",
    "arm_in_torso": "arm depth", "large_warp": "warp", "rare_appearance": "colour dist",
}  # fmt: skip
STRIP_COLUMNS = (
    "source",
    "target",
    "generated",
    "source pose",
    "target pose",
    "source warped (max over parts)",
)


# ----------------------------------------------------------------------------------------------
# Inputs


def _stack_keypoints(keypoints: Mapping[str, np.ndarray], names: Sequence[str], role: str) -> np.ndarray:
    absent = [n for n in names if n not in keypoints]
    if absent:
        raise InputError(
            f"no keypoints for {role} image {absent[0]} ({len(absent)} {role}s without annotation)"
        )
    return np.stack([keypoints[n] for n in names]).astype(np.float64)


def _reference_poses(
    truth: GroundTruth, train_annotations: Sequence[str | os.PathLike] | str | os.PathLike | None
) -> tuple[dict[str, np.ndarray], str]:
    if isinstance(train_annotations, (str, os.PathLike)):
        train_annotations = [train_annotations]
    if train_annotations:
        poses: dict[str, np.ndarray] = {}
        for path in train_annotations:
            poses.update(read_annotations(path))
        return poses, "training poses: " + ", ".join(str(p) for p in train_annotations)
    if truth.layout is not None and truth.layout.annotation_files["train"].is_file():
        path = truth.layout.annotation_files["train"]
        return read_annotations(path), f"training poses: {path}"
    return dict(truth.keypoints), (
        "every annotated image given (no training annotations; each pair's own images excluded): "
        + ", ".join(str(p) for p in truth.annotation_files)
    )


def _reference_appearance(
    truth: GroundTruth,
    poses: Mapping[str, np.ndarray],
    frame: tuple[int, int],
    x_offset: int,
    limit: int | None,
) -> tuple[np.ndarray | None, list[str], str]:
    """Colour features of the training images that have keypoints (evenly spaced, at most ``limit``)."""
    if truth.layout is None or not truth.layout.image_dirs["train"].is_dir():
        return None, [], ""
    files = [p for p in list_images(truth.layout.image_dirs["train"]) if p.name in poses]
    if not files:
        return None, [], ""
    if limit is not None and len(files) > limit:
        files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    images, names = [], []
    for path in files:
        image = read_image(path)[:, x_offset : x_offset + frame[1]]
        if image.shape[:2] != tuple(frame):
            raise InputError(f"{path}: expected a {frame[0]}x{frame[1]} training image (after crop)")
        images.append(image)
        names.append(path.name)
    kp = shift_keypoints(np.stack([poses[n] for n in names]), x_offset)
    features = C.colour_features(np.stack(images), kp)
    return features, names, f"{len(names)} training images of {truth.layout.image_dirs['train']}"


# ----------------------------------------------------------------------------------------------
# Warped sources


@torch.no_grad()
def warped_sources(
    source: np.ndarray, source_kp: np.ndarray, target_kp: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sources warped to the target poses by the part affines, as the deformable skip connection warps
    features (:func:`deformgan.warp.deform`, nearest sampling, target part masks).

    source: uint8 (N, H, W, 3); kp (N, 18, 2) (x, y) in the image frame. Returns (max over parts uint8
    (N, H, W, 3), per part uint8 (N, 10, H, W, 3) each masked by its target mask, valid (N, 10) bool).
    The image is warped in [0, 1] so that "max over parts" picks the brightest covering part.
    """
    image = torch.from_numpy(np.ascontiguousarray(source)).permute(0, 3, 1, 2).float() / 255.0
    src = torch.from_numpy(np.asarray(source_kp, np.float64))
    tgt = torch.from_numpy(np.asarray(target_kp, np.float64))
    theta, valid = part_affines(src, tgt)
    masks = part_masks(tgt, source.shape[1:3])
    combined = deform(image, theta, valid, masks)
    parts = [deform(image, theta[:, p : p + 1], valid[:, p : p + 1], masks[:, p : p + 1]) for p in range(10)]

    def as_uint8(x: torch.Tensor) -> np.ndarray:
        return to_uint8(x * 2 - 1)

    per_part = np.stack([as_uint8(p) for p in parts], axis=1)
    return as_uint8(combined), per_part, valid.numpy()


# ----------------------------------------------------------------------------------------------
# Ranking


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _summary(
    values: Mapping[str, np.ndarray],
    tags: Mapping[str, np.ndarray],
    badness: np.ndarray,
    worst_index: np.ndarray,
) -> dict[str, dict]:
    summary = {}
    for key, tagged in tags.items():
        rate_worst = float(tagged[worst_index].mean())
        rate_all = float(tagged.mean())
        finite = np.isfinite(values[key])
        rho = None
        if finite.sum() >= 3 and np.ptp(values[key][finite]) > 0 and np.ptp(badness[finite]) > 0:
            rho = _finite(spearmanr(values[key][finite], badness[finite]).statistic)
        summary[key] = {
            "worst_decile_rate": rate_worst,
            "all_rate": rate_all,
            "lift": rate_worst / rate_all if rate_all > 0 else None,
            "spearman_with_badness": rho,
            "computable": int(finite.sum()),
        }
    return summary


def find_failures(
    generated: str | os.PathLike,
    *,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    annotations: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    train_annotations: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    pairs: str | os.PathLike | Sequence[tuple[str, str]] | None = None,
    first_number: int = 0,
    frame: tuple[int, int] | None = None,
    dataset: str | None = None,
    score: str = "mask_ssim",
    worst: int = 50,
    percentile: float | None = None,
    thresholds: Mapping[str, float] | None = None,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    max_reference_images: int | None = 2000,
    scale: int | None = None,
    progress: bool = False,
) -> dict:
    """Rank a method's test pairs from worst to best and tag the worst with their likely causes.

    generated: the method's folder (any format of :mod:`deformgan.evaluation.formats`; strips give source
    and target, otherwise ``data`` must hold them). data / annotations: dataset root / keypoint CSVs
    (required: every cause needs the poses). train_annotations: training keypoints (pose rarity, bone
    statistics; default: the dataset's train CSV, else all annotated images with each pair's own left
    out). pairs: restrict to / name these pairs. score: a per-pair metric of
    :data:`~deformgan.evaluation.evaluate.PAIRWISE` (``lpips`` needs its weights). worst: pairs shown.
    percentile: replaces 90 in the percentile rules; thresholds: {cause: value} overrides.
    max_reference_images: training images used for appearance statistics (evenly spaced). Returns the
    dict written to ``out/failures.json``.
    """
    if score not in PAIRWISE:
        raise InputError(f"score: {score!r} has no per-pair value; expected one of {', '.join(PAIRWISE)}")
    if worst < 1:
        raise InputError(f"worst: expected >= 1 pairs to show, got {worst}")
    if percentile is not None and not 0 < percentile < 100:
        raise InputError(f"percentile: expected a value in (0, 100), got {percentile}")
    out = Path(out)
    truth = load_ground_truth(data, annotations)
    if truth.keypoints is None:
        raise InputError(
            "failures: every cause needs the poses; pass the annotation CSVs or the dataset folder"
        )
    listed = read_pairs(pairs) if isinstance(pairs, (str, os.PathLike)) else pairs
    images = read_method(
        generated,
        known=truth.keypoints,
        pairs=listed,
        first_number=first_number,
        frame=frame,
        progress=progress,
    )
    if images.pairs is None:
        raise InputError(
            f"{generated}: numbered strips without pair names; pass pairs= (the pairs CSV in file order) "
            "so the poses of each pair are known"
        )
    missing: list = []
    if listed is not None and images.format != "numbered":
        images, missing, _ = select_pairs(images, listed)
    size = images.frame
    x_offset = x_offset_for(size, dataset)
    sources, targets = [a for a, _ in images.pairs], [b for _, b in images.pairs]
    src_raw = _stack_keypoints(truth.keypoints, sources, "source")
    tgt_raw = _stack_keypoints(truth.keypoints, targets, "target")
    src_kp = shift_keypoints(src_raw.astype(np.int64), x_offset).astype(np.float64)
    tgt_kp = shift_keypoints(tgt_raw.astype(np.int64), x_offset).astype(np.float64)

    def ground(panel: np.ndarray | None, names: list[str], what: str) -> np.ndarray:
        if panel is not None:
            return panel
        if truth.layout is None:
            raise InputError(
                f"{generated}: format {images.format!r} has no {what} images; pass the dataset folder"
            )
        return read_dataset_images(truth, names, size, x_offset)

    source = ground(images.source, sources, "source")
    target = ground(images.target, targets, "target")
    mask = evaluation_masks(images.pairs, truth.keypoints, size, x_offset)
    values, reasons = pair_scores(
        images.generated, target, mask, metrics=[score], weights=weights, device=device
    )
    if score not in values:
        raise InputError(f"score {score}: {reasons[score]}")
    scores = values[score]
    n = len(scores)

    # Causes.
    reference, pose_reference = _reference_poses(truth, train_annotations)
    ref_names = list(reference)
    ref_kp = np.stack([reference[k] for k in ref_names]).astype(np.float64)
    stats = C.bone_statistics(ref_kp)
    found = {
        "missing_keypoints": C.missing_keypoints(src_raw, tgt_raw),
        "implausible_bones": C.implausible_bones(src_raw, tgt_raw, stats),
        "rare_pose": C.rare_pose(tgt_raw, ref_kp, ref_names, targets, [[a, b] for a, b in images.pairs]),
        "arm_in_torso": C.arm_in_torso(tgt_raw),
        "large_warp": C.large_warp(src_raw, tgt_raw),
    }
    features = C.colour_features(source, src_kp)
    ref_features, ref_image_names, appearance_reference = _reference_appearance(
        truth, reference, size, x_offset, max_reference_images
    )
    if ref_features is None:
        unique = list(dict.fromkeys(sources))
        first = {name: sources.index(name) for name in unique}
        ref_features = features[[first[u] for u in unique]]
        ref_image_names = unique
        appearance_reference = (
            f"the {len(unique)} distinct test source images (no training images given; own image excluded)"
        )
    position: dict[str, list[int]] = {}
    for j, name in enumerate(ref_image_names):
        position.setdefault(name, []).append(j)
    exclude = [position.get(a, []) + position.get(b, []) for a, b in images.pairs]
    found["rare_appearance"] = C.rare_appearance(features, ref_features, exclude)

    cause_values = {k: v.values for k, v in found.items()}
    rules = C.thresholds_for(cause_values, percentile, thresholds)
    tags = {k: np.nan_to_num(cause_values[k], nan=-np.inf) > rules[k]["threshold"] for k in found}
    higher = HIGHER_IS_BETTER[score]
    badness = -scores if higher else scores
    order = np.lexsort((np.arange(n), -badness))  # worst first; ties keep file order
    decile = max(1, math.ceil(n / 10))
    summary = _summary(cause_values, tags, badness, order[:decile])
    causes = {
        key: {
            "label": C.CAUSES[key].label,
            "unit": C.CAUSES[key].unit,
            "description": C.CAUSES[key].why,
            **rules[key],
            **summary[key],
        }
        for key in found
    }
    ranked = []
    for rank, i in enumerate(order, start=1):
        ranked.append(
            {
                "rank": rank,
                "from": sources[i],
                "to": targets[i],
                "score": float(scores[i]),
                "tags": [k for k in found if tags[k][i]],
                "values": {k: _finite(cause_values[k][i]) for k in found},
                "details": {k: found[k].details[i] for k in found},
            }
        )
    shown = order[: min(worst, n)]
    result = {
        "meta": {
            "generated": str(generated),
            "format": images.format,
            "format_description": images.description,
            "score": score,
            "higher_is_better": higher,
            "pairs": n,
            "missing_pairs": len(missing),
            "worst_decile": decile,
            "shown": len(shown),
            "pose_reference": pose_reference,
            "appearance_reference": appearance_reference,
            "annotations": [str(p) for p in truth.annotation_files],
            "threshold_rules": C.rules_text(rules),
        },
        "causes": causes,
        "pairs": ranked,
    }
    _write_images(out, shown, source, target, images.generated, src_kp, tgt_kp, size, scale)
    _write_page(out, result, shown, scores, cause_values, tags, found)
    atomic_write_text(out / "failures.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "failures.md", failures_markdown(result))
    return result


# ----------------------------------------------------------------------------------------------
# Output


#: Display heights (CSS px) on the page: the strip (enlarged, pixelated), the per-part sheet (at most).
STRIP_HEIGHT = 176
PARTS_HEIGHT = 300


def _write_images(out: Path, shown, source, target, generated, src_kp, tgt_kp, size, scale) -> None:
    scale = scale if scale is not None else 1  # the page enlarges them (pixelated) to STRIP_HEIGHT
    combined, per_part, valid = warped_sources(source[shown], src_kp[shown], tgt_kp[shown])
    for rank, i in enumerate(shown, start=1):
        tiles = [
            source[i],
            overlay_skeleton(target[i], tgt_kp[i]),
            generated[i],
            skeleton_tile(src_kp[i], size),
            skeleton_tile(tgt_kp[i], size),
            combined[rank - 1],
        ]
        write_image(hstack([upscale(t, scale) for t in tiles]), out / "failures" / f"{rank:03d}.png")
        parts = per_part[rank - 1]
        tiles = [
            tile if valid[rank - 1, p] else _invalid_tile(tile.shape[:2]) for p, tile in enumerate(parts)
        ]
        big = max(1, size[0] // 128)  # labels readable once the sheet is shown PARTS_HEIGHT px tall
        sheet = grid(
            [tiles[:5], tiles[5:]], cell_labels=[PART_LABELS[:5], PART_LABELS[5:]], scale=scale,
            label_height=14 * big, label_size=10 * big,
        )  # fmt: skip
        write_image(sheet, out / "failures" / f"{rank:03d}-parts.png")


def _invalid_tile(size: tuple[int, int]) -> np.ndarray:
    """A black tile saying "invalid" in grey (a part without a fit contributes nothing to the warp)."""
    tile = np.zeros((*size, 3), np.uint8)
    height = max(12, size[0] // 8)
    top = (size[0] - height) // 2
    label = text_tile("invalid", size[1], height, size=max(8, height - 4))  # black text on white
    tile[top : top + height] = ((255 - label.astype(np.int32)) * 150 // 255).astype(np.uint8)
    return tile


def _tag_html(result: Mapping, row: Mapping) -> str:
    items = []
    for key in row["tags"]:
        cause = result["causes"][key]
        value = row["values"][key]
        text = f"{cause['label']}: {value:.2f} > {cause['threshold']:.2f}"
        items.append(
            f'<span class="tag" title="{html.escape(row["details"][key])}">{html.escape(text)}</span>'
        )
    details = "<br>".join(
        f'<span class="muted">{html.escape(result["causes"][k]["label"])}: '
        f"{html.escape(row['details'][k])}</span>"
        for k in row["tags"]
    )
    return "".join(items) + ("<br>" + details if details else "") or '<span class="muted">none</span>'


def _write_page(out: Path, result, shown, scores, cause_values, tags, found) -> Path:
    meta, causes = result["meta"], result["causes"]
    score = meta["score"]
    columns = [
        Column("rank", "rank", "number", digits=0),
        Column("score", score, "number", better="higher" if meta["higher_is_better"] else "lower"),
        Column("tags", "pair and likely causes", "html"),
    ]
    for k in found:
        title = f"{causes[k]['label']}: {causes[k]['description']}"
        columns.append(Column(k, SHORT_LABELS[k], "number", digits=2, title=title))
    columns.append(Column("images", " | ".join(STRIP_COLUMNS) + "; below: the per-part warps", "images"))
    sheet_height = read_image(out / "failures" / "001-parts.png").shape[0]
    rows = []
    for rank, _ in enumerate(shown, start=1):
        row = result["pairs"][rank - 1]
        item = {
            "key": f"{row['from']} -> {row['to']}",
            "rank": rank,
            "score": row["score"],
            "images": [
                [f"failures/{rank:03d}.png", STRIP_HEIGHT],
                [f"failures/{rank:03d}-parts.png", min(PARTS_HEIGHT, sheet_height)],
            ],
            "tags": f'<span class="pair">{html.escape(row["from"])} -&gt; {html.escape(row["to"])}</span><br>'
            + _tag_html(result, row),
        }
        item.update({k: row["values"][k] for k in found})
        rows.append(item)
    summary = html_table(
        ["cause", "rule", "threshold", "worst decile", "all pairs", "ratio", "Spearman with badness"],
        [
            [
                c["label"],
                c["rule"],
                f"{c['threshold']:.3g} {c['unit']}",
                f"{100 * c['worst_decile_rate']:.0f} %",
                f"{100 * c['all_rate']:.0f} %",
                "n/a" if c["lift"] is None else f"{c['lift']:.2f}",
                "n/a" if c["spearman_with_badness"] is None else f"{c['spearman_with_badness']:+.2f}",
            ]
            for c in causes.values()
        ],
    )
    intro = (
        f'<p class="note">{html.escape(meta["format_description"])}. {meta["pairs"]} pairs ranked by {score} '
        f"({'lower' if meta['higher_is_better'] else 'higher'} is worse); the worst decile is the "
        f"{meta['worst_decile']} worst pairs. Poses: {html.escape(meta['pose_reference'])}. Appearance: "
        f"{html.escape(meta['appearance_reference'])}.</p>"
        f"<h2>Causes: how often tagged</h2>{summary}"
        '<p class="note">Ratio = rate among the worst decile / rate among all pairs (above 1: the cause goes '
        "with failure). Spearman: rank correlation of the value with the badness of the score over all "
        "pairs. Thresholds: "
        f"{html.escape(meta['threshold_rules'])}.</p>"
        f"<h2>The {len(shown)} worst pairs</h2>"
    )
    page = table_page(
        f"Failures of {Path(meta['generated']).name} by {score}", columns, rows, intro_html=intro
    )
    return Path(atomic_write_text(out / "failures.html", page))


def failures_markdown(result: Mapping) -> str:
    """The cause summary and the worst pairs as Markdown."""
    meta = result["meta"]
    lines = [
        f"{meta['pairs']} pairs of {meta['generated']} ranked by {meta['score']}; worst decile = "
        f"{meta['worst_decile']} pairs. Poses: {meta['pose_reference']}. "
        f"Appearance: {meta['appearance_reference']}.",
        "",
        "| cause | rule | threshold | worst decile | all pairs | ratio | Spearman with badness |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in result["causes"].values():
        lift = "n/a" if c["lift"] is None else f"{c['lift']:.2f}"
        rho = "n/a" if c["spearman_with_badness"] is None else f"{c['spearman_with_badness']:+.2f}"
        lines.append(
            f"| {c['label']} | {c['rule']} | {c['threshold']:.3g} {c['unit']} | "
            f"{100 * c['worst_decile_rate']:.0f} % | {100 * c['all_rate']:.0f} % | {lift} | {rho} |"
        )
    lines += ["", f"Worst {meta['shown']} pairs:", ""]
    for row in result["pairs"][: meta["shown"]]:
        tags = ", ".join(result["causes"][k]["label"] for k in row["tags"]) or "no tag"
        lines.append(
            f"{row['rank']}. {row['from']} -> {row['to']}: {meta['score']} {row['score']:.3f} ({tags})"
        )
    return "\n".join(lines) + "\n"

"""Side-by-side comparison of several methods on the same test pairs (the supplementary material's figures).

:func:`compare_methods` reads one output folder per method (any format of :mod:`.formats`, detected per
folder), keeps the pairs every method has (the others are reported: counts and a few names), and writes
into ``out``:

- ``compare.json`` / ``compare.md``: each method's scores on the shared pairs, in ``deformgan evaluate``'s
  schema (``{"methods": {name: {metric: {"value", "reason", "n"}, "meta": {...}}}, "meta": {...}}``);
- ``figures/page-NNN.png``: rows of pairs, columns = conditioning image, target with its pose drawn, one
  column per method (as the paper's comparison with PG2); the row caption gives each method's score;
- ``compare.html`` + ``pairs/NNNNN.png``: every shared pair with its per-method SSIM, mask-SSIM, L1 (and
  LPIPS with weights), sortable by any score, with a "method X beats method Y by more than d" filter;
  self-contained (inline script, images beside it by relative path).

Ground truth: with a dataset folder, every method is scored against the dataset's target images (one
truth for all); otherwise each method against its own strips' target panel (what its authors' scripts
do), and a method without one against the first strip method's targets. Methods whose targets disagree
with the reference targets (mean |difference| in grey levels, in ``meta``) are flagged: wrong numbering or
a different test split.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from deformgan.atomic import atomic_write_text
from deformgan.errors import InputError
from deformgan.evaluation.evaluate import (
    HIGHER_IS_BETTER,
    NO_KEYPOINTS,
    PAIRWISE,
    UNNAMED,
    GroundTruth,
    evaluation_masks,
    load_ground_truth,
    read_dataset_images,
    score_method,
    x_offset_for,
)
from deformgan.evaluation.figures import grid, hstack, overlay_skeleton
from deformgan.evaluation.formats import MethodImages, read_method
from deformgan.evaluation.report_html import Column, html_table, table_page
from deformgan.evaluation.scores import METRICS, format_metric, markdown_table
from deformgan.images import write_image
from deformgan.keypoints import read_pairs

#: Frames compared after cutting 256x256 DeepFashion images to PATN's central 256x176 (x 40..216).
DEEPFASHION_FRAMES = {(256, 256), (256, 176)}
#: Mean |own target - reference target| (grey levels) above which a method's targets are flagged as other
#: images. On 40 real Market / DeepFashion test targets, re-encoding as JPEG (quality 75-95) changes them by
#: 0.4-2.0 grey levels, pairing each with the next test target (a numbering off by one) by 46-53, and even
#: a source with its own target differs by 32-47 (tests/test_compare.py checks the margins).
TARGET_MISMATCH = 12.0
EXAMPLES = 5


def _key_text(key: tuple[str, str]) -> str:
    return key[0] if key[0].startswith("#") and not key[1] else f"{key[0]} -> {key[1]}"


def _sort_key(key: tuple[str, str]):
    if key[0].startswith("#") and not key[1]:
        return (0, int(key[0][1:]), "")
    return (1, key[0], key[1])


def _common_frame(read: Mapping[str, MethodImages]) -> tuple[dict[str, MethodImages], str | None]:
    frames = {m.frame for m in read.values()}
    if len(frames) == 1:
        return dict(read), None
    if frames <= DEEPFASHION_FRAMES:
        cut = {n: (m.crop_columns(40, 176) if m.frame == (256, 256) else m) for n, m in read.items()}
        wide = [n for n, m in read.items() if m.frame == (256, 256)]
        return cut, (
            f"DeepFashion images of two frames: {', '.join(wide)} cut from 256x256 to the central 256x176 "
            "(columns 40-215, PATN's crop) to compare with the 256x176 methods"
        )
    listed = "; ".join(f"{n}: {m.frame[0]}x{m.frame[1]}" for n, m in read.items())
    raise InputError(f"methods have different image sizes ({listed}); compare outputs of one dataset")


def _unmatched(read: Mapping[str, MethodImages], common: set) -> dict[str, dict]:
    union = set().union(*(set(m.keys) for m in read.values()))
    report = {}
    for name, method in read.items():
        keys = set(method.keys)
        extra = sorted(keys - common, key=_sort_key)
        missing = sorted(union - keys, key=_sort_key)
        report[name] = {
            "not_shared": len(extra),
            "not_shared_examples": [_key_text(k) for k in extra[:EXAMPLES]],
            "missing": len(missing),
            "missing_examples": [_key_text(k) for k in missing[:EXAMPLES]],
        }
    return report


def _reference_images(
    read: Mapping[str, MethodImages], truth: GroundTruth, keys: Sequence[tuple[str, str]], x_offset: int,
    panel: str,
) -> tuple[np.ndarray | None, str | None]:  # fmt: skip
    """The shared pairs' source or target images: the dataset's, else the first method's strips."""
    named = not keys[0][0].startswith("#") or bool(keys[0][1])
    if truth.layout is not None and named:
        frame = next(iter(read.values())).frame
        names = [k[0] if panel == "source" else k[1] for k in keys]
        return read_dataset_images(truth, names, frame, x_offset), "dataset"
    for name, method in read.items():
        images = getattr(method, panel)
        if images is not None:
            return images, f"strips of {name}"
    return None, None


def compare_methods(
    methods: Mapping[str, str | os.PathLike],
    *,
    out: str | os.PathLike,
    data: str | os.PathLike | None = None,
    annotations: Sequence[str | os.PathLike] | str | os.PathLike | None = None,
    pairs: str | os.PathLike | Sequence[tuple[str, str]] | None = None,
    first_number: int = 0,
    frame: tuple[int, int] | None = None,
    dataset: str | None = None,
    metrics: Sequence[str] = METRICS,
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 50,
    rows_per_page: int = 8,
    max_pages: int | None = 10,
    scale: int | None = None,
    progress: bool = False,
) -> dict:
    """Compare methods on the pairs they share; write JSON, Markdown, figure pages and an HTML browser.

    methods: {name as shown: output folder} (any format of :mod:`deformgan.evaluation.formats`), in column
    order. data: dataset root (target/source images, keypoints, training images for FID); annotations: CSV
    file(s) with the keypoints instead (mask-SSIM, skeletons). pairs: a pairs CSV or list restricting the
    comparison to these pairs; it also names numbered strips (file ``first_number + i`` = row i). frame:
    panel size (H, W) for a dataset other than Market/DeepFashion. dataset: preset name (keypoint x
    offset). metrics: subset of :data:`~deformgan.evaluation.evaluate.METRICS`. rows_per_page,
    max_pages: figure pages (None: every shared pair). scale: figure enlargement (default 2 for frames
    under 256 rows). Returns the dict written to ``out/compare.json``.
    """
    if not methods:
        raise InputError("methods: expected at least one name=folder")
    for name in methods:
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"methods: a method name must be a non-empty string, got {name!r}")
    if rows_per_page < 1:
        raise InputError(f"rows_per_page: expected >= 1, got {rows_per_page}")
    out = Path(out)
    truth = load_ground_truth(data, annotations)
    listed = read_pairs(pairs) if isinstance(pairs, (str, os.PathLike)) else pairs
    read = {
        name: read_method(
            folder, known=truth.keypoints, pairs=listed, first_number=first_number, frame=frame,
            progress=progress,
        )
        for name, folder in methods.items()
    }  # fmt: skip
    read, frame_note = _common_frame(read)
    size = next(iter(read.values())).frame
    x_offset = x_offset_for(size, dataset)

    common = set.intersection(*(set(m.keys) for m in read.values()))
    if listed is not None:
        common &= {tuple(p) for p in listed}
    if not common:
        counts = ", ".join(f"{n}: {len(m.keys)} images" for n, m in read.items())
        hint = ""
        unnamed = [n for n, m in read.items() if m.pairs is None]
        if unnamed and len(unnamed) < len(read):
            hint = (
                f"; {', '.join(unnamed)} holds numbered strips without pair names: pass pairs= "
                "(the pairs CSV in the order the files were numbered)"
            )
        raise InputError(f"no pair is in every method's folder ({counts}){hint}")
    keys = sorted(common, key=_sort_key)
    unmatched = _unmatched(read, common)
    descriptions = {name: (m.description, len(m.keys)) for name, m in read.items()}
    shared = {}
    for name in list(read):
        method = read.pop(name)  # the full arrays go as soon as the shared subset is taken
        position = {k: i for i, k in enumerate(method.keys)}
        shared[name] = method.subset([position[k] for k in keys])
        del method

    named = not (keys[0][0].startswith("#") and not keys[0][1])
    target_ref, target_from = _reference_images(shared, truth, keys, x_offset, "target")
    source_ref, source_from = _reference_images(shared, truth, keys, x_offset, "source")
    if truth.keypoints is None:
        mask, mask_reason = None, NO_KEYPOINTS
    elif not named:
        mask, mask_reason = None, UNNAMED
    else:
        mask, mask_reason = evaluation_masks(keys, truth.keypoints, size, x_offset), None

    results: dict = {"methods": {}, "meta": {}}
    per_pair: dict[str, dict[str, np.ndarray]] = {}
    for name, method in shared.items():
        if truth.layout is not None and named:
            target, target_source = target_ref, "dataset"
        elif method.target is not None:
            target, target_source = method.target, "own strips"
        else:
            target, target_source = target_ref, target_from
        scored = score_method(
            method, truth, target=target, mask=mask, mask_reason=mask_reason, x_offset=x_offset,
            metrics=metrics, weights=weights, device=device, batch_size=batch_size, progress=progress,
        )  # fmt: skip
        per_pair[name] = scored.per_pair
        difference = None
        if method.target is not None and target_ref is not None and method.target is not target_ref:
            difference = float(np.abs(method.target.astype(np.int16) - target_ref.astype(np.int16)).mean())
        meta = {
            "folder": str(method.folder),
            "format": method.format,
            "format_description": descriptions[name][0],
            "images": descriptions[name][1],
            "pairs_scored": len(keys),
            "target_source": target_source,
            "target_difference": difference,
            "target_mismatch": difference is not None and difference > TARGET_MISMATCH,
        }
        results["methods"][name] = {**scored.results, "meta": meta}

    pages = _write_figures(
        out, shared, keys, per_pair, truth, source_ref, target_ref, x_offset, rows_per_page, max_pages,
        scale, size,
    )  # fmt: skip
    results["meta"] = {
        "pairs": len(keys),
        "statement": f"scores computed on the {len(keys)} pairs all {len(shared)} methods share",
        "image_size": list(size),
        "frame_note": frame_note,
        "target_reference": target_from,
        "source_reference": source_from,
        "mask_ssim": mask_reason or "Ma et al. masks of the target poses",
        "annotations": [str(p) for p in truth.annotation_files],
        "data": None if data is None else str(data),
        "unmatched": unmatched,
        "figures": [str(p.relative_to(out)) for p in pages],
        "html": "compare.html",
    }
    labels = _column_labels(shared, source_ref, target_ref)
    _write_pair_page(out, results, shared, keys, per_pair, labels, size[0] * _figure_scale(scale, size))
    atomic_write_text(out / "compare.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(out / "compare.md", comparison_markdown(results))
    return results


# ----------------------------------------------------------------------------------------------
# Figures


def _target_keypoints(truth: GroundTruth, key: tuple[str, str]) -> np.ndarray | None:
    if truth.keypoints is None:
        return None
    return truth.keypoints.get(key[1])


def _row_tiles(
    i: int, key, shared: Mapping[str, MethodImages], truth: GroundTruth, source_ref, target_ref, x_offset: int
) -> list[np.ndarray]:
    tiles = []
    if source_ref is not None:
        tiles.append(source_ref[i])
    if target_ref is not None:
        tiles.append(overlay_skeleton(target_ref[i], _target_keypoints(truth, key), x_offset))
    tiles.extend(method.generated[i] for method in shared.values())
    return tiles


def _caption_score(per_pair: Mapping[str, Mapping[str, np.ndarray]]) -> str | None:
    """The score shown under each method in the figures: mask-SSIM where every method has it, else SSIM."""
    return next((m for m in ("mask_ssim", "ssim") if all(m in p for p in per_pair.values())), None)


def _cell_captions(i: int, n_reference: int, per_pair: Mapping[str, Mapping[str, np.ndarray]]) -> list[str]:
    score = _caption_score(per_pair)
    if score is None:
        return [""] * (n_reference + len(per_pair))
    label = score.replace("_", "-").replace("ssim", "SSIM")
    return [""] * n_reference + [f"{label} {p[score][i]:.3f}" for p in per_pair.values()]


def _column_labels(shared, source_ref, target_ref) -> list[str]:
    labels = []
    if source_ref is not None:
        labels.append("conditioning")
    if target_ref is not None:
        labels.append("target + pose")
    return labels + list(shared)


def _write_figures(
    out: Path, shared, keys, per_pair, truth, source_ref, target_ref, x_offset, rows_per_page, max_pages,
    scale, size,
) -> list[Path]:  # fmt: skip
    """Figure pages (PNG) and one strip per pair for the HTML page."""
    scale = _figure_scale(scale, size)
    labels = _column_labels(shared, source_ref, target_ref)
    pages = []
    n_pages = -(-len(keys) // rows_per_page)
    if max_pages is not None:
        n_pages = min(n_pages, max_pages)
    for page in range(n_pages):
        index = range(page * rows_per_page, min(len(keys), (page + 1) * rows_per_page))
        rows = [_row_tiles(i, keys[i], shared, truth, source_ref, target_ref, x_offset) for i in index]
        n_reference = len(labels) - len(shared)
        cells = [_cell_captions(i, n_reference, per_pair) for i in index]
        names = [_key_text(keys[i]) for i in index]
        image = grid(rows, column_labels=labels, row_labels=names, cell_labels=cells, scale=scale)
        pages.append(write_image(image, out / "figures" / f"page-{page + 1:03d}.png"))
    for i, key in enumerate(keys):  # at native size (4x less PNG work): the page enlarges them
        tiles = _row_tiles(i, key, shared, truth, source_ref, target_ref, x_offset)
        write_image(hstack(tiles, gap=1), out / "pairs" / f"{i + 1:05d}.png")
    return pages


def _figure_scale(scale: int | None, size: tuple[int, int]) -> int:
    """The enlargement of figures and page strips: 2 for frames under 256 rows (Market), else 1."""
    return scale if scale is not None else (2 if size[0] < 256 else 1)


# ----------------------------------------------------------------------------------------------
# Reports


def comparison_markdown(results: Mapping) -> str:
    """The comparison as Markdown: the statement, the table of scores, formats, unmatched pairs."""
    meta = results["meta"]
    methods = results["methods"]
    scores = {name: {k: v for k, v in r.items() if k in METRICS} for name, r in methods.items()}
    lines = [f"Scores computed on the {meta['pairs']} pairs all {len(methods)} methods share.", ""]
    lines.append(markdown_table(scores).rstrip("\n"))
    lines += ["", "Formats detected:", ""]
    for name, r in methods.items():
        m = r["meta"]
        note = f"; targets: {m['target_source']}"
        if m["target_difference"] is not None:
            note += f" (mean |own target - reference| {m['target_difference']:.1f} grey levels"
            note += ", MISMATCH: other images?)" if m["target_mismatch"] else ")"
        lines.append(f"- {name}: {m['format_description']}{note}")
    if meta.get("frame_note"):
        lines += ["", meta["frame_note"]]
    lines += ["", "Pairs not shared by all methods:", ""]
    for name, u in meta["unmatched"].items():
        text = f"- {name}: {u['not_shared']} of its pairs not in every other folder"
        if u["not_shared_examples"]:
            text += " (e.g. " + ", ".join(u["not_shared_examples"][:3]) + ")"
        text += f"; {u['missing']} pairs of other folders absent here"
        if u["missing_examples"]:
            text += " (e.g. " + ", ".join(u["missing_examples"][:3]) + ")"
        lines.append(text)
    return "\n".join(lines) + "\n"


def _intro_html(results: Mapping) -> str:
    meta = results["meta"]
    methods = results["methods"]
    present = [m for m in METRICS if any(m in r for r in methods.values())]
    table = html_table(
        ["method", *present], [[name, *(format_metric(r[m]) for m in present)] for name, r in methods.items()]
    )
    formats = html_table(
        ["method", "format detected", "targets", "pairs not shared", "missing here"],
        [
            [
                name,
                r["meta"]["format_description"],
                r["meta"]["target_source"]
                + (" (MISMATCH with the reference targets)" if r["meta"]["target_mismatch"] else ""),
                f"{meta['unmatched'][name]['not_shared']} "
                + ", ".join(meta["unmatched"][name]["not_shared_examples"][:3]),
                f"{meta['unmatched'][name]['missing']} "
                + ", ".join(meta["unmatched"][name]["missing_examples"][:3]),
            ]
            for name, r in methods.items()
        ],
    )
    figures = " ".join(f'<a href="{html.escape(p)}">{html.escape(Path(p).name)}</a>' for p in meta["figures"])
    notes = [html.escape(meta["statement"]) + "."]
    if meta.get("frame_note"):
        notes.append(html.escape(meta["frame_note"]) + ".")
    notes.append(f"mask-SSIM: {html.escape(str(meta['mask_ssim']))}.")
    return (
        f'<p class="note">{" ".join(notes)}</p>{table}<h2>Methods</h2>{formats}'
        f'<h2>Figure pages</h2><p class="note">{figures or "none"}</p><h2>Pairs</h2>'
        '<p class="note">Image columns: conditioning image, target with its pose, then each method. '
        "Click a score header to sort by it.</p>"
    )


def _write_pair_page(out: Path, results, shared, keys, per_pair, labels: Sequence[str], height: int) -> Path:
    names = list(shared)
    scores = [m for m in PAIRWISE if any(m in per_pair[n] for n in names)]
    columns = [
        Column("index", "#", "number", digits=0),
        Column("pair", "pair", "text"),
        Column("image", " | ".join(labels), "image", height=height),
    ]
    for score in scores:
        better = "higher" if HIGHER_IS_BETTER[score] else "lower"
        for name in names:
            title = f"{score} of {name} ({better} is better)"
            columns.append(Column(f"{score}:{name}", f"{score} {name}", "number", better=better, title=title))
    rows = []
    for i, key in enumerate(keys):
        row = {
            "key": _key_text(key),
            "index": i + 1,
            "pair": _key_text(key),
            "image": f"pairs/{i + 1:05d}.png",
        }
        for score in scores:
            for name in names:
                values = per_pair[name].get(score)
                row[f"{score}:{name}"] = None if values is None else float(values[i])
        rows.append(row)
    comparison = {
        "methods": names,
        "better": {s: "higher" if HIGHER_IS_BETTER[s] else "lower" for s in scores},
    }
    page = table_page(
        f"Comparison of {', '.join(names)}",
        columns,
        rows,
        intro_html=_intro_html(results),
        comparison=comparison if scores and len(names) > 1 else None,
    )
    return Path(atomic_write_text(out / "compare.html", page))

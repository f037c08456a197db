"""Scoring trained Re-ID networks and the Table-1-shaped report (Deformable GANs supplementary, §4).

``evaluate_reid(run)`` extracts descriptors of the query, gallery and training images with a trained
network, ranks the gallery with each distance (IDE runs: Euclidean, XQDA, KISSME; DE runs: Euclidean, the
"DE" row), and writes ``<out>.json`` and ``<out>.md`` with Rank-1/5/10 and mAP (both AP conventions of
:mod:`deformgan.reid.evaluation`). XQDA and KISSME are fitted on the descriptors of the run's own
training set (T, or A = T + extra folders) unless ``fit_on="real-train"``.

``write_table1_report(evaluations, out)`` collects evaluation files into the table of the supplementary
material: rows Euclidean / XQDA / KISSME / DE, columns T (trained on the real training set) / A (trained on
T + generated images), cells Rank-1 / mAP in percent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deformgan.atomic import atomic_write_text
from deformgan.errors import InputError
from deformgan.reid.data import ReIDImage, load_reid_dataset, read_extra_folder
from deformgan.reid.evaluation import AP_CONVENTIONS, NO_MATCH_POLICIES, evaluate_ranking
from deformgan.reid.metric_learning import METRICS, fit_metric
from deformgan.reid.train import extract_features, load_model
from deformgan.runtime import resolve_device

ROW_NAMES = {"euclidean": "Euclidean", "xqda": "XQDA", "kissme": "KISSME"}
TABLE1_ROWS = ("Euclidean", "XQDA", "KISSME", "DE")
TABLE1_COLUMNS = ("T", "A")
FIT_ON = ("training-set", "real-train")
#: Deformable GANs supplementary material, Table 1 (Market-1501, Rank-1 / mAP in %).
PAPER_TABLE1 = {
    "Euclidean": {"T": (73.9, 48.8), "A": (78.5, 55.9)},
    "XQDA": {"T": (73.2, 50.9), "A": (77.8, 57.9)},
    "KISSME": {"T": (75.1, 51.5), "A": (79.5, 58.1)},
    "DE": {"T": (78.3, 55.5), "A": (80.6, 61.3)},
}


def row_name(objective: str, method: str) -> str:
    """Table row of a (training objective, distance) pair: IDE + metric -> "Euclidean" / "XQDA" /
    "KISSME"; DE + Euclidean -> "DE"; DE + a learned metric -> "DE + XQDA" etc."""
    if objective == "de":
        return "DE" if method == "euclidean" else f"DE + {ROW_NAMES[method]}"
    return ROW_NAMES[method]


def _fit_images(state: dict, fit_on: str, query_seed: int) -> list[ReIDImage]:
    training = state["training_set"]
    splits = load_reid_dataset(training["data"], query_seed=query_seed)
    images = [im for im in splits.train if im.identity > 0]
    if fit_on == "training-set":
        for extra in training["extra"]:
            images.extend(read_extra_folder(extra["folder"]))
    return images


def evaluate_reid(
    run: str | os.PathLike,
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    methods: Sequence[str] | None = None,
    ap: str = "standard",
    no_match: str = "zero",
    fit_on: str = "training-set",
    pca_dims: int | None = None,
    batch_size: int = 64,
    device: str = "auto",
    workers: int = 0,
    progress: bool = True,
    column: str | None = None,
) -> dict:
    """Score the Re-ID run folder ``run`` on ``data`` (default: the dataset it was trained on).

    methods: distances among "euclidean", "xqda", "kissme" (default: all three for IDE, Euclidean for
    DE). ap: the headline AP convention ("standard" | "official"; the other is reported as well).
    no_match: "zero" | "skip" for queries without a good gallery image. fit_on: "training-set" (the
    run's own T or A) or "real-train" (T only) for XQDA / KISSME. column: the table column ("T" / "A";
    default: "A" when the run used extra folders). Writes ``<out>.json`` and ``<out>.md`` (default
    ``run/evaluation``) and returns the JSON content.
    """
    if ap not in AP_CONVENTIONS:
        raise InputError(f"ap: expected one of {', '.join(AP_CONVENTIONS)}, got {ap!r}")
    if no_match not in NO_MATCH_POLICIES:
        raise InputError(f"no_match: expected one of {', '.join(NO_MATCH_POLICIES)}, got {no_match!r}")
    if fit_on not in FIT_ON:
        raise InputError(f"fit_on: expected one of {', '.join(FIT_ON)}, got {fit_on!r}")
    device = resolve_device(device)
    model, state = load_model(run, device)
    objective = state["objective"]
    methods = list(methods) if methods else (["euclidean"] if objective == "de" else list(METRICS))
    for method in methods:
        if method not in METRICS:
            raise InputError(f"methods: expected a subset of {', '.join(METRICS)}, got {method!r}")
    column = column or state["training_set"]["column"]
    if column not in TABLE1_COLUMNS:
        raise InputError(f"column: expected one of {', '.join(TABLE1_COLUMNS)}, got {column!r}")
    config = state["config"]
    query_seed = int(config.get("query_seed", 0))
    root = data if data is not None else state["training_set"]["data"]
    splits = load_reid_dataset(root, query_seed=query_seed)
    size = tuple(config["input_size"])

    def features(images: list[ReIDImage], desc: str) -> np.ndarray:
        return extract_features(model, images, size, batch_size, device, workers, progress, desc)

    query = features(splits.query, "query")
    gallery = features(splits.gallery, "gallery")
    q_ids = [im.identity for im in splits.query]
    q_cams = [im.camera for im in splits.query]
    g_ids = [im.identity for im in splits.gallery]
    g_cams = [im.camera for im in splits.gallery]
    train_features = train_labels = None
    fit_images: list[ReIDImage] = []
    if any(m != "euclidean" for m in methods):
        fit_images = _fit_images(state, fit_on, query_seed)
        train_features = features(fit_images, "train")
        train_labels = np.array([im.identity for im in fit_images])

    other = "official" if ap == "standard" else "standard"
    results = {}
    for method in methods:
        metric = fit_metric(method, train_features, train_labels, pca_dims=pca_dims)
        distances = metric.distances(query, gallery)
        headline = evaluate_ranking(distances, q_ids, q_cams, g_ids, g_cams, ap=ap, no_match=no_match)
        second = evaluate_ranking(distances, q_ids, q_cams, g_ids, g_cams, ap=other, no_match=no_match)
        headline[f"mAP_{other}"] = second["mAP"]
        headline[f"mAP_{ap}"] = headline["mAP"]
        headline["metric"] = metric.info
        results[row_name(objective, method)] = headline

    report = {
        "run": str(Path(run).resolve()),
        "objective": objective,
        "backbone": config["backbone"],
        "init": state["init"],
        "column": column,
        "training_set": state["training_set"],
        "iterations": state["iteration"],
        "data": splits.summary(),
        "ap": ap,
        "no_match": no_match,
        "fit_on": fit_on if fit_images else None,
        "fit_images": len(fit_images),
        "results": results,
    }
    out = Path(out) if out is not None else Path(run) / "evaluation"
    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write_text(out.with_suffix(".md"), evaluation_markdown(report))
    return report


def _percent(value: float) -> str:
    return f"{100.0 * value:.1f}"


def _init_text(init: dict) -> str:
    if init["init"] == "imagenet":
        return f"ImageNet weights {init['weights']}"
    if init["requested_by_user"]:
        return "random initialisation (requested by the user; no ImageNet weights)"
    return "random initialisation (small CNN, trained from scratch)"


def evaluation_markdown(report: dict) -> str:
    """Markdown for one evaluation (what :func:`evaluate_reid` writes beside its JSON)."""
    training = report["training_set"]
    extra = ", ".join(f"{e['folder']} ({e['images']} images)" for e in training["extra"]) or "none"
    data = report["data"]
    other = "official" if report["ap"] == "standard" else "standard"
    lines = [
        f"# Re-ID evaluation: {report['objective'].upper()} ({report['backbone']}), "
        f"column {report['column']}",
        "",
        f"- run: `{report['run']}` ({report['iterations']} iterations; {_init_text(report['init'])})",
        f"- trained on: {training['data']} ({training['train_images']} images, "
        f"{training['train_identities']} identities) + extra: {extra}",
        f"- evaluated on: {data['root']} ({data['layout']} layout): {data['query']['images']} queries, "
        f"{data['gallery']['images']} gallery images",
        f"- protocol: Market-1501 single query (same identity + same camera and identity -1 are junk); "
        f"AP `{report['ap']}` (also `{other}`); queries without a match: `{report['no_match']}`",
    ]
    if report["fit_on"]:
        lines.append(f"- XQDA / KISSME fitted on {report['fit_images']} images ({report['fit_on']})")
    lines += [
        "",
        f"| method | Rank-1 | Rank-5 | Rank-10 | mAP ({report['ap']}) | mAP ({other}) | queries | no match |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        lines.append(
            f"| {name} | {_percent(r['rank1'])} | {_percent(r['rank5'])} | {_percent(r['rank10'])} | "
            f"{_percent(r['mAP'])} | {_percent(r[f'mAP_{other}'])} | {r['num_evaluated']} | "
            f"{r['num_without_match']} |"
        )
    return "\n".join(lines) + "\n"


def _load_evaluation(item: str | os.PathLike | dict) -> dict:
    if isinstance(item, dict):
        return item
    path = Path(item)
    if path.is_dir():
        path = path / "evaluation.json"
    if not path.is_file():
        raise InputError(f"{item}: no evaluation JSON (run evaluate_reid first)")
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if "results" not in report or "column" not in report:
        raise InputError(f"{path}: not a Re-ID evaluation (no results / column)")
    return report


def write_table1_report(
    evaluations: Sequence[str | os.PathLike | dict], out: str | os.PathLike, title: str | None = None
) -> tuple[Path, Path]:
    """Collect evaluations (JSON paths, run folders or dicts) into ``<out>.json`` and ``<out>.md``.

    Rows Euclidean / XQDA / KISSME / DE (then any other row, e.g. "DE + XQDA"), columns T / A; a cell
    appearing in two evaluations is an InputError. The Markdown also lists the paper's Market-1501 values
    for comparison. Returns the two paths.
    """
    reports = [_load_evaluation(item) for item in evaluations]
    if not reports:
        raise InputError("write_table1_report: expected at least one evaluation")
    cells: dict[str, dict[str, dict]] = {}
    sources: dict[tuple[str, str], str] = {}
    for report in reports:
        for row, result in report["results"].items():
            key = (row, report["column"])
            if key in sources:
                raise InputError(
                    f"table cell {row} / {report['column']}: given twice ({sources[key]} and {report['run']})"
                )
            sources[key] = report["run"]
            cells.setdefault(row, {})[report["column"]] = {
                "rank1": result["rank1"],
                "mAP": result["mAP"],
                "run": report["run"],
                "iterations": report["iterations"],
            }
    rows = [r for r in TABLE1_ROWS if r in cells] + sorted(r for r in cells if r not in TABLE1_ROWS)
    ap = {report["ap"] for report in reports}
    data = {report["data"]["root"] for report in reports}
    table = {
        "rows": rows,
        "columns": list(TABLE1_COLUMNS),
        "cells": cells,
        "ap": sorted(ap),
        "data": sorted(data),
    }
    out = Path(out)
    json_path = atomic_write_text(out.with_suffix(".json"), json.dumps(table, indent=1) + "\n")

    def cell(row: str, column: str) -> str:
        value = cells.get(row, {}).get(column)
        return "—" if value is None else f"{_percent(value['rank1'])} / {_percent(value['mAP'])}"

    lines = [
        f"# {title or 'Re-ID with generated training images (Table 1 layout)'}",
        "",
        f"Rank-1 / mAP in %, Market-1501 single-query protocol, AP `{', '.join(sorted(ap))}`; "
        f"evaluated on {', '.join(sorted(data))}. T: trained on the real training set; "
        "A: T + generated images.",
        "",
        "| method | T | A |",
        "|---|---:|---:|",
        *[f"| {row} | {cell(row, 'T')} | {cell(row, 'A')} |" for row in rows],
        "",
        "Runs:",
        "",
        *[f"- {row} / {col}: `{run}`" for (row, col), run in sorted(sources.items())],
        "",
        "For comparison, the paper's values on Market-1501 (Siarohin et al., Deformable GANs, supplementary"
        " material, Table 1; IDE = ResNet-50, DE = Zheng et al. TOMM 2018):",
        "",
        "| method | T | A |",
        "|---|---:|---:|",
        *[
            f"| {row} | {v['T'][0]:.1f} / {v['T'][1]:.1f} | {v['A'][0]:.1f} / {v['A'][1]:.1f} |"
            for row, v in PAPER_TABLE1.items()
        ],
    ]
    md_path = atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    return json_path, md_path

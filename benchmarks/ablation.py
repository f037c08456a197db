"""Ablation on synthetic people: Baseline vs DSC vs PercLoss vs Full with exact ground truth (the paper's
ablation table).

The paper's claims are comparative (deformable skips and the nearest-neighbour loss beat a U-Net
Baseline). On synthetic people (``deformgan.synth``) the target image of a same-identity pair IS the
ground truth, so the claim can be measured without a person detector or Inception. This script:

1. writes a synthetic dataset (test identities held out by the writer);
2. trains the four paper variants with EQUAL budgets (same iterations, batch, seed, width, data), the
   configs being ``configs/synth-{baseline,dsc,percloss,full}.yaml`` with the benchmark's overrides;
   without VGG-19 weights the PercLoss and Full losses run on pixels and are labelled so. PercLoss on
   pixels (L1, lambda 100, DSC generator) is then the DSC config itself: training is deterministic, so
   the run would be bit-identical and the DSC run is reused (the table says so);
3. generates a FIXED subset of test pairs and scores SSIM, mask-SSIM and L1 against the ground truth
   (paper protocol, ``deformgan.evaluation.metrics``), beside copy-the-source and warp-only references, with
   standard errors and paired differences against the Baseline;
4. writes a Markdown table and a PNG strip figure.

    .venv/bin/python benchmarks/ablation.py                  # the full table (about 35-45 min on 2 cores)
    .venv/bin/python benchmarks/ablation.py --quick --out /tmp/ablation-quick   # 1-2 min smoke run

Training runs ``--parallel`` models at once, one process each with one intra-op thread: the 1/8-width
models scale poorly with threads, and two single-threaded processes use two cores better than one process
with two threads (benchmarks/results/train_speed.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from deformgan.atomic import atomic_write_text
from deformgan.config import Config, find_config, load_config
from deformgan.data import PairDataset
from deformgan.evaluation import metrics as M
from deformgan.evaluation.baselines import warp_only
from deformgan.evaluation.mask import evaluation_mask
from deformgan.generate import generate_batch, load_generator
from deformgan.images import to_uint8, write_image
from deformgan.keypoints import draw_skeleton, read_pairs
from deformgan.pretrained import MissingWeightsError, find_weights
from deformgan.synth import write_synthetic_dataset
from deformgan.vgg import VGG19_WEIGHTS_FILE, VGG19_WEIGHTS_URL

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_description  # noqa: E402  (benchmarks/machine.py)

RESULTS = Path(__file__).resolve().parent / "results"
PREFIX = "synth"
PRESET = "market"  # 128x64 frames, no crop: the synthetic writer's default size
METRIC_KEYS = ("ssim", "mask_ssim", "l1")
METRIC_NAMES = {"ssim": "SSIM", "mask_ssim": "mask-SSIM", "l1": "L1"}
HIGHER_IS_BETTER = {"ssim": True, "mask_ssim": True, "l1": False}


@dataclass(frozen=True)
class Variant:
    """One paper row: its key, table label and resolved config."""

    key: str
    label: str
    config: Config


@dataclass(frozen=True)
class Settings:
    """The benchmark's size knobs (the same for every variant)."""

    iterations: int = 4000
    width: float = 0.125
    batch_size: int = 4
    seed: int = 0
    identities: int = 200
    poses_per_identity: int = 8
    eval_pairs: int = 600
    figure_rows: int = 6


QUICK = Settings(
    iterations=40, width=0.0625, identities=12, poses_per_identity=5, eval_pairs=40, figure_rows=3
)


def vgg_weights_path() -> Path | None:
    """The VGG-19 weights file when present locally (never downloaded), else None."""
    try:
        return find_weights(VGG19_WEIGHTS_FILE, url=VGG19_WEIGHTS_URL)
    except MissingWeightsError:
        return None


def variant_configs(settings: Settings, vgg: Path | None) -> list[Variant]:
    """The four paper variants with identical budgets (the authors' README configs, scaled to the CPU).

    Only ``generator.warp_skip`` and the ``objective`` section differ between them. With VGG-19 weights,
    PercLoss is L1 on conv2_1 (lambda 0.5) and Full the NN loss on conv1_2 (lambda 0.01, n = 3), as the
    paper's Market configs; without, both run on pixels (the synth configs' documented stand-ins).
    """
    common = [
        f"generator.width={settings.width}",
        f"discriminator.width={settings.width}",
        f"train.iterations={settings.iterations}",
        f"train.batch_size={settings.batch_size}",
        f"train.seed={settings.seed}",
        "train.device=cpu",
        "train.checkpoint_every=0",  # one checkpoint, at the end
        f"train.sample_every={max(settings.iterations // 5, 1)}",
        f"train.log_every={max(min(100, settings.iterations // 10), 1)}",
        "data.num_workers=0",
    ]
    if vgg is None:
        perc, full = [], []
        perc_label, full_label = "PercLoss (pixel features)", "Full (NN loss on pixels)"
    else:
        perc = [
            "objective.features=conv2_1",
            "objective.reconstruction_weight=0.5",
            f"objective.vgg_weights={vgg}",
        ]
        full = [
            "objective.features=conv1_2",
            "objective.reconstruction_weight=0.01",
            f"objective.vgg_weights={vgg}",
        ]
        perc_label, full_label = "PercLoss (VGG conv2_1)", "Full (NN loss on VGG conv1_2)"
    rows = [
        ("baseline", "Baseline", []),
        ("dsc", "DSC", []),
        ("percloss", perc_label, perc),
        ("full", full_label, full),
    ]
    return [
        Variant(key, label, load_config(find_config(f"synth-{key}"), [*common, *extra]))
        for key, label, extra in rows
    ]


def run_aliases(variants: Sequence[Variant]) -> dict[str, str]:
    """variant key -> key of the run that trains it: variants whose configs are equal up to the name share
    one run (training is a deterministic function of the config and data, so a second run is identical)."""
    aliases: dict[str, str] = {}
    for variant in variants:
        same = [
            v.key
            for v in variants
            if v.key in aliases.values()
            and dataclasses.replace(v.config, name="") == dataclasses.replace(variant.config, name="")
        ]
        aliases[variant.key] = same[0] if same else variant.key
    return aliases


# ----------------------------------------------------------------------------------------------
# Training (one process per model, one thread each)


def _train_one(config: Config, data_dir: str, run_dir: str, threads: int) -> dict:
    """Worker: train one model; return its wall time and mean seconds per iteration."""
    torch.set_num_threads(threads)
    from deformgan.train import read_log, train

    started = time.perf_counter()
    train(config, data_dir, run_dir, progress=False, tensorboard=False)
    wall = time.perf_counter() - started
    log = read_log(run_dir)
    return {
        "wall_s": wall,
        "s_per_iteration": float(np.mean(log["time/step"])),
        "final_rec": log["loss/G/rec"][-1],
    }


def train_all(
    variants: Sequence[Variant], aliases: dict[str, str], data_dir: Path, out: Path, parallel: int
) -> dict[str, dict]:
    """Train every distinct run, ``parallel`` at a time (spawned processes) -> {run key: timings}."""
    jobs = [v for v in variants if aliases[v.key] == v.key]
    runs = {v.key: out / "runs" / v.key for v in jobs}
    if parallel <= 1:
        return {v.key: _train_one(v.config, str(data_dir), str(runs[v.key]), 1) for v in jobs}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=context) as pool:
        futures = {v.key: pool.submit(_train_one, v.config, str(data_dir), str(runs[v.key]), 1) for v in jobs}
        return {key: future.result() for key, future in futures.items()}


# ----------------------------------------------------------------------------------------------
# Evaluation


def fixed_test_pairs(data_dir: Path, count: int, seed: int) -> list[tuple[str, str]]:
    """A fixed random subset of ``count`` test pairs (sorted by file order, so reruns pick the same)."""
    pairs = read_pairs(data_dir / f"{PREFIX}-pairs-test.csv")
    if count >= len(pairs):
        return pairs
    chosen = np.sort(np.random.default_rng([seed, 0xAB1A]).choice(len(pairs), count, replace=False))
    return [pairs[i] for i in chosen]


def load_pairs(data_dir: Path, pairs: Sequence[tuple[str, str]]) -> dict:
    """One collated batch of every pair (images float [-1, 1], keypoints) from the test split."""
    dataset = PairDataset(data_dir, split="test", preset=PRESET, pairs=list(pairs), prefix=PREFIX)
    return torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])


@torch.no_grad()
def generate_all(run_dir: Path, batch: dict, chunk: int = 50) -> np.ndarray:
    """uint8 (N, H, W, 3) test images generated by the run's final checkpoint (eval mode, no dropout)."""
    generator, config = load_generator(run_dir, "cpu")
    n = len(batch["source_name"])
    outputs = []
    for start in range(0, n, chunk):
        part = {k: v[start : start + chunk] for k, v in batch.items()}
        outputs.append(to_uint8(generate_batch(generator, config, part, torch.device("cpu"))))
    return np.concatenate(outputs)


def score(generated: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pair SSIM, mask-SSIM and L1 (paper protocol, the authors' test.py) -> {metric: float64 (N,)}."""
    return {
        "ssim": M.ssim(generated, target),
        "mask_ssim": M.ssim(generated, target, mask),
        "l1": M.l1(generated, target),
    }


def mean_and_se(values: np.ndarray) -> tuple[float, float]:
    """(mean, standard error std/sqrt(n)) with the sample std (ddof=1)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def metrics_table(scores: dict[str, dict[str, np.ndarray]]) -> str:
    """Markdown table: one row per candidate, ``mean ± SE`` per metric."""
    arrows = {m: " ↑" if HIGHER_IS_BETTER[m] else " ↓" for m in METRIC_KEYS}
    header = "| | " + " | ".join(METRIC_NAMES[m] + arrows[m] for m in METRIC_KEYS)
    lines = [header + " |", "|---|" + "---|" * len(METRIC_KEYS)]
    for label, per_pair in scores.items():
        cells = ["{:.4f} ± {:.4f}".format(*mean_and_se(per_pair[m])) for m in METRIC_KEYS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def paired_table(scores: dict[str, dict[str, np.ndarray]], reference: str, others: Sequence[str]) -> str:
    """Markdown table of per-pair differences ``other - reference`` (mean ± paired SE, and |t|).

    The same test pairs are scored for every model, so the paired SE (std of the per-pair differences /
    sqrt(n)) is the right yardstick: much of the per-pair variance (hard poses, occlusions) is shared.
    """
    lines = [
        f"| vs {reference} | " + " | ".join(f"Δ {METRIC_NAMES[m]}" for m in METRIC_KEYS) + " |",
        "|---|" + "---|" * len(METRIC_KEYS),
    ]
    for label in others:
        cells = []
        for m in METRIC_KEYS:
            mean, se = mean_and_se(scores[label][m] - scores[reference][m])
            t = abs(mean) / se if se > 0 else float("inf")
            cells.append(f"{mean:+.4f} ± {se:.4f} (\\|t\\| = {t:.1f})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Figure


def _label_bar(text: str, width: int, height: int = 14) -> np.ndarray:
    bar = Image.new("RGB", (width, height), (255, 255, 255))
    ImageDraw.Draw(bar).text((2, 1), text, fill=(0, 0, 0))
    return np.asarray(bar)


def strip_figure(
    source: np.ndarray, target_kp: np.ndarray, target: np.ndarray, generated: dict[str, np.ndarray], rows: int
) -> np.ndarray:
    """uint8 figure: one row per pair (``rows`` pairs spread over the set); columns source | target pose
    skeleton | ground truth | one column per model, a one-line label above each column."""
    height, width = source.shape[1:3]
    columns = {"source": source, "target pose": None, "ground truth": target, **generated}
    gap = 2
    # Spread over the set: consecutive pairs share a person (make_pairs groups them by identity).
    picked = np.unique(np.linspace(0, len(source) - 1, min(rows, len(source))).round().astype(int))
    pieces = []
    for name, images in columns.items():
        cells = []
        for i in picked:
            cell = draw_skeleton(target_kp[i], (height, width)) if images is None else images[i]
            cells.append(np.pad(cell, ((0, gap), (0, 0), (0, 0)), constant_values=255))
        column = np.concatenate(cells)
        column = np.concatenate([_label_bar(_short(name), width), column])
        pieces.append(np.pad(column, ((0, 0), (0, gap), (0, 0)), constant_values=255))
    return np.concatenate(pieces, axis=1)


def _short(label: str) -> str:
    """Column labels that fit 64 px: the part of the label before any parenthesis."""
    return label.split(" (")[0]


# ----------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=None, help="training iterations per model")
    parser.add_argument("--width", type=float, default=None, help="channel multiplier of G and D")
    parser.add_argument("--identities", type=int, default=None, help="synthetic identities (train + test)")
    parser.add_argument("--eval-pairs", type=int, default=None, help="fixed test pairs scored")
    parser.add_argument(
        "--parallel", type=int, default=3, help="models trained at once, 1 thread each (default 3)"
    )
    parser.add_argument("--out", type=Path, default=None, help="work folder (data, runs, results)")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="folder for ablation.md / ablation.png (default: benchmarks/results; with --quick: --out)",
    )
    parser.add_argument("--quick", action="store_true", help="1-2 minute smoke version")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else Settings()
    overrides = {
        "iterations": args.iterations,
        "width": args.width,
        "identities": args.identities,
        "eval_pairs": args.eval_pairs,
    }
    args.settings = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if args.out is None:
        name = "deformgan-ablation-quick" if args.quick else "deformgan-ablation"
        args.out = Path(tempfile.gettempdir()) / name
    if args.results is None:
        args.results = args.out if args.quick else RESULTS
    return args


def _display_path(path: Path) -> str:
    """The path relative to the repository root when inside it (results files must not name this machine)."""
    root = Path(__file__).resolve().parents[1]
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    settings: Settings = args.settings
    out: Path = args.out
    torch.set_num_threads(1)
    started = time.perf_counter()
    command = " ".join(
        [".venv/bin/python benchmarks/ablation.py", shlex.join(sys.argv[1:] if argv is None else argv)]
    ).strip()

    # 1. data
    data_dir = out / "data"
    dataset = write_synthetic_dataset(
        data_dir,
        identities=settings.identities,
        poses_per_identity=settings.poses_per_identity,
        seed=settings.seed,
        progress=False,
        overwrite=True,
    )
    data_s = time.perf_counter() - started

    # 2. training
    vgg = vgg_weights_path()
    variants = variant_configs(settings, vgg)
    aliases = run_aliases(variants)
    train_started = time.perf_counter()
    timings = train_all(variants, aliases, data_dir, out, args.parallel)
    train_s = time.perf_counter() - train_started

    # 3. evaluation on a fixed subset of test pairs
    eval_started = time.perf_counter()
    pairs = fixed_test_pairs(data_dir, settings.eval_pairs, settings.seed)
    batch = load_pairs(data_dir, pairs)
    source = to_uint8(batch["source_image"])
    target = to_uint8(batch["target_image"])
    source_kp, target_kp = batch["source_kp"], batch["target_kp"]
    mask = evaluation_mask(target_kp, source.shape[1:3]).numpy()
    candidates = {
        "copy the source": source,
        "warp-only (source warped by the part affines)": warp_only(
            source, source_kp.numpy(), target_kp.numpy()
        ),
    }
    generated: dict[str, np.ndarray] = {}
    for variant in variants:
        run = aliases[variant.key]
        if run not in generated:
            generated[run] = generate_all(out / "runs" / run, batch)
        candidates[variant.label] = generated[run]
    scores = {label: score(images, target, mask) for label, images in candidates.items()}
    eval_s = time.perf_counter() - eval_started

    figure = strip_figure(
        source,
        target_kp.numpy(),
        target,
        {v.label: generated[aliases[v.key]] for v in variants},
        settings.figure_rows,
    )
    figure = np.kron(figure, np.ones((2, 2, 1), dtype=np.uint8))  # 2x nearest zoom for reading
    total_s = time.perf_counter() - started

    # 4. report
    labels = {v.key: v.label for v in variants}
    model_rows = []
    for variant in variants:
        run = aliases[variant.key]
        timing = timings[run]
        shared = f" (same config as {labels[run]}: its run reused)" if run != variant.key else ""
        objective = variant.config.objective
        model_rows.append(
            f"| {variant.label} | {variant.config.generator.warp_skip} | {objective.reconstruction} | "
            f"{objective.features} | {objective.reconstruction_weight:g} | "
            f"{objective.neighborhood} | {timing['wall_s'] / 60:.1f} min{shared} | "
            f"{timing['s_per_iteration']:.3f} |"
        )
    vgg_note = (
        f"VGG-19 weights found at {vgg}."
        if vgg is not None
        else f"VGG-19 weights ({VGG19_WEIGHTS_FILE}) are missing on this machine, so PercLoss and Full run "
        "their losses on pixels (labelled). PercLoss on pixels (L1, λ = 100, DSC generator) is exactly the "
        "DSC config; training is deterministic, so its run is the DSC run (reused, not retrained)."
    )
    comparisons = [labels["dsc"], labels["percloss"], labels["full"]] if "dsc" in labels else []
    text = "\n".join(
        [
            "## Ablation on synthetic people (exact ground truth)",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine_description()}; {args.parallel} model(s) trained at once, 1 thread each.  ",
            f"Data: `deformgan.synth`, seed {settings.seed}, {settings.identities} identities x "
            f"{settings.poses_per_identity} poses, {PRESET} 128x64 frames; "
            f"train {dataset.num_pairs['train']} pairs ({dataset.num_images['train']} images), "
            f"test {dataset.num_pairs['test']} pairs of held-out "
            f"identities ({dataset.num_images['test']} images), {len(pairs)} of them scored (fixed subset, "
            f"seed {settings.seed}).  ",
            f"Budget (every model): {settings.iterations} iterations, batch {settings.batch_size}, width "
            f"{settings.width} (G and D), seed {settings.seed}, Adam 2e-4 (0.5, 0.999), gan weight 1.  ",
            f"Wall time: data {data_s:.0f} s, training {train_s / 60:.1f} min, generation + scoring "
            f"{eval_s:.0f} s, total {total_s / 60:.1f} min.",
            "",
            vgg_note,
            "",
            "| model | warp_skip | loss | features | λ | n | training wall time | s / iteration |",
            "|---|---|---|---|---|---|---|---|",
            *model_rows,
            "",
            f"### Scores on {len(pairs)} test pairs (mean ± standard error std/√n)",
            "",
            "SSIM / mask-SSIM: the paper's protocol (skimage Gaussian SSIM, data_range of the generated "
            "image; mask = Ma et al. mask of the target pose). "
            "L1: mean |target − generated| in [-1, 1] units.",
            "",
            metrics_table(scores),
            f"### Paired differences against the Baseline (same {len(pairs)} pairs)",
            "",
            "|t| = |mean difference| / paired SE; |t| > 2 is significant at about 5 %.",
            "",
            paired_table(scores, labels.get("baseline", next(iter(scores))), comparisons),
            f"Figure: `{_display_path(args.results / 'ablation.png')}` "
            "(rows: test pairs; columns: source | target pose | "
            "ground truth | " + " | ".join(_short(v.label) for v in variants) + ").",
            "",
        ]
    )
    print(text)
    atomic_write_text(args.results / "ablation.md", text)
    write_image(figure, args.results / "ablation.png")
    raw = {
        "settings": dataclasses.asdict(settings),
        "timings": timings,
        "pairs": pairs,
        "scores": {label: {m: v.tolist() for m, v in per_pair.items()} for label, per_pair in scores.items()},
    }
    atomic_write_text(out / "ablation.json", json.dumps(raw) + "\n")
    return {"scores": scores, "timings": timings, "text": text, "out": out}


if __name__ == "__main__":
    main()

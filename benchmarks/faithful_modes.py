"""Do deformgan's faithful-to-Keras modes matter? Two measurements.

1. Training from scratch on synthetic people (default mode). The authors' pipeline differs from a clean
   re-implementation in two places that change training but not the architecture: the heatmaps are
   ``exp(floor(-d^2 / 72))`` (Python 2 floor division; ``conditioning.heatmaps: reference``) instead of the
   smooth Gaussian, and TF 1.x back-propagates through the warp by resampling the output gradient with the
   inverse transform (``generator.warp_gradient: tf``) instead of the exact adjoint. This trains the
   DSC/Full-like synthetic config (``configs/synth-full.yaml``: deformable skips, NN loss on pixels) with
   benchmarks/ablation.py's machinery (same data writer, budget, fixed test pairs, scores) four times:

   * ``baseline``: gaussian heatmaps, exact warp gradient, seed 0;
   * ``heatmaps-reference``: the baseline with ``conditioning.heatmaps=reference`` (same seed);
   * ``warp-tf``: the baseline with ``generator.warp_gradient=tf`` (same seed);
   * ``seed-control``: the baseline with ``train.seed=1`` -- what changing nothing but the training seed
     does, the yardstick for reading the other two differences (paired test-pair SEs do not include
     seed-to-seed variance of training).

   Each is scored on the same fixed test pairs (SSIM, mask-SSIM, L1 against the exact ground truth), and
   the paired differences against the baseline are reported with their standard errors.

2. ``--vgg-calibration KERAS_H5 TORCHVISION_PTH``: how the paper's lambdas (0.01 for the NN loss on conv1_2,
   0.5 for L1 on conv2_1, tuned on Keras' caffe-style VGG-19) translate to torchvision's VGG-19 with
   ImageNet mean/std preprocessing. On the 200 real test pairs of ``shared/data/triplets`` (the authors'
   generated image vs the real target; Market 128x64, DeepFashion 256x256) it measures each loss with
   both networks, and states

       r = mean_pairs L_keras(generated, target) / mean_pairs L_torchvision(generated, target)
       lambda_torchvision = r * lambda_keras       (equal mean reconstruction term at the authors' outputs)

   and, as a second view of the same question, the ratio of the mean gradient norms
   ``|dL/d generated|`` (what the generator's update actually feels). Both weights files must be given;
   neither can be downloaded on the machines this project runs on, so no such number is claimed without
   them.

    .venv/bin/python benchmarks/faithful_modes.py --parallel 4    # the training comparison (~45 min, 2 cores)
    .venv/bin/python benchmarks/faithful_modes.py --quick --out /tmp/faithful-quick   # 1-2 min smoke run
    .venv/bin/python benchmarks/faithful_modes.py --vgg-calibration \\
        vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 vgg19-dcbb9e9d.pth [--shared ../shared]
    .venv/bin/python benchmarks/faithful_modes.py --warp-cost     # what the TF-style backward costs (~1 min)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from deformgan.atomic import atomic_write_text
from deformgan.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ablation  # noqa: E402  (benchmarks/ablation.py: data, budgets, training, scoring)
from machine import machine_description  # noqa: E402  (benchmarks/machine.py)

RESULTS = Path(__file__).resolve().parent / "results"
METRIC = "mask_ssim"


def _command(argv: Sequence[str] | None) -> str:
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join([".venv/bin/python benchmarks/faithful_modes.py", shlex.join(args)]).strip()


# ----------------------------------------------------------------------------------------------
# 1. Training from scratch


DEFAULT = dataclasses.replace(ablation.Settings(), iterations=1200)
QUICK = dataclasses.replace(ablation.QUICK, iterations=30)


def variants(settings: ablation.Settings) -> list[ablation.Variant]:
    """Baseline (the synth-full config with the ablation's budget overrides) and its three modifications."""
    full = next(v for v in ablation.variant_configs(settings, None) if v.key == "full").config
    base = full.replace(
        name="faithful-baseline",
        conditioning=dataclasses.replace(full.conditioning, heatmaps="gaussian"),
        generator=dataclasses.replace(full.generator, warp_gradient="exact"),
    )

    def changed(name: str, **sections) -> Config:
        return base.replace(name=f"faithful-{name}", **sections)

    return [
        ablation.Variant("baseline", "baseline (gaussian heatmaps, exact warp gradient, seed 0)", base),
        ablation.Variant(
            "heatmaps-reference",
            "heatmaps: reference",
            changed(
                "heatmaps-reference",
                conditioning=dataclasses.replace(base.conditioning, heatmaps="reference"),
            ),
        ),
        ablation.Variant(
            "warp-tf",
            "warp_gradient: tf",
            changed("warp-tf", generator=dataclasses.replace(base.generator, warp_gradient="tf")),
        ),
        ablation.Variant(
            "seed-control",
            "seed control (baseline, train.seed + 1)",
            changed("seed-control", train=dataclasses.replace(base.train, seed=base.train.seed + 1)),
        ),
    ]


def run_training(args: argparse.Namespace, argv: Sequence[str] | None) -> dict:
    settings: ablation.Settings = args.settings
    out: Path = args.out
    torch.set_num_threads(1)
    started = time.perf_counter()
    data_dir = out / "data"
    dataset = ablation.write_synthetic_dataset(
        data_dir,
        identities=settings.identities,
        poses_per_identity=settings.poses_per_identity,
        seed=settings.seed,
        progress=False,
        overwrite=True,
    )
    runs = variants(settings)
    aliases = {v.key: v.key for v in runs}
    train_started = time.perf_counter()
    timings = ablation.train_all(runs, aliases, data_dir, out, args.parallel)
    train_s = time.perf_counter() - train_started

    pairs = ablation.fixed_test_pairs(data_dir, settings.eval_pairs, settings.seed)
    batch = ablation.load_pairs(data_dir, pairs)
    target = ablation.to_uint8(batch["target_image"])
    mask = ablation.evaluation_mask(batch["target_kp"], target.shape[1:3]).numpy()
    scores = {
        v.label: ablation.score(ablation.generate_all(out / "runs" / v.key, batch), target, mask)
        for v in runs
    }
    total_s = time.perf_counter() - started

    labels = [v.label for v in runs]
    rows = []
    for v in runs:
        t = timings[v.key]
        rows.append(
            f"| {v.label} | {v.config.conditioning.heatmaps} | {v.config.generator.warp_gradient} | "
            f"{v.config.train.seed} | {t['wall_s'] / 60:.1f} min | {t['s_per_iteration']:.3f} | "
            f"{t['final_rec']:.4f} |"
        )
    text = "\n".join(
        [
            "## Faithful modes on synthetic people: do they change training from scratch?",
            "",
            f"Command: `{_command(argv)}`  ",
            f"Machine: {machine_description()} (shared with other jobs); {args.parallel} model(s) trained "
            "at once, 1 thread each.  ",
            "Config: `configs/synth-full.yaml` (deformable skips, NN loss on pixels n = 3, lambda 33.3) "
            f"with benchmarks/ablation.py's overrides: {settings.iterations} iterations, batch "
            f"{settings.batch_size}, width {settings.width} (G and D), Adam 2e-4 (0.5, 0.999).  ",
            f"Data: `deformgan.synth`, seed {settings.seed}, {settings.identities} identities x "
            f"{settings.poses_per_identity} poses (train {dataset.num_pairs['train']} pairs, test "
            f"{dataset.num_pairs['test']} pairs of held-out identities, {len(pairs)} scored: a fixed "
            "subset).  ",
            f"Wall time: training {train_s / 60:.1f} min, total {total_s / 60:.1f} min.",
            "",
            "| run | heatmaps | warp_gradient | seed | training wall time | s / iteration | "
            "last logged L_rec |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"### Scores on {len(pairs)} test pairs (mean ± standard error std/√n)",
            "",
            ablation.metrics_table(scores),
            f"### Paired differences against the baseline (same {len(pairs)} pairs)",
            "",
            "Δ = run − baseline per test pair, mean ± paired SE; |t| = |mean| / SE. The paired SE measures "
            "test-pair noise only: the seed-control row shows how far two trainings of the SAME config "
            "drift apart, which is the yardstick for the other rows.",
            "",
            ablation.paired_table(scores, labels[0], labels[1:]),
        ]
    )
    print(text)
    atomic_write_text(args.results / "faithful_modes.md", text)
    raw = {
        "settings": dataclasses.asdict(settings),
        "timings": timings,
        "pairs": pairs,
        "scores": {label: {m: v.tolist() for m, v in per.items()} for label, per in scores.items()},
    }
    atomic_write_text(out / "faithful_modes.json", json.dumps(raw) + "\n")
    return {"scores": scores, "timings": timings, "text": text}


# ----------------------------------------------------------------------------------------------
# 2. VGG-19 lambda calibration (Keras caffe-style vs torchvision)

#: Paper losses on VGG features: (label, layer, reconstruction, lambda, NN window per dataset)
VGG_LOSSES = (
    ("Full: NN loss on conv1_2", "conv1_2", "nn", 0.01, {"market": 3, "deepfashion": 5}),
    ("PercLoss: L1 on conv2_1", "conv2_1", "l1", 0.5, {"market": 1, "deepfashion": 1}),
)


def read_triplets(shared: Path, limit: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{dataset: (generated, target) uint8 (N, H, W, 3)} from the strips [source | target | generated]
    (the first ``limit`` files per dataset in name order, or all)."""
    from PIL import Image

    out = {}
    for name in ("market", "deepfashion"):
        files = sorted((shared / "data" / "triplets" / name).glob("*.png"))[:limit]
        if not files:
            raise SystemExit(f"no triplets in {shared / 'data' / 'triplets' / name}")
        strips = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
        width = strips.shape[2] // 3
        out[name] = (strips[:, :, 2 * width :], strips[:, :, width : 2 * width])
    return out


def loss_statistics(
    vgg: torch.nn.Module, generated: np.ndarray, target: np.ndarray, reconstruction: str, neighborhood: int
) -> dict[str, float]:
    """Mean (and SE) over pairs of the unweighted loss and of the gradient norm |dL/d generated| (pixels in
    [-1, 1]), one pair at a time (the losses are means over each pair's own elements)."""
    from deformgan.losses import l1_loss, nn_loss

    losses, grads = [], []
    for g8, t8 in zip(generated, target, strict=True):
        g = (torch.from_numpy(g8).permute(2, 0, 1)[None].float() / 127.5 - 1).requires_grad_(True)
        t = torch.from_numpy(t8).permute(2, 0, 1)[None].float() / 127.5 - 1
        fg = vgg(g)[0]
        with torch.no_grad():
            ft = vgg(t)[0]
        loss = l1_loss(fg, ft) if reconstruction == "l1" else nn_loss(fg, ft, neighborhood, "mean")
        (grad,) = torch.autograd.grad(loss, g)
        losses.append(float(loss.detach()))
        grads.append(float(grad.norm()))
    mean_loss, se_loss = ablation.mean_and_se(np.array(losses))
    mean_grad, se_grad = ablation.mean_and_se(np.array(grads))
    return {"loss": mean_loss, "loss_se": se_loss, "grad": mean_grad, "grad_se": se_grad, "n": len(losses)}


def calibration_rows(
    triplets: dict[str, tuple[np.ndarray, np.ndarray]], keras_h5: Path, torchvision_pth: Path
) -> list[dict]:
    """One row per (dataset, paper loss): both networks' statistics, r and the translated lambda."""
    from deformgan.vgg import VGG19Features

    rows = []
    for label, layer, reconstruction, lam, windows in VGG_LOSSES:
        keras = VGG19Features([layer], weights=keras_h5, preprocess="keras-reference")
        tv = VGG19Features([layer], weights=torchvision_pth, preprocess="torchvision")
        for dataset, (generated, target) in triplets.items():
            n = windows[dataset]
            k = loss_statistics(keras, generated, target, reconstruction, n)
            t = loss_statistics(tv, generated, target, reconstruction, n)
            r_loss, r_grad = k["loss"] / t["loss"], k["grad"] / t["grad"]
            rows.append(
                {
                    "loss": label,
                    "dataset": dataset,
                    "n": n,
                    "lambda_keras": lam,
                    "keras": k,
                    "torchvision": t,
                    "r_loss": r_loss,
                    "r_grad": r_grad,
                    "lambda_tv_loss": lam * r_loss,
                    "lambda_tv_grad": lam * r_grad,
                    "keras_source": keras.describe(),
                    "torchvision_source": tv.describe(),
                }
            )
    return rows


def run_calibration(args: argparse.Namespace, argv: Sequence[str] | None) -> dict:
    keras_h5, torchvision_pth = (Path(p) for p in args.vgg_calibration)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    triplets = read_triplets(args.shared, args.max_pairs)
    rows = calibration_rows(triplets, keras_h5, torchvision_pth)
    lines = [
        "## VGG-19 lambda calibration: Keras (caffe-style) vs torchvision",
        "",
        f"Command: `{_command(argv)}`  ",
        f"Machine: {machine_description()}; {time.perf_counter() - started:.0f} s.  ",
        f"Networks: {rows[0]['keras_source']}; {rows[0]['torchvision_source']}.  ",
        "Pairs: the authors' generated image vs the real target, "
        + ", ".join(f"{name} {len(g)}" for name, (g, _) in triplets.items())
        + " (shared/data/triplets).",
        "",
        "r = mean L_keras / mean L_torchvision; λ_torchvision = r · λ_keras gives the reconstruction term "
        "the same mean value at the authors' outputs. r_grad uses the mean gradient norm |dL/dx| instead.",
        "",
        "| loss | data | n | L keras | L torchvision | r | λ torchvision | r_grad | λ (grad) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        k, t = row["keras"], row["torchvision"]
        lines.append(
            f"| {row['loss']} (λ = {row['lambda_keras']:g}) | {row['dataset']} | {row['n']} | "
            f"{k['loss']:.4g} ± {k['loss_se']:.2g} | {t['loss']:.4g} ± {t['loss_se']:.2g} | "
            f"{row['r_loss']:.4g} | {row['lambda_tv_loss']:.4g} | {row['r_grad']:.4g} | "
            f"{row['lambda_tv_grad']:.4g} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.calibration_out is not None:
        atomic_write_text(args.calibration_out, text)
    return {"rows": rows, "text": text}


# ----------------------------------------------------------------------------------------------
# 3. What the TF-style backward costs


def run_warp_cost(args: argparse.Namespace, argv: Sequence[str] | None) -> dict:
    """Forward + backward of the deformable skip at the four warped levels of the full-width Market
    generator (64, 128, 256, 512 channels at strides 1, 2, 4, 8), batch 4, on the real part geometry of the
    Keras fixture's two Market samples (repeated), exact vs TF-style backward; median of ``--repeats``."""
    from deformgan.warp import deform

    torch.set_num_threads(args.threads)
    fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "keras" / "warp_grad.npz"
    with np.load(fixture) as z:
        affines, masks = z["affines8"], z["masks"]
    theta = torch.from_numpy(affines[..., :6].reshape(2, 10, 2, 3).astype(np.float32)).repeat(2, 1, 1, 1)
    masks = torch.from_numpy(masks.astype(np.float32)).repeat(2, 1, 1, 1)
    gen = torch.Generator().manual_seed(0)
    rows, totals = [], {"exact": 0.0, "tf": 0.0}
    for stride, channels in ((1, 64), (2, 128), (4, 256), (8, 512)):
        features = torch.randn(4, channels, 128 // stride, 64 // stride, generator=gen)
        upstream = torch.randn(features.shape, generator=gen)
        times = {}
        for gradient in ("exact", "tf"):
            samples = []
            for _ in range(args.repeats):
                leaf = features.clone().requires_grad_(True)
                started = time.perf_counter()
                deform(leaf, theta, None, masks, gradient=gradient).backward(upstream)
                samples.append(time.perf_counter() - started)
            times[gradient] = float(np.median(samples))
            totals[gradient] += times[gradient]
        rows.append(
            f"| {stride} | {channels} | {times['exact'] * 1e3:.1f} | {times['tf'] * 1e3:.1f} | "
            f"{times['tf'] / times['exact']:.2f} |"
        )
    text = "\n".join(
        [
            "## Cost of the TF-style warp backward",
            "",
            f"Command: `{_command(argv)}`  ",
            f"Machine: {machine_description()} (shared with other jobs), {args.threads} thread(s); median of "
            f"{args.repeats} forward + backward passes of `deform` (batch 4, 10 parts, max, nearest; the "
            "real part geometry of the two Market samples of tests/fixtures/keras/warp_grad.npz).",
            "",
            "| stride | channels | exact (ms) | tf (ms) | tf / exact |",
            "|---|---|---|---|---|",
            *rows,
            f"| all four levels | | {totals['exact'] * 1e3:.1f} | {totals['tf'] * 1e3:.1f} | "
            f"{totals['tf'] / totals['exact']:.2f} |",
            "",
        ]
    )
    print(text)
    return {"text": text, "totals": totals}


# ----------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=None, help="training iterations per model")
    parser.add_argument("--eval-pairs", type=int, default=None, help="fixed test pairs scored")
    parser.add_argument("--parallel", type=int, default=2, help="models trained at once, 1 thread each")
    parser.add_argument("--out", type=Path, default=None, help="work folder (data, runs)")
    parser.add_argument("--results", type=Path, default=None, help="folder for faithful_modes.md")
    parser.add_argument("--quick", action="store_true", help="1-2 minute smoke version")
    parser.add_argument(
        "--vgg-calibration",
        nargs=2,
        metavar=("KERAS_H5", "TORCHVISION_PTH"),
        default=None,
        help="measure the lambda ratio of the two VGG-19 networks instead of training",
    )
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--calibration-out", type=Path, default=None, help="write the calibration table here")
    parser.add_argument("--warp-cost", action="store_true", help="time the exact vs TF-style warp backward")
    parser.add_argument("--repeats", type=int, default=5, help="--warp-cost repetitions (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the two other modes")
    parser.add_argument(
        "--max-pairs", type=int, default=None, help="--vgg-calibration on the first N pairs per dataset only"
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else DEFAULT
    overrides = {"iterations": args.iterations, "eval_pairs": args.eval_pairs}
    args.settings = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    if args.out is None:
        args.out = Path(tempfile.gettempdir()) / (
            "deformgan-faithful-quick" if args.quick else "deformgan-faithful"
        )
    if args.results is None:
        args.results = args.out if args.quick else RESULTS
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.vgg_calibration is not None:
        return run_calibration(args, argv)
    if args.warp_cost:
        return run_warp_cost(args, argv)
    return run_training(args, argv)


if __name__ == "__main__":
    main()

"""Training throughput on a CUDA device, and a check that the GPU step computes what the CPU step computes.

Usage (a machine with a CUDA GPU; a few minutes)::

    python benchmarks/gpu.py [--out benchmarks/results/gpu.md]
    python benchmarks/gpu.py --device cpu --smoke        # what CI runs: every code path, tiny sizes

For Market Full (128x64, batch 4) and DeepFashion Full (256x256) at full width, one training iteration of
deformgan's loop (a D step on real and generated pairs from different batches, then a G step with the
nearest-neighbour loss on VGG-19 conv1_2) is timed in fp32, bf16 autocast, channels_last and
``torch.compile``, each alone and combined: iterations/s at batch 4, images/s at the largest batch that
fits (doubling until out of memory), and the peak GPU memory. The batches are synthetic people
(``deformgan.synth``): the speed depends on shapes, not on content. Without VGG-19 weights the loss's VGG
runs with random weights, which costs exactly as much; the results say which. The correctness check runs
one iteration on a fixed batch on the CPU and on the device (fp32) and compares the logged losses.
Target: the paper's Market schedule (90k iterations at batch 4) in under an hour, >= 25 it/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_description  # noqa: E402

from deformgan.atomic import atomic_write_text  # noqa: E402
from deformgan.config import find_config, load_config  # noqa: E402
from deformgan.images import from_uint8  # noqa: E402
from deformgan.pretrained import MissingWeightsError, find_weights  # noqa: E402
from deformgan.synth import render_sample  # noqa: E402
from deformgan.train.distributed import Distributed  # noqa: E402
from deformgan.train.loop import discriminator_step, generator_step  # noqa: E402
from deformgan.train.setup import build_networks  # noqa: E402
from deformgan.vgg import VGG19_WEIGHTS_FILE  # noqa: E402

MODES = {
    "fp32": {},
    "bf16": {"amp": "bf16"},
    "channels_last": {"channels_last": True},
    "compile": {"compile": True},
    "bf16+channels_last": {"amp": "bf16", "channels_last": True},
    "bf16+channels_last+compile": {"amp": "bf16", "channels_last": True, "compile": True},
}


def vgg_weights(folder: Path) -> tuple[Path, str]:
    """The real VGG-19 file when present, else a random one written for timing (said in the results)."""
    try:
        return find_weights(VGG19_WEIGHTS_FILE), "torchvision ImageNet weights"
    except MissingWeightsError:
        import torchvision

        torch.manual_seed(0)
        path = folder / VGG19_WEIGHTS_FILE
        torch.save(torchvision.models.vgg19(weights=None).state_dict(), path)
        return path, "RANDOM weights (timing only: the cost does not depend on the values)"


def make_config(name: str, vgg: Path, smoke: bool, batch: int, mode: dict):
    config = load_config(find_config(name))
    objective = replace(config.objective, vgg_weights=str(vgg))
    train = replace(
        config.train,
        batch_size=batch,
        amp=mode.get("amp", "off"),
        channels_last=mode.get("channels_last", False),
    )
    config = config.replace(objective=objective, train=train)
    if smoke:  # every code path at a toy size: 1/16 width, Market's frame
        config = config.replace(
            generator=replace(config.generator, width=0.0625),
            discriminator=replace(config.discriminator, width=0.0625),
            data=replace(config.data, preset="market"),
        )
    return config


def synthetic_batches(config, batch: int, device: torch.device, count: int = 3, seed: int = 0) -> list[dict]:
    """``count`` batches of synthetic people at the config's size (source/target of one identity)."""
    height, width = config.image_size
    batches = []
    for b in range(count):
        items = []
        for i in range(batch):
            identity = seed * 1000 + b * batch + i
            a, t = (
                render_sample(0, identity, 0, (height, width)),
                render_sample(0, identity, 1, (height, width)),
            )
            items.append((a, t))
        batches.append(
            {
                "source_image": from_uint8(np.stack([a.image for a, _ in items])).to(device),
                "target_image": from_uint8(np.stack([t.image for _, t in items])).to(device),
                "source_kp": torch.from_numpy(np.stack([a.keypoints for a, _ in items])).float().to(device),
                "target_kp": torch.from_numpy(np.stack([t.keypoints for _, t in items])).float().to(device),
            }
        )
    return batches


def one_iteration(nets, config, batches, device) -> dict[str, float]:
    terms = discriminator_step(nets, config, batches[0], batches[1], device)
    terms |= generator_step(nets, config, batches[2], device)
    return {k: float(v) for k, v in terms.items()}


def prepare(config, device: torch.device, mode: dict):
    nets = build_networks(config, device, Distributed(), None)
    if mode.get("compile"):
        nets.generator = torch.compile(nets.generator)
        nets.discriminator = torch.compile(nets.discriminator)
        nets.g_model, nets.d_model = nets.generator, nets.discriminator
    return nets


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_mode(
    name: str, vgg: Path, mode: dict, batch: int, device: torch.device, iterations: int, smoke: bool
) -> dict:
    config = make_config(name, vgg, smoke, batch, mode)
    nets = prepare(config, device, mode)
    batches = synthetic_batches(config, batch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warmup = 3 if mode.get("compile") else 1
    for _ in range(warmup):
        one_iteration(nets, config, batches, device)
    synchronise(device)
    start = time.perf_counter()
    for _ in range(iterations):
        one_iteration(nets, config, batches, device)
    synchronise(device)
    seconds = (time.perf_counter() - start) / iterations
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"it_per_s": 1 / seconds, "images_per_s": batch / seconds, "peak_gib": peak}


def largest_batch(
    name: str, vgg: Path, mode: dict, device: torch.device, smoke: bool, limit: int
) -> tuple[int, dict]:
    """Double the batch until out of memory (or ``limit``); time the largest that ran."""
    best, result, batch = 4, None, 4
    while batch <= limit:
        try:
            result = time_mode(name, vgg, mode, batch, device, 3, smoke)
            best = batch
        except torch.OutOfMemoryError:
            break
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        batch *= 2
    return best, result


def check_against_cpu(name: str, vgg: Path, device: torch.device, smoke: bool) -> dict:
    """One fp32 iteration on the same batch and weights on the CPU and on ``device`` -> max |difference|."""
    config = make_config(name, vgg, smoke, 2, {})
    losses = {}
    for where in (torch.device("cpu"), device):
        nets = prepare(config, where, {})  # the same initial weights (seeded, built on the CPU)
        nets.generator.eval()  # dropout off: CPU and CUDA draw different masks from the same seed
        losses[where.type] = one_iteration(nets, config, synthetic_batches(config, 2, where), where)
    cpu, dev = losses["cpu"], losses[device.type]
    return {k: {"cpu": cpu[k], device.type: dev[k], "abs_diff": abs(cpu[k] - dev[k])} for k in cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny widths and iterations: checks every path")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu.md")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device here (use --device cpu --smoke for a check)")
    iterations = 2 if args.smoke else args.iterations
    modes = {k: v for k, v in MODES.items() if not (args.smoke and device.type == "cpu" and v.get("compile"))}
    rows, checks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        vgg, vgg_note = vgg_weights(Path(tmp))
        for name in ("market-full", "fashion-full"):
            checks[name] = check_against_cpu(name, vgg, device, args.smoke)
            for label, mode in modes.items():
                timed = time_mode(name, vgg, mode, 4, device, iterations, args.smoke)
                best, at_best = (
                    (4, timed)
                    if args.smoke
                    else largest_batch(name, vgg, mode, device, args.smoke, args.max_batch)
                )
                rows.append((name, label, timed, best, at_best))
                speed = f"{timed['it_per_s']:.2f} it/s at batch 4"
                print(
                    f"{name} {label}: {speed}; {at_best['images_per_s']:.1f} img/s at batch {best}",
                    flush=True,
                )
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    lines = [
        "# GPU training throughput (benchmarks/gpu.py)",
        "",
        f"Command: `python benchmarks/gpu.py --device {args.device}{' --smoke' if args.smoke else ''}`",
        "",
        f"Machine: {device_name}; {machine_description()}. VGG-19 for the NN loss: {vgg_note}."
        + (
            " SMOKE RUN: 1/16 width at 128x64, 2 iterations: checks the code paths, not the speed."
            if args.smoke
            else ""
        ),
        "",
        "| config | mode | it/s (batch 4) | peak GiB (batch 4) | largest batch | images/s there |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, label, timed, best, at_best in rows:
        peak = f"{timed['peak_gib']:.2f}" if timed["peak_gib"] is not None else "n/a"
        speed, throughput = f"{timed['it_per_s']:.2f}", f"{at_best['images_per_s']:.1f}"
        lines.append(f"| {name} | {label} | {speed} | {peak} | {best} | {throughput} |")
    lines += ["", "Correctness: one fp32 iteration on the same batch and initial weights, CPU vs device:", ""]
    for name, terms in checks.items():
        worst = max(v["abs_diff"] for v in terms.values())
        lines.append(f"- {name}: max |difference| of the logged losses {worst:.2e} ({json.dumps(terms)})")
    lines += ["", "Target (issue): Market Full >= 25 it/s at batch 4 = 90k iterations in under an hour.", ""]
    atomic_write_text(args.out, "\n".join(lines))
    atomic_write_text(
        args.out.with_suffix(".json"),
        json.dumps({"rows": [r[:2] + (r[2], r[3], r[4]) for r in rows], "checks": checks}, indent=1),
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

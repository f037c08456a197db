"""Cost of the deformable skip connection and of the part geometry (the authors' ``AffineTransformLayer``,
``concatenate_skips``).

Compares, at Market size (128x64), full width, batch 4:

* the DSC generator (``warp_skip="mask"``) with the same two-stream generator whose skips are plainly
  concatenated (``deform`` replaced by the identity), forward (eval, no grad) and forward+backward (train);
* ``pose_conditioning`` for the batch (heatmaps + 10 part affines + 10 masks) with one training step
  (G forward+backward + D forward+backward).

Repetitions of the compared variants are interleaved and the median is reported. Prints a Markdown table;
``--out FILE`` also writes it (atomically) with the command and the machine.

    .venv/bin/python benchmarks/dsc_overhead.py --repeats 7 --out benchmarks/results/dsc_overhead.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

from deformgan.atomic import atomic_write_text
from deformgan.conditioning import pose_conditioning
from deformgan.models import Discriminator, Generator

SIZE = (128, 64)
BATCH = 4
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


class PlainSkipGenerator(Generator):
    """The two-stream DSC generator with ``deform`` replaced by the identity: plain concat at every level."""

    def fuse_skips(self, appearance, pose, cond):
        return [torch.cat([a, p], dim=1) for a, p in zip(appearance, pose, strict=True)]


def market_keypoints() -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first BATCH Market test pairs (real OpenPose keypoints) when ../shared is present, else a fixed
    hand-made standing pose shifted per sample (the cost does not depend on the values)."""
    from deformgan.keypoints import read_annotations, read_pairs

    annotations = SHARED / "data/annotations/market-annotation-test.csv"
    pairs = SHARED / "data/annotations/market-pairs-test.csv"
    if annotations.is_file() and pairs.is_file():
        kp = read_annotations(annotations)
        chosen = [p for p in read_pairs(pairs) if p[0] in kp and p[1] in kp][:BATCH]
        source = torch.from_numpy(np.stack([kp[a] for a, _ in chosen])).float()
        target = torch.from_numpy(np.stack([kp[b] for _, b in chosen])).float()
        return source, target, "first 4 pairs of ../shared market-pairs-test.csv"
    stand = torch.tensor(
        [[32, 20], [32, 30], [24, 30], [20, 50], [18, 68], [40, 30], [44, 50], [46, 68], [27, 66],
         [27, 92], [27, 118], [37, 66], [37, 92], [37, 118], [30, 17], [34, 17], [28, 18], [36, 18]],
        dtype=torch.float32,
    )  # fmt: skip
    shifts = torch.arange(BATCH, dtype=torch.float32).view(BATCH, 1, 1)
    return stand + shifts, stand - shifts, "hand-made standing pose"


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def run(repeats: int, threads: int | None, clock: str = "wall") -> tuple[str, dict[str, float]]:
    """Time every case ``repeats`` times, interleaved; ``clock`` "wall" (perf_counter) or "cpu" (this
    process's CPU time: robust to other processes sharing the cores, meaningful with one thread)."""
    timer = time.perf_counter if clock == "wall" else time.process_time
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    source_kp, target_kp, kp_origin = market_keypoints()
    cond = pose_conditioning(source_kp, target_kp, SIZE, "mask")

    dsc = Generator(SIZE, warp_skip="mask")
    plain = PlainSkipGenerator(SIZE, warp_skip="mask")
    plain.load_state_dict(dsc.state_dict())
    disc = Discriminator(SIZE)
    source = torch.rand(BATCH, 3, *SIZE) * 2 - 1
    target = torch.rand(BATCH, 3, *SIZE) * 2 - 1

    def forward(gen: Generator) -> None:
        gen.eval()
        with torch.no_grad():
            gen(source, cond)

    def forward_backward(gen: Generator) -> None:
        gen.train()
        gen.zero_grad(set_to_none=True)
        gen(source, cond).mean().backward()

    def train_step() -> None:
        # One G and one D update's worth of compute (optimiser steps excluded: a few ms).
        dsc.train()
        fake = dsc(source, cond)
        disc(source, cond.source_heatmaps, fake, cond.target_heatmaps).mean().backward()
        disc.zero_grad(set_to_none=True)
        real = disc(source, cond.source_heatmaps, target, cond.target_heatmaps)
        fake_logits = disc(source, cond.source_heatmaps, fake.detach(), cond.target_heatmaps)
        (real.mean() - fake_logits.mean()).backward()

    def geometry() -> None:
        pose_conditioning(source_kp, target_kp, SIZE, "mask")

    # key: (table label, callable, baseline key for the ratio column or None)
    cases = {
        "fwd_plain": ("G forward, plain skips", lambda: forward(plain)),
        "fwd_dsc": ("G forward, DSC", lambda: forward(dsc)),
        "fwdbwd_plain": ("G forward+backward, plain skips", lambda: forward_backward(plain)),
        "fwdbwd_dsc": ("G forward+backward, DSC", lambda: forward_backward(dsc)),
        "step": ("training step (G fwd+bwd, D fwd+bwd)", train_step),
        "geometry": (f"pose_conditioning, batch {BATCH}", geometry),
    }
    samples: dict[str, list[float]] = {key: [] for key in cases}
    for _, fn in cases.values():  # warm-up
        fn()
    for _ in range(repeats):
        for key, (_, fn) in cases.items():
            start = timer()
            fn()
            samples[key].append(timer() - start)
    med = {key: median_ms(s) for key, s in samples.items()}
    extra = {
        "fwd_plain": ("1.00", ""),
        "fwd_dsc": (f"{med['fwd_dsc'] / med['fwd_plain']:.2f}x", "<= 1.25x"),
        "fwdbwd_plain": ("1.00", ""),
        "fwdbwd_dsc": (f"{med['fwdbwd_dsc'] / med['fwdbwd_plain']:.2f}x", "<= 1.25x"),
        "step": ("", ""),
        "geometry": (f"{100 * med['geometry'] / med['step']:.1f}% of a step", "<= 5%"),
    }
    lines = [
        f"Market {SIZE[0]}x{SIZE[1]}, full width, batch {BATCH}, CPU, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}, {clock} clock, {repeats} interleaved repetitions, median; "
        f"keypoints: {kp_origin}; load average at the end: {os.getloadavg()[0]:.1f}.",
        "",
        "| measurement | median ms | ratio / share | target |",
        "|---|---:|---:|---:|",
    ]
    for key, (label, _) in cases.items():
        lines.append(f"| {label} | {med[key]:.1f} | {extra[key][0]} | {extra[key][1]} |")
    return "\n".join(lines) + "\n", med


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall or process CPU time")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    args = parser.parse_args(argv)
    table, _ = run(args.repeats, args.threads, args.clock)
    print(table)
    if args.out is not None:
        command = " ".join([".venv/bin/python", "benchmarks/dsc_overhead.py", *(argv or sys.argv[1:])])
        header = (
            "# DSC overhead\n\n"
            f"Command: `{command}`\n\nMachine: {cpu_model()}, {os.cpu_count()} logical CPUs.\n\n"
        )
        atomic_write_text(args.out, header + table)


if __name__ == "__main__":
    main()

"""Synthetic-people generation speed on one core: images/s for render only and render + PNG write.

Usage: ``python benchmarks/synth_speed.py [--images 600] [--out benchmarks/results/synth_speed.md]``
Pins the process to one CPU (``os.sched_setaffinity``) and one BLAS/OpenMP thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

from deformgan.synth import render_sample, write_synthetic_dataset  # noqa: E402
from deformgan.synth.render import make_cameras  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def render_rate(size: tuple[int, int], images: int) -> float:
    """Images/s of :func:`render_sample` alone (array in memory), after a warm-up image."""
    cameras = make_cameras(0)
    render_sample(0, 1, 0, size, cameras)
    start = time.perf_counter()
    for k in range(images):
        render_sample(0, 1 + k // 8, k % 8, size, cameras)
    return images / (time.perf_counter() - start)


def write_rate(size: tuple[int, int], images: int) -> float:
    """Images/s of :func:`write_synthetic_dataset` end to end (PNGs, CSVs, pairs, synth.json)."""
    identities = max(2, images // 8)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_synthetic_dataset(tmp, identities=identities, poses_per_identity=8, size=size, progress=False)
        return identities * 8 / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "synth_speed.md")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rows = []
    for size in ((128, 64), (256, 256)):
        n = args.images if size == (128, 64) else max(args.images // 4, 16)
        rows.append((size, render_rate(size, n), write_rate(size, n), n))
    lines = [
        "# Synthetic-people generation speed (one CPU core)",
        "",
        f"Command: `python benchmarks/synth_speed.py --images {args.images}`  ",
        f"Machine: {cpu_model()}, pinned to 1 core, numpy single-threaded.",
        "",
        "| size (HxW) | images timed | render only (img/s) | render + write dataset (img/s) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {h}x{w} | {n} | {r:.0f} | {wr:.0f} |" for (h, w), r, wr, n in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: nearest-neighbour loss (fast ``nn_loss`` vs the literal n^2-shift algorithm) against plain L1.

Times forward + backward of three losses on the same tensors: ``deformgan.losses.nn_loss``,
``deformgan.losses.nn_loss_reference`` (the reference's algorithm) and ``torch.nn.functional.l1_loss``.
As in training, ``generated`` requires grad and ``target`` (the real image's VGG features) does not.
Repetitions are interleaved (variant order rotates every repetition) and the median is reported.

Peak extra memory is the peak memory during one forward+backward above what was in use before it (the
inputs), including the returned gradient of ``generated`` (one input's size for every variant): on CUDA
``torch.cuda.max_memory_allocated``; on CPU the peak resident set size (VmHWM) of a fresh process running
the one step, minus its RSS just before (torch has no CPU allocator statistics; see
``_cpu_peak_rss_in_subprocess``).

    .venv/bin/python benchmarks/nn_loss.py --threads 1 --repeats 15   # table in benchmarks/results/nn_loss.md
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

from deformgan.losses import nn_loss, nn_loss_reference

# (name, B, C, H, W, n): the paper's Full models, NN loss on conv1_2 features (64 channels, full resolution).
SHAPES = [
    ("Market Full", 4, 64, 128, 64, 3),
    ("DeepFashion Full", 2, 64, 256, 256, 5),
]
VARIANTS = ("nn_loss", "literal", "l1")


def _loss_fn(variant: str, neighborhood: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if variant == "nn_loss":
        return lambda g, t: nn_loss(g, t, neighborhood, "mean")
    if variant == "literal":
        return lambda g, t: nn_loss_reference(g, t, neighborhood, "mean")
    return F.l1_loss


def _step(loss_fn, generated: torch.Tensor, target: torch.Tensor) -> None:
    generated.grad = None
    loss_fn(generated, target).backward()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variants(generated, target, neighborhood: int, repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, process CPU) seconds of forward+backward per variant; interleaved, one warm-up each.

    CPU time is reported next to wall time because the benchmark machine may be shared: CPU time does not
    count the time this process waited for a core (memory-bandwidth contention still shows in both).
    """
    fns = {v: _loss_fn(v, neighborhood) for v in VARIANTS}
    for fn in fns.values():
        _step(fn, generated, target)
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for rep in range(repeats):
        order = VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]
        for variant in order:
            _sync(generated.device)
            start, start_cpu = time.perf_counter(), time.process_time()
            _step(fns[variant], generated, target)
            _sync(generated.device)
            wall[variant].append(time.perf_counter() - start)
            cpu[variant].append(time.process_time() - start_cpu)
    return {v: (statistics.median(wall[v]), statistics.median(cpu[v])) for v in VARIANTS}


def peak_extra_bytes(variant: str, generated, target, neighborhood: int) -> int:
    """Peak memory above that in use before one forward+backward (CUDA: allocator; CPU: RSS, see below)."""
    fn = _loss_fn(variant, neighborhood)
    generated.grad = None
    if generated.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        _step(fn, generated, target)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    # RSS readings move by a few MiB under load from other processes: median of three fresh processes.
    return statistics.median(
        _cpu_peak_rss_in_subprocess(variant, tuple(generated.shape), neighborhood) for _ in range(3)
    )


def _cpu_peak_rss_in_subprocess(variant: str, shape: tuple[int, ...], neighborhood: int) -> int:
    """Run one forward+backward in a fresh process; return its peak RSS (VmHWM) minus the RSS before it.

    glibc is told to mmap every allocation above 128 KiB (``MALLOC_MMAP_THRESHOLD_``) so freed tensors go
    back to the OS and the RSS before the step is not inflated by a reusable heap; the peak is reset right
    before the step by writing 5 to /proc/self/clear_refs (Linux).
    """
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    command = [
        sys.executable,
        __file__,
        "--_rss-child",
        variant,
        ",".join(map(str, shape)),
        str(neighborhood),
    ]
    output = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return int(output.strip().splitlines()[-1])


def _rss_child(variant: str, shape: str, neighborhood: int) -> None:
    torch.set_num_threads(1)
    b, c, h, w = (int(v) for v in shape.split(","))
    fn = _loss_fn(variant, neighborhood)
    # Warm up the same code path on a tiny input so one-time initialisation is not counted.
    _step(fn, torch.randn(1, c, 8, 8, requires_grad=True), torch.randn(1, c, 8, 8))
    gen = torch.Generator().manual_seed(0)
    generated = torch.randn(b, c, h, w, generator=gen).requires_grad_(True)
    target = torch.randn(b, c, h, w, generator=gen)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kib("VmRSS")
    _step(fn, generated, target)
    print((_status_kib("VmHWM") - before) * 1024)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def run(device: torch.device, repeats: int) -> list[str]:
    rows = []
    for name, b, c, h, w, n in SHAPES:
        gen = torch.Generator().manual_seed(0)
        generated = torch.randn(b, c, h, w, generator=gen).to(device).requires_grad_(True)
        target = torch.randn(b, c, h, w, generator=gen).to(device)
        input_bytes = generated.numel() * generated.element_size()
        seconds = time_variants(generated, target, n, repeats)
        memory = {v: peak_extra_bytes(v, generated, target, n) for v in VARIANTS}
        for variant in VARIANTS:
            wall, cpu = seconds[variant]
            rows.append(
                f"| {name} ({b}x{c}x{h}x{w}, n={n}) | {device.type} | {variant} "
                f"| {wall * 1e3:.1f} | {wall / seconds['l1'][0]:.2f} "
                f"| {cpu * 1e3:.1f} | {cpu / seconds['l1'][1]:.2f} "
                f"| {seconds['literal'][0] / wall:.1f} "
                f"| {memory[variant] / 2**20:.1f} | {memory[variant] / input_bytes:.2f} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved repetitions (median reported)")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even when available")
    parser.add_argument("--_rss-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._rss_child:
        _rss_child(args._rss_child[0], args._rss_child[1], int(args._rss_child[2]))
        return
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.cpu_only:
        devices.append(torch.device("cuda"))
    print(
        f"CPU: {cpu_model()}, torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}"
    )
    if torch.cuda.is_available() and not args.cpu_only:
        print(f"GPU: {torch.cuda.get_device_name()}")
    print("forward+backward, grad w.r.t. generated only, float32; memory includes the returned gradient\n")
    print(
        "| shape | device | variant | wall ms | x L1 (wall) | CPU ms | x L1 (CPU) | literal / variant (wall) "
        "| peak extra MiB | x one input |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        for row in run(device, args.repeats):
            print(row, flush=True)


if __name__ == "__main__":
    main()

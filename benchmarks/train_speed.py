"""CPU training speed (iterations/s) and peak memory of the Market Full config and the synthetic configs.

Usage::

    .venv/bin/python benchmarks/train_speed.py [--iterations 6] [--threads 2] [--demo-json DIR/demo.json]
        [--out benchmarks/results/train_speed.md]

Each config runs in its own subprocess (so ``ru_maxrss`` is that run's peak) on a small synthetic dataset
in the Market layout (128x64). The first iteration (allocation, oneDNN kernel selection) is excluded
from the speed. Without VGG-19 weights the Market Full config's NN loss on conv1_2 cannot be built; it then
runs on pixel features instead and the table says so. ``--demo-json`` adds the wall time recorded by
``deformgan.demo.run_demo`` (its ``demo.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

CONFIGS = ("market-full", "synth-full", "demo")


def run_one(config_name: str, data_dir: str, iterations: int, threads: int) -> dict:
    """Train ``config_name`` for ``iterations`` in this process; return speed and memory."""
    import torch

    from deformgan.config import find_config, load_config
    from deformgan.models import build_generator
    from deformgan.pretrained import MissingWeightsError
    from deformgan.train import read_log, train
    from deformgan.vgg import VGG19Features

    torch.set_num_threads(threads)
    overrides = [
        f"train.iterations={iterations}", "train.log_every=1", "train.sample_every=0",
        "train.checkpoint_every=0", "data.prefix=synth", "data.num_workers=0", "train.device=cpu",
    ]  # fmt: skip
    config = load_config(find_config(config_name), overrides)
    note = ""
    if config.objective.features != "pixel":
        try:
            VGG19Features([config.objective.features], weights=config.objective.vgg_weights)
        except MissingWeightsError:
            config = load_config(find_config(config_name), [*overrides, "objective.features=pixel"])
            note = (
                f"VGG-19 weights missing: {config.objective.reconstruction} loss on pixels instead of conv1_2"
            )
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        train(config, data_dir, run_dir, progress=False, tensorboard=False)
        wall = time.perf_counter() - start
        times = read_log(run_dir)["time/step"][1:]  # drop the warm-up iteration
    generator_params = sum(p.numel() for p in build_generator(config).parameters())
    return {
        "config": config_name,
        "width": config.generator.width,
        "batch": config.train.batch_size,
        "generator_params": generator_params,
        "it_per_s": len(times) / sum(times),
        "s_per_it": sum(times) / len(times),
        "wall_s": wall,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "note": note,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--demo-json", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one config
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:
        print(json.dumps(run_one(args.one, args.data, args.iterations, args.threads)))
        return

    from deformgan.synth import write_synthetic_dataset

    rows = []
    with tempfile.TemporaryDirectory() as data_dir:
        write_synthetic_dataset(data_dir, identities=8, poses_per_identity=4, size=(128, 64), progress=False)
        for name in args.configs:
            command = [
                sys.executable, __file__, "--one", name, "--data", data_dir,
                "--iterations", str(args.iterations), "--threads", str(args.threads),
            ]  # fmt: skip
            result = subprocess.run(command, check=True, capture_output=True, text=True)
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"{name}: {rows[-1]['it_per_s']:.3f} it/s", file=sys.stderr)

    import torch

    lines = [
        "# Training speed on CPU",
        "",
        f"Command: `.venv/bin/python benchmarks/train_speed.py --iterations {args.iterations} "
        f"--threads {args.threads}" + (f" --demo-json {args.demo_json}" if args.demo_json else "") + "`",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{args.threads} intra-op thread(s); synthetic 128x64 data; first iteration excluded.",
        "",
        "| config | width | batch | G params | s / iteration | iterations / s | peak RSS (MiB) | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['width']} | {r['batch']} | {r['generator_params'] / 1e6:.2f} M | "
            f"{r['s_per_it']:.3f} | {r['it_per_s']:.3f} | {r['max_rss_mib']:.0f} | {r['note']} |"
        )
    if args.demo_json is not None:
        demo = json.loads(args.demo_json.read_text())
        lines += [
            "",
            f"Demo (`deformgan.demo.run_demo`, seed {demo['seed']}): {demo['iterations']} iterations, "
            f"training {demo['train_seconds']:.0f} s, total wall time {demo['total_seconds']:.0f} s "
            f"({demo['total_seconds'] / 60:.1f} min, data + training + outputs).",
        ]
        if "scores" in demo:  # the demo's own measurement on its held-out pairs (issue 12)
            lines += [
                "",
                f"Its scores on the {demo['held_out_pairs']} held-out pairs (`demo.json`, `scores`):",
                "",
                "| method | mask-SSIM ↑ | SSIM ↑ | L1 ↓ |",
                "|---|---|---|---|",
                *(
                    f"| {name} | {v['mask_ssim']:.4f} | {v['ssim']:.4f} | {v['l1']:.4f} |"
                    for name, v in demo["scores"].items()
                ),
            ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()

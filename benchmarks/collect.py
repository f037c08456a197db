"""Assemble BENCHMARKS.md from the result files the benchmark scripts write into benchmarks/results/.

Usage: python benchmarks/collect.py
"""

from pathlib import Path

root = Path(__file__).resolve().parents[1]
parts = [
    ("Nearest-neighbour loss (issue 3)", "nn_loss.md"),
    ("Deformable skip connection overhead and parameter counts (issue 3)", "dsc_overhead.md"),
    ("Training speed, demo wall time, peak memory (issue 4)", "train_speed.md"),
    ("Real test triplets: the authors' outputs vs trivial references (issue 5)", "real_triplets.md"),
    ("Ablation on synthetic people (issue 5)", "ablation.md"),
    ("Synthetic people: rendering speed (issue 2)", "synth_speed.md"),
    ("Synthetic people: pose statistics vs real Market poses (issue 2)", "pose_statistics.md"),
    ("Faithful modes: heatmaps and warp gradient on the synthetic ablation (issue 10)", "faithful_modes.md"),
    ("Pose estimation on real images (issue 11)", "pose_accuracy.md"),
    ("Shipped model and demo quality (issue 12)", "shipped_model.md"),
    ("GPU training throughput (issue 12)", "gpu.md"),
    ("Re-ID with generated people (issue 14)", "reid_augmentation.md"),
    ("Pose editor latency (issue 15)", "editor_latency.md"),
    ("Reliability sweep (issue 9)", "reliability_sweep.md"),
]
out = [
    "# Benchmarks",
    "",
    "Every number here comes from a script in `benchmarks/`, run on the machine named in its section with",
    "the command given there; each section is the script's own result file from `benchmarks/results/`.",
    "The development machine is a shared 2-core AMD EPYC VM with no GPU (no device machine was lent to",
    "this task), so CUDA rows are absent and wall times are noisy: variants are compared as ratios",
    "measured in one run.",
    "",
]
for title, name in parts:
    path = root / "benchmarks" / "results" / name
    if not path.exists():
        continue
    out += [f"## {title}", ""]
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            line = "##" + line  # demote: the file's '#' becomes '###'
        out.append(line)
    out.append("")
(root / "BENCHMARKS.md").write_text("\n".join(out))

"""Assemble BENCHMARKS.md from the result files the benchmark scripts write into benchmarks/results/.

Usage: python benchmarks/collect.py

Relative Markdown links and images of a result file (``![bars](reid_augmentation.png)``, relative to the
file) are rewritten relative to the repository root, where BENCHMARKS.md sits.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PARTS = [
    ("Nearest-neighbour loss (issue 3)", "nn_loss.md"),
    ("Deformable skip connection overhead and parameter counts (issue 3)", "dsc_overhead.md"),
    ("Training speed, demo wall time, peak memory (issue 4)", "train_speed.md"),
    ("Real test triplets: the authors' outputs vs trivial references (issue 5)", "real_triplets.md"),
    ("Failure causes on the real test triplets (issue 13)", "failure_causes.md"),
    ("Ablation on synthetic people (issue 5)", "ablation.md"),
    ("Synthetic people: rendering speed (issue 2)", "synth_speed.md"),
    ("Synthetic people: pose statistics vs real Market poses (issue 2)", "pose_statistics.md"),
    ("Faithful modes: heatmaps and warp gradient on the synthetic ablation (issue 10)", "faithful_modes.md"),
    ("Pose estimation on real images (issue 11)", "pose_accuracy.md"),
    ("Shipped model and demo quality (issue 12)", "shipped_model.md"),
    ("Shipped model: pilot runs (issue 12)", "shipped_model_pilots.md"),
    ("GPU training throughput (issue 12)", "gpu.md"),
    ("Re-ID with generated people (issue 14)", "reid_augmentation.md"),
    ("Pose editor latency (issue 15)", "editor_latency.md"),
    ("Reliability sweep (issue 9)", "reliability_sweep.md"),
]
HEADER = [
    "# Benchmarks",
    "",
    "Every number here comes from a script in `benchmarks/`, run on the machine named in its section with",
    "the command given there; each section is the script's own result file from `benchmarks/results/`.",
    "The development machines are shared 2-core VMs with no GPU (AMD EPYC in earlier sessions, Intel Xeon",
    "in later ones; each section names its CPU; no device machine was lent to this task), so CUDA rows are",
    "absent and wall times are noisy: variants are compared as ratios measured in one run.",
    "",
]
#: A Markdown link or image: ``[text](target)`` / ``![alt](target "title")``.
LINK = re.compile(r'(!?\[[^\]]*\]\()([^)\s]+)((?:\s+"[^"]*")?\))')
#: Targets left alone: a URL scheme (https:, mailto:), an anchor, an absolute path.
NOT_RELATIVE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|#|/)")


def rebase_links(text: str, source_dir: Path, target_dir: Path) -> str:
    """Rewrite the relative link targets of Markdown ``text`` written in ``source_dir`` so that they point
    at the same files from ``target_dir`` (POSIX separators)."""

    def rebase(match: re.Match) -> str:
        link = match.group(2)
        if NOT_RELATIVE.match(link):
            return match.group(0)
        path, hash_, anchor = link.partition("#")
        moved = Path(os.path.relpath(source_dir / path, target_dir)).as_posix()
        return f"{match.group(1)}{moved}{hash_}{anchor}{match.group(3)}"

    return LINK.sub(rebase, text)


def collect(root: Path = ROOT) -> str:
    """BENCHMARKS.md's text: the header, then each present result file under its title, its headings
    demoted (``#`` becomes ``###``) and its links rebased to ``root``."""
    results = root / "benchmarks" / "results"
    out = list(HEADER)
    for title, name in PARTS:
        path = results / name
        if not path.exists():
            continue
        out += [f"## {title}", ""]
        for line in rebase_links(path.read_text(), results, root).splitlines():
            if line.startswith("#"):
                line = "##" + line
            out.append(line)
        out.append("")
    return "\n".join(out)


def main() -> None:
    (ROOT / "BENCHMARKS.md").write_text(collect())


if __name__ == "__main__":
    main()

"""Classic metrics on the 100 + 100 real test triplets of shared/data/triplets (the paper's protocol).

For Market-1501 (128x64) and DeepFashion (256x256), scores three "generators" against the real targets:
the authors' Def-GAN outputs (right third of each strip), copy-the-source, and the source image warped
toward the target pose by the 10 part affines (deformgan.parts + deformgan.warp.deform, max aggregation,
nearest sampling: the paper's deformable skip applied to pixels). Metrics: SSIM, mask-SSIM, L1 and the
offline HOG detection rate (IS, DS, LPIPS and FID need pretrained weights that this machine lacks; they
are listed as n/a with the missing file when absent).

    .venv/bin/python benchmarks/real_triplets.py [--shared ../shared] [--out results/real_triplets.md]

ds_hog needs OpenCV < 5 (OpenCV 5 dropped HOGDescriptor); e.g. ``pip install --target /tmp/cv4
opencv-python-headless==4.14.0.94`` and run with ``PYTHONPATH=/tmp/cv4``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from deformgan.evaluation.baselines import warp_only
from deformgan.evaluation.formats import read_method
from deformgan.evaluation.scores import METRICS, markdown_table, score_images, target_masks
from deformgan.keypoints import read_annotations

DATASETS = {
    # name: (triplet folder, annotation CSVs (keypoints of sources and targets), frame size (H, W))
    "market": ("market", ["market-annotation-train.csv", "market-annotation-test.csv"], (128, 64)),
    "deepfashion": ("deepfashion", ["fasion-annotation-test.csv"], (256, 256)),
}
CLASSIC = ("ssim", "mask_ssim", "ds_hog", "l1")


def run_dataset(shared: Path, name: str, weights: Path) -> dict[str, dict]:
    folder, csvs, size = DATASETS[name]
    keypoints: dict[str, np.ndarray] = {}
    for csv in csvs:
        keypoints.update(read_annotations(shared / "data" / "annotations" / csv))
    triplets = read_method(shared / "data" / "triplets" / folder, known=keypoints)
    assert triplets.generated.shape[1:3] == size, triplets.generated.shape
    source = triplets.source
    source_kp = np.stack([keypoints[a] for a, _ in triplets.pairs])
    target_kp = np.stack([keypoints[b] for _, b in triplets.pairs])
    mask = target_masks(triplets.pairs, keypoints, size)
    candidates = {
        "Def-GAN (authors' outputs)": triplets.generated,
        "copy the source": source,
        "source warped by the part affines": warp_only(source, source_kp, target_kp),
    }
    return {
        label: score_images(images, triplets.target, mask, metrics=METRICS, weights=weights)
        for label, images in candidates.items()
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "real_triplets.md"
    )
    parser.add_argument(
        "--weights", type=Path, default=None, help="folder of pretrained weights (default: none)"
    )
    args = parser.parse_args(argv)
    if not (args.shared / "data" / "triplets").is_dir():
        sys.exit(f"{args.shared}/data/triplets not found: pass --shared")
    started = time.time()
    sections = []
    with tempfile.TemporaryDirectory() as empty:
        # Without --weights, look in an empty folder: the table is reproducible whatever the hub cache holds.
        weights = args.weights if args.weights is not None else Path(empty)
        for name in DATASETS:
            rows = run_dataset(args.shared, name, weights)
            classic = [m for m in METRICS if any(rows[r][m]["value"] is not None for r in rows)]
            missing = sorted({rows[r][m]["reason"] for r in rows for m in METRICS if m not in classic})
            table = markdown_table(rows, classic)
            sections.append(f"### {name} (100 test pairs)\n\n{table}\nNot computed: {'; '.join(missing)}.\n")
    import cv2

    command = "PYTHONPATH=/tmp/cv4 .venv/bin/python benchmarks/real_triplets.py"
    header = (
        "## Classic metrics on the real test triplets (shared/data/triplets)\n\n"
        f"Command: `{command}` ({time.time() - started:.0f} s; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}, "
        f"OpenCV {cv2.__version__}).\n\n"
        "SSIM / mask-SSIM: skimage, Gaussian 11x11 sigma 1.5, data_range = max-min of the generated image "
        "(the authors' `test.py`, `ssim_score`). ds_hog: fraction of images where OpenCV's HOG people "
        "detector fires (in brackets: mean best SVM margin). L1: mean |target - generated| in [-1, 1] "
        "units.\n\n"
    )
    text = header + "\n".join(sections)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()

"""Compare the synthetic pose distribution with the real Market-1501 OpenPose annotations.

Usage: ``python benchmarks/pose_statistics.py [--samples 5000] [--out benchmarks/results/pose_statistics.md]``

Statistics (all on images whose torso - neck, both shoulders, both hips - is complete, the images the
authors keep for pairs, ``create_pairs_dataset.py``): limb-length ratios, joint angles and per-joint
missing rates, each as the 5/25/50/75/95th percentiles. Writes a Markdown table and a PNG histogram
strip (PIL drawing).
Needs ../shared/data/annotations/market-annotation-{train,test}.csv (exits with a message if absent).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)
from PIL import Image, ImageDraw

from deformgan.keypoints import JOINT, JOINT_NAMES, read_annotations
from deformgan.synth.pose import sample_keypoints

REPO = Path(__file__).resolve().parents[1]
ANNOTATIONS = REPO.parent / "shared" / "data" / "annotations"
PERCENTILES = (5, 25, 50, 75, 95)
TORSO = [JOINT[n] for n in ("neck", "Rsho", "Lsho", "Rhip", "Lhip")]


def _length(kp: np.ndarray, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    present = (kp[:, JOINT[a], 0] >= 0) & (kp[:, JOINT[b], 0] >= 0)
    return np.linalg.norm(kp[:, JOINT[a]] - kp[:, JOINT[b]], axis=1), present


def _interior_angle(kp: np.ndarray, a: str, b: str, c: str) -> np.ndarray:
    """Angle at joint b (degrees, 180 = straight limb) where all three joints are present."""
    present = (kp[:, [JOINT[a], JOINT[b], JOINT[c]], 0] >= 0).all(axis=1)
    u = kp[present, JOINT[a]] - kp[present, JOINT[b]]
    v = kp[present, JOINT[c]] - kp[present, JOINT[b]]
    cos = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1) + 1e-9)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _from_vertical(kp: np.ndarray, a: str, b: str) -> np.ndarray:
    """Unsigned angle (degrees) of the bone a -> b from the downward vertical."""
    present = (kp[:, JOINT[a], 0] >= 0) & (kp[:, JOINT[b], 0] >= 0)
    d = kp[present, JOINT[b]] - kp[present, JOINT[a]]
    return np.degrees(np.arctan2(np.abs(d[:, 0]), d[:, 1]))


def pose_statistics(kp: np.ndarray) -> dict[str, np.ndarray]:
    """{statistic name: 1-D sample} for (N, 18, 2) (x, y) keypoints; torso-incomplete rows are dropped."""
    kp = kp[(kp[:, TORSO, 0] >= 0).all(axis=1)].astype(np.float64)
    mid_hip = (kp[:, JOINT["Rhip"]] + kp[:, JOINT["Lhip"]]) / 2
    torso = np.linalg.norm(kp[:, JOINT["neck"]] - mid_hip, axis=1)
    stats: dict[str, np.ndarray] = {}

    def ratio(name: str, a: str, b: str, denominator: tuple[str, str] | None = None) -> None:
        length, present = _length(kp, a, b)
        if denominator is None:
            stats[name] = length[present] / torso[present]
        else:
            base, base_present = _length(kp, *denominator)
            both = present & base_present & (base > 0)
            stats[name] = length[both] / base[both]

    ratio("upper arm / torso", "Rsho", "Relb")
    ratio("forearm / upper arm", "Relb", "Rwri", ("Rsho", "Relb"))
    ratio("thigh / torso", "Rhip", "Rkne")
    ratio("shin / thigh", "Rkne", "Rank", ("Rhip", "Rkne"))
    ratio("shoulder width / torso", "Rsho", "Lsho")
    ratio("hip width / torso", "Rhip", "Lhip")
    ratio("nose-neck / torso", "nose", "neck")
    stats["torso length / image height"] = torso
    stats["elbow angle (deg)"] = np.concatenate(
        [_interior_angle(kp, "Rsho", "Relb", "Rwri"), _interior_angle(kp, "Lsho", "Lelb", "Lwri")]
    )
    stats["knee angle (deg)"] = np.concatenate(
        [_interior_angle(kp, "Rhip", "Rkne", "Rank"), _interior_angle(kp, "Lhip", "Lkne", "Lank")]
    )
    stats["upper arm from vertical (deg)"] = np.concatenate(
        [_from_vertical(kp, "Rsho", "Relb"), _from_vertical(kp, "Lsho", "Lelb")]
    )
    stats["thigh from vertical (deg)"] = np.concatenate(
        [_from_vertical(kp, "Rhip", "Rkne"), _from_vertical(kp, "Lhip", "Lkne")]
    )
    stats["shin from vertical (deg)"] = np.concatenate(
        [_from_vertical(kp, "Rkne", "Rank"), _from_vertical(kp, "Lkne", "Lank")]
    )
    stats["front view (Rsho left of Lsho)"] = (kp[:, JOINT["Rsho"], 0] < kp[:, JOINT["Lsho"], 0]).astype(
        float
    )
    stats["missing"] = (kp[:, :, 0] < 0).astype(float)  # (N, 18)
    return stats


def _histogram_strip(real: dict, synth: dict, names: list[str], path: Path) -> None:
    """One small histogram per statistic, real (blue) over synthetic (orange), drawn with PIL."""
    cell_w, cell_h, bins = 220, 120, 30
    image = Image.new("RGB", (cell_w * 4, (cell_h + 18) * ((len(names) + 3) // 4)), "white")
    draw = ImageDraw.Draw(image)
    for i, name in enumerate(names):
        x0, y0 = (i % 4) * cell_w, (i // 4) * (cell_h + 18)
        lo, hi = np.percentile(np.concatenate([real[name], synth[name]]), [0.5, 99.5])
        edges = np.linspace(lo, hi + 1e-9, bins + 1)
        draw.text((x0 + 4, y0 + 2), f"{name} [{lo:.2g}, {hi:.2g}]", fill="black")
        for values, colour in ((real[name], (40, 90, 200)), (synth[name], (240, 140, 20))):
            hist = np.histogram(values, edges)[0] / max(len(values), 1)
            hist = hist / max(hist.max(), 1e-9)
            pts = [(x0 + 5 + k * (cell_w - 10) / bins, y0 + 16 + cell_h - 4 - h * (cell_h - 20)) for k, h in
                   enumerate(hist)]  # fmt: skip
            draw.line(pts, fill=colour, width=2)
    image.save(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pose_statistics.md")
    args = parser.parse_args()
    files = [ANNOTATIONS / f"market-annotation-{split}.csv" for split in ("train", "test")]
    if not all(f.is_file() for f in files):
        print(f"{ANNOTATIONS}: Market annotations absent (../shared), nothing to compare", file=sys.stderr)
        return 1
    real_kp = np.stack([kp for f in files for kp in read_annotations(f).values()])
    synth_kp = sample_keypoints(args.samples, size=(128, 64), seed=args.seed)
    real, synth = pose_statistics(real_kp), pose_statistics(synth_kp)
    real["torso length / image height"] = real["torso length / image height"] / 128
    synth["torso length / image height"] = synth["torso length / image height"] / 128

    names = [n for n in real if n not in ("missing", "front view (Rsho left of Lsho)")]
    lines = [
        "# Pose statistics: synthetic people vs real Market-1501 annotations",
        "",
        f"Command: `python benchmarks/pose_statistics.py --samples {args.samples} --seed {args.seed}`  ",
        f"Real: {len(real_kp)} annotated Market images (train + test), {len(real['missing'])} with a "
        f"complete torso. Synthetic: {args.samples} poses at 128x64, {len(synth['missing'])} with a "
        "complete torso.",
        "",
        "Percentiles 5 / 25 / 50 / 75 / 95 (torso = neck to mid-hip; angles in degrees, 180 = straight).",
        "",
        "| statistic | real | synthetic | median diff |",
        "|---|---|---|---|",
    ]
    for name in names:
        r, s = np.percentile(real[name], PERCENTILES), np.percentile(synth[name], PERCENTILES)
        fmt = "{:.0f}" if "deg" in name else "{:.2f}"
        lines.append(
            f"| {name} | {' / '.join(fmt.format(v) for v in r)} | {' / '.join(fmt.format(v) for v in s)} "
            f"| {fmt.format(s[2] - r[2])} |"
        )
    front_r, front_s = (
        real["front view (Rsho left of Lsho)"].mean(),
        synth["front view (Rsho left of Lsho)"].mean(),
    )
    lines.append(f"| front-facing fraction (Rsho left of Lsho) | {front_r:.2f} | {front_s:.2f} | "
                 f"{front_s - front_r:+.2f} |")  # fmt: skip
    lines += [
        "",
        "Per-joint missing rate (torso-complete images):",
        "",
        "| joint | real | synthetic |",
        "|---|---|---|",
    ]
    miss_r, miss_s = real["missing"].mean(0), synth["missing"].mean(0)
    lines += [f"| {n} | {miss_r[j]:.3f} | {miss_s[j]:.3f} |" for j, n in enumerate(JOINT_NAMES)]
    lines += ["", f"Max absolute missing-rate difference: {np.abs(miss_r - miss_s).max():.3f}."]
    png = args.out.with_suffix(".png")
    _histogram_strip(real, synth, names, png)
    lines += ["", f"Histograms (real blue, synthetic orange): `{png.name}`.", "",
              f"Machine: {platform.platform()}, {cpu_model()}."]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

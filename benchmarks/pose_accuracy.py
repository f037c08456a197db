"""Accuracy of deformgan's offline pose estimator (BlazePose -> OpenPose 18) against OpenPose annotations.

Usage: ``python benchmarks/pose_accuracy.py [--out benchmarks/results/pose_accuracy.md] [--figure PNG]``

Images: the distinct sources and targets of the real test triplets in ../shared/data/triplets/{market,
deepfashion} (strips [source | target | generated], named ``<from>_<to>.png``); reference keypoints: the
field's OpenPose annotations of those images (../shared/data/annotations). Needs the pose model in the
weights cache (``deformgan weights pose``) and ../shared; exits with a message otherwise.

Metrics, per dataset:
- detected: fraction of images where the model's pose-presence score is >= 0.5;
- PCKh@0.5: over joints present in both OpenPose and the estimate, the fraction within half the head box
  on each axis (|dx| < 0.5 w and |dy| < 0.5 h; the head box spans OpenPose's nose, neck, eyes and ears;
  images where it is degenerate — fewer than 2 head points, or zero width or height — are left out of
  the PCKh columns and counted);
- recall-PCKh: correct joints / OpenPose's present joints (a joint the estimate misses counts as wrong);
- extra: joints the estimate reports where OpenPose has none, per OpenPose-missing joint;
- time per image: the whole estimate (both passes, mapping) with OpenCV on 1 thread (wall and CPU).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from machine import machine_description  # benchmarks/machine.py
from PIL import Image

from deformgan.atomic import atomic_write_bytes, atomic_write_text
from deformgan.keypoints import JOINT, JOINT_NAMES, draw_skeleton, is_present, read_annotations
from deformgan.pose.blazepose import (
    MEDIAPIPE_ROI_MARGIN,
    NUM_BODY,
    ROI_MARGIN,
    BlazePose,
    first_pass_roi,
    to_openpose,
)
from deformgan.pretrained import MissingWeightsError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
HEAD = [JOINT[n] for n in ("nose", "neck", "Leye", "Reye", "Lear", "Rear")]
TARGETS = {"market": (0.97, 0.85), "deepfashion": (0.98, 0.93)}
ANNOTATION_FILES = {
    "market": ["market-annotation-train.csv", "market-annotation-test.csv"],
    "deepfashion": ["fasion-annotation-test.csv"],
}


def load_dataset(name: str) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    """Distinct source/target images of the triplets -> (names, uint8 images, OpenPose (N, 18, 2))."""
    annotations: dict[str, np.ndarray] = {}
    for file in ANNOTATION_FILES[name]:
        annotations.update(read_annotations(SHARED / "annotations" / file))
    images: dict[str, np.ndarray] = {}
    for strip_path in sorted((SHARED / "triplets" / name).glob("*.png")):
        strip = np.asarray(Image.open(strip_path).convert("RGB"))
        width = strip.shape[1] // 3
        source, target = strip_path.name[: -len(".png")].split(".jpg_")
        for k, image_name in enumerate((source + ".jpg", target)):
            images.setdefault(image_name, strip[:, k * width : (k + 1) * width].copy())
    names = sorted(images)
    missing = [n for n in names if n not in annotations]
    if missing:
        sys.exit(f"{name}: {len(missing)} images have no annotation, e.g. {missing[0]}")
    return names, [images[n] for n in names], np.stack([annotations[n] for n in names])


def head_boxes(reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 18, 2) OpenPose keypoints -> head box (w, h) (N, 2) and valid (N,) (>= 2 points, w > 0, h > 0)."""
    head = reference[:, HEAD].astype(np.float64)
    present = np.asarray(is_present(reference[:, HEAD]))
    lo = np.where(present[..., None], head, np.inf).min(axis=1)
    hi = np.where(present[..., None], head, -np.inf).max(axis=1)
    size = hi - lo
    valid = (present.sum(axis=1) >= 2) & np.isfinite(size).all(axis=1) & (size > 0).all(axis=1)
    return np.where(valid[:, None], size, 1.0), valid


def score(estimate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """PCKh@0.5, recall-PCKh and extra-joint rate of (N, 18, 2) estimates against OpenPose references."""
    box, valid = head_boxes(reference)
    est_present = np.asarray(is_present(estimate))
    ref_present = np.asarray(is_present(reference))
    d = np.abs(estimate.astype(np.float64) - reference.astype(np.float64))
    correct = (
        (d[..., 0] < 0.5 * box[:, None, 0]) & (d[..., 1] < 0.5 * box[:, None, 1]) & est_present & ref_present
    )
    both = est_present & ref_present
    v = valid[:, None]
    per_joint = (correct & v).sum(axis=0) / np.maximum((both & v).sum(axis=0), 1)
    return {
        "pckh": float((correct & v).sum() / max((both & v).sum(), 1)),
        "recall_pckh": float((correct & v).sum() / max((ref_present & v).sum(), 1)),
        "extra": float((est_present & ~ref_present).sum() / max((~ref_present).sum(), 1)),
        "pckh_images": int(valid.sum()),
        "per_joint": per_joint,
    }


def figure(images: list[np.ndarray], estimate: np.ndarray, reference: np.ndarray, count: int) -> np.ndarray:
    """A strip of ``count`` images: each image, OpenPose's skeleton over it, the estimate's over it."""
    tiles = []
    for image, est, ref in list(zip(images, estimate, reference, strict=True))[:count]:
        h, w = image.shape[:2]
        radius = max(1, h // 64)
        overlay = []
        for kp in (ref, est):
            skel = draw_skeleton(kp, (h, w), radius=radius, thickness=max(1, h // 128))
            mask = skel.any(axis=-1, keepdims=True)
            overlay.append(np.where(mask, skel, image // 2))
        tiles.append(np.concatenate([image, *overlay], axis=0))
    return np.concatenate(tiles, axis=1)


def variant(
    model: BlazePose, images: list[np.ndarray], passes: int, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints and detection flags with ``passes`` refinement passes at ROI ``margin`` (sweep rows)."""
    first = [first_pass_roi(image.shape[:2]) for image in images]
    lm, scores = model.run(images, first)
    lm, scores = model.refine(images, lm, passes, margin)[:2] if passes else (lm, scores)
    kp = to_openpose(lm[:, :NUM_BODY], images[0].shape[:2])
    kp[scores < 0.5] = -1
    return kp, scores >= 0.5


def face_errors(estimate: np.ndarray, reference: np.ndarray) -> tuple[int, int]:
    """(face points reported where OpenPose has none, face points OpenPose has that are not reported)."""
    face = [JOINT[n] for n in ("nose", "Leye", "Reye", "Lear", "Rear")]
    est, ref = np.asarray(is_present(estimate[:, face])), np.asarray(is_present(reference[:, face]))
    return int((est & ~ref).sum()), int((~est & ref).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "pose_accuracy.md")
    parser.add_argument("--figure", type=Path, default=REPO / "benchmarks" / "results" / "pose_accuracy.png")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"{SHARED} is absent: this benchmark needs the real triplets and annotations")
    try:
        model = BlazePose()
    except MissingWeightsError as error:
        sys.exit(str(error))
    cv2.setNumThreads(1)

    rows, sweep, faces, framing, figures, per_joint = [], [], [], [], [], {}
    for name in ("market", "deepfashion"):
        names, images, reference = load_dataset(name)
        start, cpu = time.perf_counter(), time.process_time()
        result = model.estimate(images, progress=False)
        seconds = (time.perf_counter() - start) / len(images)
        cpu_seconds = (time.process_time() - cpu) / len(images)
        s = score(result.keypoints, reference)
        per_joint[name] = s["per_joint"]
        det_target, pckh_target = TARGETS[name]
        rows.append(
            f"| {name} | {len(images)} | {result.detected.mean():.3f} (>= {det_target}) | "
            f"{s['pckh']:.3f} (>= {pckh_target}) | {s['recall_pckh']:.3f} | {s['extra']:.3f} | "
            f"{s['pckh_images']} | {1000 * seconds:.0f} ms ({1000 * cpu_seconds:.0f} ms CPU) |"
        )
        print(rows[-1], flush=True)
        for label, passes, margin in (
            ("pass 1 only (fixed centred square)", 0, ROI_MARGIN),
            (f"+ 1 pass, MediaPipe's margin {MEDIAPIPE_ROI_MARGIN}", 1, MEDIAPIPE_ROI_MARGIN),
            (f"+ 2 passes, margin {MEDIAPIPE_ROI_MARGIN}", 2, MEDIAPIPE_ROI_MARGIN),
            (f"+ 1 pass, margin {ROI_MARGIN} (default)", 1, ROI_MARGIN),
            (f"+ 2 passes, margin {ROI_MARGIN}", 2, ROI_MARGIN),
        ):
            kp, detected = variant(model, images, passes, margin)
            v = score(kp, reference)
            sweep.append(
                f"| {name} | {label} | {detected.mean():.3f} | {v['pckh']:.3f} | {v['recall_pckh']:.3f} |"
            )
        size = images[0].shape[:2]
        for label, nose, ear in (
            ("no depth rule", np.inf, np.inf),
            ("nose 0.3, ear 0.2 (default)", 0.3, 0.2),
        ):
            kp = to_openpose(result.landmarks, size, 0.5, nose, ear)
            kp[~result.detected] = -1
            extra, missed = face_errors(kp, reference)
            faces.append(f"| {name} | {label} | {extra} | {missed} | {score(kp, reference)['pckh']:.3f} |")
        ok = result.detected
        centre = result.auxiliary[ok, 0] + 0.5
        diameter = 2 * np.linalg.norm(result.auxiliary[ok, 1] - result.auxiliary[ok, 0], axis=1)
        height = size[0]
        framing.append(
            f"| {name} | {size[0]}x{size[1]} | {np.median(height / diameter):.3f} | "
            f"{np.median((height / 2 - centre[:, 1]) / diameter):.3f} | "
            f"{np.median((size[1] / 2 - centre[:, 0]) / diameter):.3f} |"
        )
        order = np.argsort(names)
        picks = order[np.linspace(0, len(order) - 1, 8).astype(int)]
        tile = figure([images[i] for i in picks], result.keypoints[picks], reference[picks], 8)
        if tile.shape[0] != 128 * 3:  # one height for both datasets (DeepFashion halved), a small PNG
            scale = 384 / tile.shape[0]
            tile = cv2.resize(tile, (round(tile.shape[1] * scale), 384), interpolation=cv2.INTER_AREA)
        figures.append(tile)

    command = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pose_accuracy.py"
    joint_header = " | ".join(JOINT_NAMES)
    joint_rows = "\n".join(
        f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |" for name, values in per_joint.items()
    )
    nl = "\n"
    text = f"""## Pose estimation (BlazePose landmark model -> OpenPose 18) against OpenPose annotations

Command: `{command}` ({machine_description()}, OpenCV {cv2.__version__}, 1 thread).

Model: MediaPipe's `pose_landmark_full.tflite` from the `mediapipe==0.10.21` wheel (`deformgan weights pose`),
run by OpenCV DNN: pass 1 on an upright square centred on the image (side 1.4 x the longer side), pass 2
on the region given by the model's auxiliary points (margin {ROI_MARGIN}), mapped to the 18 OpenPose joints
(`deformgan.pose.blazepose.to_openpose`). Images: the distinct sources and targets of the real test
triplets (../shared/data/triplets); reference: the field's OpenPose annotations of the same images.

detected: pose-presence score >= 0.5. PCKh@0.5: joints present in both, within half the head box (OpenPose's
nose, neck, eyes, ears) on each axis; recall-PCKh: correct / OpenPose's joints; extra: joints reported where
OpenPose has none, per such joint; PCKh images: images whose head box is not degenerate (the PCKh columns
use only these). Time: `BlazePose.estimate` per image (two model passes and the mapping), 1 thread, wall
clock (and this process's CPU time: the machine is shared, the wall time varies with the load).

| dataset | images | detected (target) | PCKh@0.5 (target) | recall-PCKh | extra | PCKh images | time/image |
|---|---|---|---|---|---|---|---|
{nl.join(rows)}

Per-joint PCKh@0.5 (joints 14-17 are OpenPose's REye, LEye, REar, LEar, whatever `JOINT_NAMES` calls them):

| dataset | {joint_header} |
|---|{"---|" * len(JOINT_NAMES)}
{joint_rows}

### Region of the refinement pass

MediaPipe derives the next region from the auxiliary points with a margin of {MEDIAPIPE_ROI_MARGIN}; on the
low-resolution Market crops a tighter region places the hips much better, so deformgan uses {ROI_MARGIN}.
That choice was made on these same images (no other annotated images are at hand): read the rows below
as the sensitivity of the result to the setting, not as held-out figures.

| dataset | passes | detected | PCKh@0.5 | recall-PCKh |
|---|---|---|---|---|
{nl.join(sweep)}

### Face points of people seen from behind or in profile

MediaPipe reports a face for everyone, OpenPose only where it sees one. With the torso length T, deformgan
drops all face points when the nose is more than 0.3 T behind the ears' mean depth (MediaPipe's z) and an
ear more than 0.2 T behind the other. Counts of face points (nose, eyes, ears):

| dataset | rule | reported, OpenPose has none | OpenPose has, not reported | PCKh@0.5 |
|---|---|---|---|---|
{nl.join(faces)}

### Framing

How the dataset crops frame a person, measured with the model's body circle (diameter D, centre at the
hips) on the detected images; `deformgan.pose.framing.FRAMINGS` pins these medians.

| dataset | frame | crop height / D | (crop centre - hip centre) / D, vertical | horizontal |
|---|---|---|---|---|
{nl.join(framing)}

Figure `pose_accuracy.png`: 8 Market then 8 DeepFashion images; rows: image, OpenPose, this estimator.
"""
    atomic_write_text(args.out, text)
    strip = np.concatenate(figures, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG")
    atomic_write_bytes(args.figure, buffer.getvalue())
    print(f"wrote {args.out} and {args.figure}")


if __name__ == "__main__":
    main()

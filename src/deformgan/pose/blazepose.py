"""The 18 OpenPose/COCO keypoints of a person, from the BlazePose landmark model (offline, CPU, OpenCV DNN).

Model: ``pose_landmark_full.tflite`` of MediaPipe Pose (Bazarevsky et al., "BlazePose: On-device Real-time
Body Pose tracking", CVPR Workshops 2020; Apache-2.0), fetched by
:func:`deformgan.pose.model_files.fetch_pose_model` and run by ``cv2.dnn.readNetFromTFLite``. Its tensors,
as MediaPipe's graphs use them (``mediapipe/modules/pose_landmark/pose_landmark_by_roi_cpu.pbtxt`` and
``tensors_to_pose_landmarks_and_segmentation.pbtxt``, ``mediapipe/calculators/util/
refine_landmarks_from_heatmap_calculator.cc``):

- input: one upright square region of interest (ROI) of the image, resized to 256 x 256 RGB, float in
  [0, 1], pixels outside the image replicated from the border (OpenCV takes it as NCHW);
- ``Identity`` (N, 195): 39 landmarks x (x, y, z, visibility logit, presence logit), x/y/z in pixels of the
  256 x 256 input; landmarks 0-32 are the body (``BLAZEPOSE_NAMES``), 33 and 34 the auxiliary
  "alignment" points (hip centre, and a point whose distance from it is half the body's extent), from which
  MediaPipe derives the next ROI: centre at point 33, side 2 x |p34 - p33| x 1.5, rotated so that p33 -> p34
  points up (``pose_landmarks_to_roi.pbtxt``);
- ``Identity_1`` (N, 1): the pose-presence score, already a probability (MediaPipe thresholds it at 0.5);
- ``Identity_3`` (N, 39, 64, 64): heatmap logits; MediaPipe replaces each landmark's x, y with the
  sigmoid-weighted mean of the 7 x 7 heatmap window around it when that window's peak is >= 0.5;
- ``Identity_2`` (segmentation logits) and ``Identity_4`` (world landmarks) are not used here.

Pipeline for one image (:meth:`BlazePose.estimate`): pass 1 on a fixed upright square centred on the image
(side 1.4 x the image's longer side), pass 2 on the ROI that pass 1's auxiliary points give (what MediaPipe
does between video frames, with a tighter margin: :data:`ROI_MARGIN`), then the mapping to the 18
OpenPose joints (:func:`to_openpose`); accuracy in ``benchmarks/results/pose_accuracy.md``. MediaPipe's
person detector (``pose_detection.tflite``) is not used: OpenCV 4.14 cannot load it (its DENSIFY operator
is unsupported); :mod:`deformgan.pose.framing` finds people in large photos with the landmark model.

Known limit: the presence score says "person" on some images of raw uniform noise (0.5-0.98 on 300 x 200
noise), a case far from the model's training data; on featureless images it is ~0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from deformgan.errors import InputError
from deformgan.keypoints import JOINT, MISSING, NUM_JOINTS
from deformgan.pose.model_files import find_pose_model

INPUT_SIZE = 256
HEATMAP_SIZE = 64
NUM_LANDMARKS = 39  # 33 body landmarks + the auxiliary points (33, 34 used) in the model's tensors
NUM_BODY = 33
#: The 33 BlazePose body landmarks (MediaPipe's order; "left" is the person's left).
BLAZEPOSE_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)  # fmt: skip
_BP = {name: i for i, name in enumerate(BLAZEPOSE_NAMES)}
#: OpenPose joint (by the name in ``deformgan.keypoints.JOINT_NAMES``) -> BlazePose landmark. Both models
#: name the sides from the person's point of view, so there is no mirroring. Joints 14-17 of the field's
#: files are OpenPose's (CMU) REye, LEye, REar, LEar, although the authors' ``pose_utils.LABELS`` (and so
#: ``JOINT_NAMES``) call them Leye, Reye, Lear, Rear — the authors' own limb list joins Rsho to joint 16; the
#: map follows what the files hold (checked: with the names taken literally both ears score PCKh 0.00
#: on the annotated images of ``benchmarks/pose_accuracy.py``). The neck (absent in BlazePose) is the
#: midpoint of the shoulders.
OPENPOSE_FROM_BLAZEPOSE: dict[str, str] = {
    "nose": "nose", "Rsho": "right_shoulder", "Relb": "right_elbow", "Rwri": "right_wrist",
    "Lsho": "left_shoulder", "Lelb": "left_elbow", "Lwri": "left_wrist", "Rhip": "right_hip",
    "Rkne": "right_knee", "Rank": "right_ankle", "Lhip": "left_hip", "Lkne": "left_knee",
    "Lank": "left_ankle",
    "Leye": "right_eye", "Reye": "left_eye", "Lear": "right_ear", "Rear": "left_ear",  # see above
}  # fmt: skip

#: ROI side / image's longer side for the first pass (fixed upright square centred on the image).
FIRST_PASS_SIDE = 1.4
#: MediaPipe's ROI margin around the auxiliary points (``pose_landmarks_to_roi.pbtxt``: scale 1.5, "the
#: margin used during training").
MEDIAPIPE_ROI_MARGIN = 1.5
#: The margin deformgan uses for its second pass. On the low-resolution Market-1501 crops (128 x 64) a
#: tighter region places the hips much better (PCKh@0.5 0.84 at 1.5, 0.88 at 1.25; DeepFashion 0.98 and
#: 0.95): ``benchmarks/results/pose_accuracy.md`` has the sweep. The value was chosen on those images.
ROI_MARGIN = 1.25
#: Above this image-pixels-per-input-pixel ratio the image is first reduced with area averaging, so that
#: bilinear sampling does not alias (large photos).
_MAX_SAMPLING_STEP = 2.0


@dataclass(frozen=True)
class Roi:
    """A square region of the image: centre (x, y) and side in image pixels (continuous coordinates: the
    pixel with index i spans [i, i + 1)), and the angle (radians) of the person's "up" from the image's up,
    clockwise on screen. Angle 0 is an upright crop."""

    cx: float
    cy: float
    side: float
    angle: float = 0.0

    def image_to_input(self) -> np.ndarray:
        """(2, 3) affine: continuous image coordinates -> continuous 256 x 256 input coordinates."""
        k = INPUT_SIZE / self.side
        c, s = np.cos(self.angle), np.sin(self.angle)
        a = k * np.array([[c, s], [-s, c]])
        return np.concatenate([a, (INPUT_SIZE / 2 - a @ np.array([self.cx, self.cy]))[:, None]], axis=1)


@dataclass
class PoseEstimate:
    """Result for N images.

    keypoints: int64 (N, 18, 2) OpenPose joints, (x, y) pixel indices of each image, -1 = missing.
    detected: bool (N,) the model's pose-presence score is >= the threshold (all joints missing otherwise).
    score: float (N,) that score in [0, 1].
    landmarks: float (N, 33, 5) BlazePose landmarks (x, y pixel indices, z in image pixels — smaller is
    nearer the camera, relative to the hips —, visibility and presence probabilities).
    auxiliary: float (N, 2, 2) the auxiliary points (x, y pixel indices): hip centre, and a point at the
    radius of the circle around the whole body (MediaPipe's alignment points).
    rois: the ROI of the final pass of each image.
    """

    keypoints: np.ndarray
    detected: np.ndarray
    score: np.ndarray
    landmarks: np.ndarray
    auxiliary: np.ndarray
    rois: list[Roi]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def crop_roi(image: np.ndarray, roi: Roi) -> np.ndarray:
    """uint8 (H, W, 3) image -> uint8 (256, 256, 3): the ROI, upright, bilinear, border pixels replicated."""
    step = roi.side / INPUT_SIZE
    if step > _MAX_SAMPLING_STEP:  # reduce first (area averaging), then sample at <= 2 pixels per pixel
        f = _MAX_SAMPLING_STEP / step
        small = cv2.resize(
            image,
            (max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f))),
            interpolation=cv2.INTER_AREA,
        )
        fx, fy = small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]
        image = small
        roi = Roi(roi.cx * fx, roi.cy * fy, roi.side * (fx + fy) / 2, roi.angle)
    m = roi.image_to_input()
    # warpAffine works on pixel indices (centre of pixel i at i): shift by half a pixel on both sides.
    m_index = m.copy()
    m_index[:, 2] += m[:, :2] @ np.array([0.5, 0.5]) - 0.5
    return cv2.warpAffine(
        image, m_index, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def refine_from_heatmaps(
    xy: np.ndarray, heatmaps: np.ndarray, kernel: int = 7, min_peak: float = 0.5
) -> np.ndarray:
    """MediaPipe's ``RefineLandmarksFromHeatmapCalculator`` (kernel 7 as the pose graph sets it), batched.

    xy: (N, L, 2) landmarks in 256-input pixels. heatmaps: (N, L, 64, 64) logits. Each landmark inside the
    heatmap is replaced by the sigmoid-weighted mean of the (clipped) kernel window around its heatmap cell
    when the window's peak probability is >= ``min_peak``; others are kept. Returns (N, L, 2).
    """
    n, num, h, w = heatmaps.shape
    norm = xy / INPUT_SIZE
    col = np.trunc(norm[..., 0] * w).astype(np.int64)  # C++ float -> int truncation
    row = np.trunc(norm[..., 1] * h).astype(np.int64)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    off = (kernel - 1) // 2
    prob = _sigmoid(np.pad(heatmaps, ((0, 0), (0, 0), (off, off), (off, off)), constant_values=-np.inf))
    d = np.arange(-off, off + 1)
    rows = np.clip(row, 0, h - 1)[..., None, None] + d[:, None] + off  # padded indices (N, L, k, 1)
    cols = np.clip(col, 0, w - 1)[..., None, None] + d[None, :] + off  # (N, L, 1, k)
    window = prob[np.arange(n)[:, None, None, None], np.arange(num)[None, :, None, None], rows, cols]
    total = window.sum(axis=(-2, -1))
    peak = window.max(axis=(-2, -1))
    grid_r = np.broadcast_to(rows - off, window.shape)
    grid_c = np.broadcast_to(cols - off, window.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref_x = (window * grid_c).sum(axis=(-2, -1)) / w / total
        ref_y = (window * grid_r).sum(axis=(-2, -1)) / h / total
    use = inside & (peak >= min_peak) & (total > 0)
    out = norm.copy()
    out[..., 0] = np.where(use, ref_x, norm[..., 0])
    out[..., 1] = np.where(use, ref_y, norm[..., 1])
    return out * INPUT_SIZE


def roi_from_auxiliary(aux: np.ndarray, margin: float = ROI_MARGIN) -> Roi:
    """MediaPipe's ``PoseLandmarksToRoi``: (2, 2) auxiliary points (centre, scale point) in pixel indices ->
    the ROI centred on the first, side 2 x distance x ``margin``, rotated so that centre -> scale point is up.
    """
    (cx, cy), (sx, sy) = np.asarray(aux, dtype=np.float64) + 0.5  # pixel index -> continuous
    vx, vy = sx - cx, sy - cy
    radius = max(float(np.hypot(vx, vy)), 0.5)  # a degenerate pose still gives a usable (1 px) region
    return Roi(float(cx), float(cy), 2.0 * radius * margin, float(np.arctan2(vx, -vy)))


def to_openpose(
    landmarks: np.ndarray,
    size: tuple[int, int],
    min_visibility: float = 0.5,
    nose_behind: float = 0.3,
    ear_behind: float = 0.2,
) -> np.ndarray:
    """BlazePose landmarks -> OpenPose 18 keypoints.

    landmarks: (N, 33, 5) as in :class:`PoseEstimate` (x, y pixel indices; z in pixels). size: (H, W).
    Returns int64 (N, 18, 2) (x, y), -1 = missing. A joint is kept when its visibility is >= min_visibility
    and it rounds to a pixel inside the image; the neck is the shoulders' midpoint when both are kept.
    OpenPose does not report a face it cannot see, MediaPipe always does: with the torso length T (neck to
    mid-hip, pixels), all face points are dropped when the nose is more than ``nose_behind`` x T behind the
    ears' mean depth (the person faces away), and an ear more than ``ear_behind`` x T behind the other (a
    profile view: the far ear is hidden).
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    n = lm.shape[0]
    height, width = size
    xy = np.full((n, NUM_JOINTS, 2), np.nan)
    vis = np.zeros((n, NUM_JOINTS))
    z = np.zeros((n, NUM_JOINTS))
    for joint, name in OPENPOSE_FROM_BLAZEPOSE.items():
        xy[:, JOINT[joint]] = lm[:, _BP[name], :2]
        vis[:, JOINT[joint]] = lm[:, _BP[name], 3]
        z[:, JOINT[joint]] = lm[:, _BP[name], 2]
    keep = vis >= min_visibility
    rs, ls = JOINT["Rsho"], JOINT["Lsho"]
    neck = JOINT["neck"]
    xy[:, neck] = (xy[:, rs] + xy[:, ls]) / 2
    keep[:, neck] = keep[:, rs] & keep[:, ls]

    # Depth tests for the face, in units of the torso length (both scale with the person's size).
    shoulders = (lm[:, _BP["left_shoulder"], :2] + lm[:, _BP["right_shoulder"], :2]) / 2
    hips = (lm[:, _BP["left_hip"], :2] + lm[:, _BP["right_hip"], :2]) / 2
    torso = np.maximum(np.linalg.norm(shoulders - hips, axis=-1), 1e-6)
    z_nose = lm[:, _BP["nose"], 2]
    z_lear, z_rear = lm[:, _BP["left_ear"], 2], lm[:, _BP["right_ear"], 2]
    back_view = (z_nose - (z_lear + z_rear) / 2) > nose_behind * torso
    for joint in ("nose", "Leye", "Reye", "Lear", "Rear"):
        keep[:, JOINT[joint]] &= ~back_view
    right_ear, left_ear = JOINT["Lear"], JOINT["Rear"]  # joints 16, 17: see OPENPOSE_FROM_BLAZEPOSE
    keep[:, left_ear] &= ~((z_lear - z_rear) > ear_behind * torso)
    keep[:, right_ear] &= ~((z_rear - z_lear) > ear_behind * torso)

    rounded = np.rint(np.nan_to_num(xy, nan=-1.0))
    inside = (
        (rounded[..., 0] >= 0)
        & (rounded[..., 0] < width)
        & (rounded[..., 1] >= 0)
        & (rounded[..., 1] < height)
    )
    keep &= inside & np.isfinite(xy).all(axis=-1)
    out = rounded.astype(np.int64)
    out[~keep] = MISSING
    return out


class BlazePose:
    """The loaded landmark model. ``BlazePose()`` finds the file in the weights cache
    (:func:`deformgan.pose.model_files.find_pose_model`); ``BlazePose(path)`` takes an explicit one.

    OpenCV's DNN threads follow ``cv2.setNumThreads`` (set it to 1 on a shared machine).
    """

    def __init__(self, model_path: str | os.PathLike | None = None, batch_size: int = 8):
        path = find_pose_model(model_path)
        try:
            self.net = cv2.dnn.readNetFromTFLite(str(path))
        except cv2.error as error:
            raise InputError(
                f"{path}: OpenCV cannot load this TFLite model: {str(error).strip()[:120]}"
            ) from None
        self.path = Path(path)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self._outputs = ["Identity", "Identity_1", "Identity_3"]  # landmarks, presence, heatmaps

    def run(self, images: Sequence[np.ndarray], rois: Sequence[Roi]) -> tuple[np.ndarray, np.ndarray]:
        """One model pass on one ROI per image.

        Returns (landmarks (N, 39, 5): x, y pixel indices in each image, z in image pixels, visibility and
        presence probabilities; presence score (N,)). Landmarks 33 and 34 are the auxiliary points.
        """
        lms, scores = [], []
        for start in range(0, len(images), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(images)))
            crops = np.stack([crop_roi(images[i], rois[i]) for i in chunk])
            blob = crops.astype(np.float32).transpose(0, 3, 1, 2) / 255.0
            self.net.setInput(np.ascontiguousarray(blob))
            raw, presence, heat = self.net.forward(self._outputs)
            raw = raw.reshape(len(chunk), NUM_LANDMARKS, 5).astype(np.float64)
            xy = refine_from_heatmaps(raw[..., :2], heat.astype(np.float64))
            for j, i in enumerate(chunk):
                inv = cv2.invertAffineTransform(rois[i].image_to_input())
                img_xy = xy[j] @ inv[:, :2].T + inv[:, 2] - 0.5  # continuous -> pixel index
                lm = np.empty((NUM_LANDMARKS, 5))
                lm[:, :2] = img_xy
                lm[:, 2] = raw[j, :, 2] * rois[i].side / INPUT_SIZE
                lm[:, 3] = _sigmoid(raw[j, :, 3])
                lm[:, 4] = _sigmoid(raw[j, :, 4])
                lms.append(lm)
            scores.append(presence.reshape(-1).astype(np.float64))
        if not lms:
            return np.zeros((0, NUM_LANDMARKS, 5)), np.zeros(0)
        return np.stack(lms), np.concatenate(scores)

    def refine(
        self, images: Sequence[np.ndarray], landmarks: np.ndarray, passes: int = 1, margin: float = ROI_MARGIN
    ) -> tuple[np.ndarray, np.ndarray, list[Roi]]:
        """Run ``passes`` more passes, each on the ROI that the previous landmarks' auxiliary points give.

        landmarks: (N, 39, 5) from :meth:`run`. Returns (landmarks, scores, rois) of the last pass.
        """
        scores = np.zeros(len(images))
        rois: list[Roi] = []
        for _ in range(passes):
            rois = [roi_from_auxiliary(lm[NUM_BODY : NUM_BODY + 2, :2], margin) for lm in landmarks]
            landmarks, scores = self.run(images, rois)
        return landmarks, scores, rois

    def estimate(
        self, images: Sequence[np.ndarray], threshold: float = 0.5, progress: bool | None = None
    ) -> PoseEstimate:
        """Keypoints of the one person in each image (a crop or a photo the person mostly fills).

        images: uint8 (H, W, 3) RGB arrays, any sizes. progress: a tqdm bar (default: when more than 32
        images). A pose whose final presence score is below ``threshold`` has all joints missing.
        """
        from tqdm.auto import tqdm

        images = [check_image(image, f"image {i}") for i, image in enumerate(images)]
        n = len(images)
        show = n > 32 if progress is None else progress
        keypoints = np.full((n, NUM_JOINTS, 2), MISSING, dtype=np.int64)
        landmarks = np.zeros((n, NUM_BODY, 5))
        auxiliary = np.zeros((n, 2, 2))
        scores = np.zeros(n)
        rois: list[Roi] = []
        step = self.batch_size * 4
        with tqdm(total=n, desc="pose", unit="image", disable=not show) as bar:
            for start in range(0, n, step):
                chunk = images[start : start + step]
                first = [first_pass_roi(image.shape[:2]) for image in chunk]
                lm, _ = self.run(chunk, first)
                lm, sc, last = self.refine(chunk, lm)
                sl = slice(start, start + len(chunk))
                landmarks[sl] = lm[:, :NUM_BODY]
                auxiliary[sl] = lm[:, NUM_BODY : NUM_BODY + 2, :2]
                scores[sl] = sc
                rois.extend(last)
                for j, image in enumerate(chunk):
                    if sc[j] >= threshold:
                        keypoints[start + j] = to_openpose(lm[j : j + 1, :NUM_BODY], image.shape[:2])[0]
                bar.update(len(chunk))
        return PoseEstimate(keypoints, scores >= threshold, scores, landmarks, auxiliary, rois)


def first_pass_roi(size: tuple[int, int]) -> Roi:
    """The fixed first ROI of an (H, W) image: upright, centred, side 1.4 x the longer side."""
    height, width = size
    return Roi(width / 2, height / 2, FIRST_PASS_SIDE * max(height, width), 0.0)


def check_image(image: np.ndarray, where: str) -> np.ndarray:
    """The image as a contiguous uint8 (H, W, 3) array, or :class:`InputError` naming ``where``."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise InputError(
            f"{where}: expected a uint8 (H, W, 3) RGB image, got {image.dtype} {tuple(image.shape)}"
        )
    return np.ascontiguousarray(image)


def estimate_keypoints(
    images: Sequence[np.ndarray], model: BlazePose | None = None, progress: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 18, 2) int64 OpenPose keypoints (x, y pixels, -1 = missing), detected (N,) bool, score (N,) float.

    images: uint8 (H, W, 3) RGB, one person each. model: a loaded :class:`BlazePose` (loaded from the
    weights cache when None).
    """
    result = (model or BlazePose()).estimate(images, progress=progress)
    return result.keypoints, result.detected, result.score

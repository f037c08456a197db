"""The BlazePose landmark model and its mapping to the 18 OpenPose joints.

Geometry, heatmap refinement and the joint mapping are tested on arrays made here; tests that need the
real model run only when it is in the weights cache (``deformgan weights pose``), and the accuracy test
also needs ../shared (real images with OpenPose annotations).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deformgan.errors import InputError
from deformgan.keypoints import JOINT, NUM_JOINTS, read_annotations
from deformgan.pose.blazepose import (
    BLAZEPOSE_NAMES,
    INPUT_SIZE,
    BlazePose,
    Roi,
    crop_roi,
    estimate_keypoints,
    refine_from_heatmaps,
    roi_from_auxiliary,
    to_openpose,
)

BP = {name: i for i, name in enumerate(BLAZEPOSE_NAMES)}


# ---------------------------------------------------------------------------------------------------
# Geometry


def test_roi_maps_centre_and_up_direction():
    roi = Roi(100.0, 50.0, 64.0, 0.0)
    m = roi.image_to_input()
    assert np.allclose(m @ [100, 50, 1], [128, 128])
    assert np.allclose(m @ [100, 50 - 32, 1], [128, 0])  # half a side up -> the top edge
    # Rotated: the person's up (sin a, -cos a) in the image becomes straight up in the input.
    angle = np.deg2rad(30)
    m = Roi(0.0, 0.0, 256.0, angle).image_to_input()
    assert np.allclose(m[:, :2] @ [np.sin(angle), -np.cos(angle)], [0, -1])


def test_roi_from_auxiliary_follows_mediapipe():
    # Scale point 40 px above the centre: side 2 x 40 x margin, upright. (Pixel indices in, +0.5 inside.)
    roi = roi_from_auxiliary(np.array([[60.0, 80.0], [60.0, 40.0]]), margin=1.5)
    assert (roi.cx, roi.cy, roi.side, roi.angle) == pytest.approx((60.5, 80.5, 120.0, 0.0))
    # Scale point to the right: the person's up points right, 90 degrees clockwise.
    roi = roi_from_auxiliary(np.array([[0.0, 0.0], [10.0, 0.0]]), margin=1.0)
    assert roi.angle == pytest.approx(np.pi / 2) and roi.side == pytest.approx(20.0)


def test_crop_roi_identity_and_replicated_border():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    same = crop_roi(image, Roi(128.0, 128.0, 256.0))  # the ROI is the image at 1:1
    assert np.array_equal(same, image)
    # A ROI twice the image: the image fills the central half, the rest repeats the border pixels.
    small = np.zeros((128, 128, 3), np.uint8)
    small[:, :, 0] = np.arange(128, dtype=np.uint8)[None, :]
    crop = crop_roi(small, Roi(64.0, 64.0, 128.0 * 2))
    assert crop.shape == (256, 256, 3)
    assert (crop[:, :60, 0] == 0).all() and (crop[:, -60:, 0] == 127).all()


def test_crop_roi_reduces_large_images_before_sampling():
    # A 2048 px checkerboard of 1-px squares has mean 127.5: averaged, not aliased to black or white.
    board = ((np.indices((2048, 2048)).sum(axis=0) % 2) * 255).astype(np.uint8)
    crop = crop_roi(np.repeat(board[..., None], 3, axis=2), Roi(1024.0, 1024.0, 2048.0))
    assert abs(float(crop.mean()) - 127.5) < 2 and crop.std() < 4


def test_heatmap_refinement_is_the_weighted_window_mean():
    heat = np.full((1, 2, 64, 64), -30.0)  # sigmoid(-30) ~ 1e-13: empty
    heat[0, 0, 20, 10] = 30.0  # a sharp peak at (col 10, row 20) ...
    heat[0, 0, 20, 11] = 0.0  # ... and half a unit of weight beside it
    xy = np.array([[[9.0 * 4, 19.0 * 4], [300.0, 300.0]]])  # in input pixels (4 per heatmap cell)
    out = refine_from_heatmaps(xy, heat)
    # MediaPipe: x = sum(col * p) / sum(p) / 64 (normalised), p = sigmoid; (10 * 1 + 11 * 0.5) / 1.5.
    assert out[0, 0, 0] == pytest.approx((10 + 11 * 0.5) / 1.5 / 64 * INPUT_SIZE, rel=1e-9)
    assert out[0, 0, 1] == pytest.approx(20 / 64 * INPUT_SIZE, rel=1e-9)
    assert np.array_equal(out[0, 1], xy[0, 1])  # outside the heatmap: kept
    weak = np.full((1, 1, 64, 64), -1.0)  # peak sigmoid(-1) = 0.27 < 0.5: kept
    assert np.array_equal(refine_from_heatmaps(xy[:, :1], weak), xy[:, :1])


# ---------------------------------------------------------------------------------------------------
# Mapping to OpenPose


def standing_person() -> np.ndarray:
    """(1, 33, 5) landmarks of an upright person facing the camera in a 200 x 100 image (person's right
    on the image's left), all visible; z: face nearer than the ears."""
    lm = np.zeros((1, 33, 5))
    lm[..., 3:] = 0.99
    points = {
        "nose": (50, 20, -30), "left_eye": (54, 17, -28), "right_eye": (46, 17, -28),
        "left_ear": (58, 19, 0), "right_ear": (42, 19, 0), "left_shoulder": (65, 40, 0),
        "right_shoulder": (35, 40, 0), "left_elbow": (70, 70, 0), "right_elbow": (30, 70, 0),
        "left_wrist": (72, 95, 0), "right_wrist": (28, 95, 0), "left_hip": (60, 100, 0),
        "right_hip": (40, 100, 0), "left_knee": (60, 140, 0), "right_knee": (40, 140, 0),
        "left_ankle": (60, 180, 0), "right_ankle": (40, 180, 0),
    }  # fmt: skip
    for name, (x, y, z) in points.items():
        lm[0, BP[name], :3] = (x, y, z)
    return lm


def test_mapping_by_person_side_and_neck():
    kp = to_openpose(standing_person(), (200, 100))[0]
    assert kp.shape == (NUM_JOINTS, 2) and kp.dtype == np.int64
    assert tuple(kp[JOINT["Rsho"]]) == (35, 40) and tuple(kp[JOINT["Lsho"]]) == (65, 40)  # no mirroring
    assert tuple(kp[JOINT["neck"]]) == (50, 40)  # shoulders' midpoint
    assert tuple(kp[JOINT["Rank"]]) == (40, 180) and tuple(kp[JOINT["Lwri"]]) == (72, 95)
    # Joints 14-17 hold CMU's REye, LEye, REar, LEar (the field's files; the limb Rsho -> 16).
    assert tuple(kp[14]) == (46, 17) and tuple(kp[15]) == (54, 17)
    assert tuple(kp[16]) == (42, 19) and tuple(kp[17]) == (58, 19)


def test_visibility_and_image_bounds():
    lm = standing_person()
    lm[0, BP["left_wrist"], 3] = 0.49
    lm[0, BP["right_shoulder"], 3] = 0.2  # the neck needs both shoulders
    lm[0, BP["right_ankle"], :2] = (40, 200)  # rounds to row 200 of a 200-row image: outside
    kp = to_openpose(lm, (200, 100))[0]
    for joint in ("Lwri", "Rsho", "neck", "Rank"):
        assert tuple(kp[JOINT[joint]]) == (-1, -1), joint
    assert tuple(kp[JOINT["Lsho"]]) == (65, 40)


def test_face_dropped_when_seen_from_behind_and_far_ear_in_profile():
    torso = 60.0  # shoulders' midpoint (50, 40) to hips' midpoint (50, 100)
    lm = standing_person()
    lm[0, BP["nose"], 2] = 0.31 * torso  # nose behind the ears (z 0) by more than 0.3 torso lengths
    kp = to_openpose(lm, (200, 100))[0]
    assert (kp[[JOINT["nose"], 14, 15, 16, 17]] == -1).all()
    assert (kp[JOINT["neck"]] >= 0).all()
    lm = standing_person()
    lm[0, BP["right_ear"], 2] = 0.21 * torso  # right ear behind the left by more than 0.2: hidden
    kp = to_openpose(lm, (200, 100))[0]
    assert tuple(kp[16]) == (-1, -1) and tuple(kp[17]) == (58, 19) and (kp[JOINT["nose"]] >= 0).all()
    lm[0, BP["right_ear"], 2] = 0.19 * torso
    assert (to_openpose(lm, (200, 100))[0][16] >= 0).all()


def test_bad_images_are_refused_with_one_line():
    model = BlazePose.__new__(BlazePose)  # no model needed: the input check comes first
    model.batch_size = 8
    with pytest.raises(InputError, match=r"image 1: expected a uint8 \(H, W, 3\) RGB image, got float64"):
        model.estimate([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3))])
    with pytest.raises(InputError, match="image 0: expected"):
        model.estimate([np.zeros((8, 8), np.uint8)])


# ---------------------------------------------------------------------------------------------------
# The real model


def test_synthetic_people_are_found_where_they_are(pose_model):
    """On rendered people (exact keypoints, no ../shared needed) the neck and the hips' midpoint land
    within 8 % of the image height of the truth. (Left and right are not checked here: the rendered
    figures' faces are too plain for the model to tell front from back; the real-image test checks sides.)"""
    from deformgan.synth import render_sample

    samples = [render_sample(0, identity, 0, (256, 256)) for identity in range(6)]
    kp, detected, score = estimate_keypoints([s.image for s in samples], pose_model)
    assert kp.shape == (6, 18, 2) and kp.dtype == np.int64 and detected.all() and (score >= 0.5).all()
    errors = []
    for estimate, truth in zip(kp, (s.keypoints for s in samples), strict=True):
        hips = [JOINT["Rhip"], JOINT["Lhip"]]
        if (estimate[hips] >= 0).all() and (truth[hips] >= 0).all():
            errors.append(np.linalg.norm(estimate[hips].mean(0) - truth[hips].mean(0)))
        if (estimate[JOINT["neck"]] >= 0).all() and (truth[JOINT["neck"]] >= 0).all():
            errors.append(np.linalg.norm(estimate[JOINT["neck"]] - truth[JOINT["neck"]]))
    assert len(errors) >= 8 and np.median(errors) < 0.08 * 256


def test_no_person_is_not_detected(pose_model):
    """Featureless images: a flat grey, blurred noise, a smooth gradient. (Raw uniform noise is not used:
    the model's presence score can be high on it, see the module notes.)"""
    gray = np.full((128, 64, 3), 128, np.uint8)
    blurred = cv2.GaussianBlur(
        np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8), (0, 0), 5
    )
    gradient = np.repeat(np.linspace(0, 255, 300, dtype=np.uint8)[None, :, None], 200, axis=0).repeat(
        3, axis=2
    )
    result = pose_model.estimate([gray, blurred, gradient])
    assert not result.detected.any() and (result.keypoints == -1).all()


def test_batched_equals_one_by_one(pose_model, shared):
    """Batching (and image sizes mixed in one call) changes nothing: each image is its own ROI."""
    from PIL import Image

    strips = sorted((shared / "data" / "triplets" / "market").glob("*.png"))[:3]
    strips += sorted((shared / "data" / "triplets" / "deepfashion").glob("*.png"))[:2]
    images = []
    for path in strips:
        strip = np.asarray(Image.open(path).convert("RGB"))
        images.append(np.ascontiguousarray(strip[:, : strip.shape[1] // 3]))
    together = pose_model.estimate(images)
    for i, image in enumerate(images):
        alone = pose_model.estimate([image])
        assert np.abs(alone.keypoints[0] - together.keypoints[i]).max() <= 1
        assert alone.score[0] == pytest.approx(together.score[i], abs=1e-4)


def test_accuracy_against_openpose_on_real_images(pose_model, shared):
    """A slice of benchmarks/pose_accuracy.py: 24 real images, PCKh@0.5 against OpenPose. The benchmark
    measures 0.88 (Market) and 0.95 (DeepFashion) on 376 images; 0.8 leaves room for a small sample."""
    from PIL import Image

    annotations = read_annotations(shared / "data" / "annotations" / "market-annotation-train.csv")
    annotations.update(read_annotations(shared / "data" / "annotations" / "market-annotation-test.csv"))
    annotations.update(read_annotations(shared / "data" / "annotations" / "fasion-annotation-test.csv"))
    images, references = [], []
    for folder in ("market", "deepfashion"):
        for path in sorted((shared / "data" / "triplets" / folder).glob("*.png"))[:12]:
            name = path.name[: -len(".png")].split(".jpg_")[1]  # the target image
            if name not in annotations:
                continue
            strip = np.asarray(Image.open(path).convert("RGB"))
            width = strip.shape[1] // 3
            images.append(np.ascontiguousarray(strip[:, width : 2 * width]))
            references.append(annotations[name])
    assert len(images) >= 20
    result = pose_model.estimate(images)
    assert result.detected.mean() >= 0.95
    correct = total = 0
    head = [JOINT[n] for n in ("nose", "neck", "Leye", "Reye", "Lear", "Rear")]
    for estimate, reference in zip(result.keypoints, references, strict=True):
        points = reference[head][(reference[head] >= 0).all(axis=1)]
        if len(points) < 2 or (np.ptp(points, axis=0) == 0).any():
            continue
        box = np.ptp(points, axis=0)
        both = (estimate >= 0).all(axis=1) & (reference >= 0).all(axis=1)
        d = np.abs(estimate - reference)[both]
        correct += int(((d[:, 0] < 0.5 * box[0]) & (d[:, 1] < 0.5 * box[1])).sum())
        total += int(both.sum())
    assert total > 200 and correct / total >= 0.8

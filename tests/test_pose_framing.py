"""Framing a person from a photo: the box <-> frame transforms, crop and paste, and finding the person."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from deformgan.errors import InputError
from deformgan.keypoints import JOINT
from deformgan.pose.framing import (
    FRAMINGS,
    Framing,
    Person,
    find_person,
    frame_person,
    frame_sequence,
    framing_for,
)


def neutral_canvas(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A textured background with nothing person-like in it (blurred noise)."""
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 9)


def kp_of(points: dict[str, tuple[int, int]]) -> np.ndarray:
    kp = np.full((18, 2), -1, dtype=np.int64)
    for name, xy in points.items():
        kp[JOINT[name]] = xy
    return kp


# ---------------------------------------------------------------------------------------------------
# Transforms, crop, paste (no model)


def test_box_to_frame_transform_by_hand():
    framing = Framing(box=(10, 20, 128, 256), size=(128, 64), photo_size=(400, 300))  # half size
    kp = kp_of({"nose": (10, 20), "neck": (75, 151), "Rsho": (500, 20)})
    out = framing.to_frame(kp)
    assert tuple(out[JOINT["nose"]]) == (0, 0)  # (0 + 0.5) * 0.5 - 0.5 = -0.25 -> 0
    assert tuple(out[JOINT["neck"]]) == (32, 65)  # (65.5 * 0.5 - 0.5, 131.5 * 0.5 - 0.5) = (32.25, 65.25)
    assert tuple(out[JOINT["Rsho"]]) == (-1, -1)  # outside the frame
    assert tuple(out[JOINT["Lsho"]]) == (-1, -1)  # missing stays missing
    back = framing.to_photo(out)
    assert np.abs(back[JOINT["neck"]] - kp[JOINT["neck"]]).max() <= 1  # rounding at half resolution


def test_crop_and_keypoints_follow_the_same_transform():
    """A bright dot drawn at a photo keypoint shows up in the crop at framing.to_frame(keypoint)."""
    photo = np.zeros((600, 500, 3), np.uint8)
    points = {"nose": (260, 180), "Rank": (230, 420), "Lwri": (300, 330)}
    for x, y in points.values():
        cv2.circle(photo, (x, y), 4, (255, 255, 255), -1)
    framing = Framing(box=(200, 150, 150, 300), size=(128, 64), photo_size=photo.shape[:2])
    crop = framing.crop(photo)
    assert crop.shape == (128, 64, 3)
    mapped = framing.to_frame(kp_of(points))
    gray = cv2.GaussianBlur(crop[..., 0].astype(np.float32), (5, 5), 0)
    for name in points:
        x, y = mapped[JOINT[name]]
        window = gray[max(0, y - 6) : y + 7, max(0, x - 6) : x + 7]
        dy, dx = np.unravel_index(np.argmax(window), window.shape)
        assert abs(max(0, x - 6) + dx - x) <= 1 and abs(max(0, y - 6) + dy - y) <= 1, name


def test_crop_outside_the_photo_replicates_the_border():
    photo = np.zeros((100, 100, 3), np.uint8)
    photo[:, :, 1] = np.arange(100, dtype=np.uint8)[None, :]
    framing = Framing(box=(-50, 0, 100, 200), size=(200, 100), photo_size=(100, 100))  # 1:1, left half off
    crop = framing.crop(photo)
    assert (crop[:100, :50, 1] == 0).all() and np.array_equal(crop[:100, 50:, 1], photo[:, :50, 1])
    assert np.array_equal(crop[100:], np.repeat(crop[99:100], 100, axis=0))  # below the photo: last row
    with pytest.raises(InputError, match="lies outside"):
        Framing(box=(500, 500, 10, 20), size=(20, 10), photo_size=(100, 100)).crop(photo)


def test_paste_back_with_and_without_mask():
    photo = np.full((300, 200, 3), 10, np.uint8)
    framing = Framing(box=(150, 100, 64, 128), size=(128, 64), photo_size=(300, 200))  # sticks out right
    generated = np.full((128, 64, 3), 200, np.uint8)
    out = framing.paste(generated, photo)
    assert (out[100:228, 150:200] == 200).all()
    outside = np.ones((300, 200), bool)
    outside[100:228, 150:200] = False
    assert (out[outside] == 10).all() and (photo == 10).all()  # the photo itself is untouched
    half = framing.paste(generated, photo, mask=np.full((128, 64), 0.5))
    assert (half[100:228, 150:200] == 105).all()
    with pytest.raises(InputError, match="expected"):
        framing.paste(np.zeros((64, 32, 3), np.uint8), photo)


def test_framing_box_from_the_body_circle_by_hand():
    person = Person(np.full((18, 2), -1), np.zeros((33, 5)), centre=(99.5, 199.5), diameter=100.0, score=1.0)
    market = framing_for(person, (400, 300), (128, 64))
    h = round(FRAMINGS["market"].height_per_body * 100)  # 89
    w = round(h * 64 / 128)  # 44 (round half to even)
    cy = 200 + FRAMINGS["market"].centre_offset * 100  # continuous centre 200 - 1.2
    assert market.box == (round(100 - w / 2), round(cy - h / 2), w, h)
    fashion = framing_for(person, (400, 300), (256, 176))
    assert fashion.box[3] == round(FRAMINGS["deepfashion"].height_per_body * 100)
    assert fashion.box[1] < market.box[1]  # DeepFashion frames leave head room
    with pytest.raises(InputError, match="no framing style for frame size 100x100"):
        framing_for(person, (400, 300), (100, 100))


# ---------------------------------------------------------------------------------------------------
# Finding the person (real model)


def paste_person(
    canvas: np.ndarray, person: np.ndarray, x0: int, y0: int, scale: float
) -> tuple[np.ndarray, float]:
    big = cv2.resize(person, (round(person.shape[1] * scale), round(person.shape[0] * scale)))
    out = canvas.copy()
    out[y0 : y0 + big.shape[0], x0 : x0 + big.shape[1]] = big
    return out, big.shape[1] / person.shape[1]


def test_finds_a_synthetic_person_small_in_a_large_photo(pose_model):
    from deformgan.synth import render_sample

    sample = render_sample(0, 1, 0, (256, 256))
    photo, s = paste_person(neutral_canvas(900, 1200), sample.image, 760, 480, 1.3)
    framed = frame_person(photo, (128, 64), pose_model)
    truth = (sample.keypoints[JOINT["neck"]] + 0.5) * s - 0.5 + (760, 480)
    assert np.linalg.norm(framed.person.keypoints[JOINT["neck"]] - truth) < 0.08 * 256 * s
    assert framed.image.shape == (128, 64, 3) and (framed.keypoints < (64, 128)).all()
    assert framed.framing.box[0] > 600  # the box is on the person, not on the photo's centre


def test_real_person_keypoints_carry_into_the_frame(pose_model, shared):
    """A real DeepFashion person pasted at 0.8x into a 600 x 800 photo: the keypoints found in the photo
    agree with OpenPose's annotation of the original image (mapped the same way) within half a head."""
    from PIL import Image

    from deformgan.keypoints import read_annotations

    strip_path = sorted((shared / "data" / "triplets" / "deepfashion").glob("*.png"))[5]
    source = strip_path.name.split(".jpg_")[0] + ".jpg"
    reference = read_annotations(shared / "data" / "annotations" / "fasion-annotation-test.csv")[source]
    person = np.ascontiguousarray(np.asarray(Image.open(strip_path).convert("RGB"))[:, :256])
    photo, s = paste_person(neutral_canvas(600, 800), person, 60, 300, 0.8)
    found = find_person(photo, pose_model)
    truth = np.where(reference >= 0, (reference + 0.5) * s - 0.5 + (60, 300), -1)
    both = (found.keypoints >= 0).all(axis=1) & (truth >= 0).all(axis=1)
    head = np.ptp(truth[[JOINT["nose"], JOINT["neck"]]], axis=0).max()
    assert both.sum() >= 10
    assert np.median(np.linalg.norm(found.keypoints[both] - truth[both], axis=1)) < 0.5 * head


def test_photo_without_person_is_refused(pose_model):
    with pytest.raises(InputError, match=r"me\.jpg: no person found \(best pose-presence score") as error:
        frame_person(neutral_canvas(480, 640), (128, 64), pose_model, where="me.jpg")
    assert "\n" not in str(error.value)


def test_frame_sequence_follows_a_moving_person(pose_model):
    """A person sliding across a large photo, 24 px a frame: the box follows, and since only the place
    changes, the framed keypoints barely move (the frame is tied to the body, as in Market's tracking
    crops)."""
    from deformgan.synth import render_sample

    person = render_sample(0, 1, 0, (256, 256)).image
    canvas = neutral_canvas(700, 900, seed=3)
    frames = [paste_person(canvas, person, 100 + 24 * t, 300, 1.0)[0] for t in range(8)]
    framed = frame_sequence(frames, (128, 64), fps=25, model=pose_model)
    assert framed.images.shape == (8, 128, 64, 3) and framed.keypoints.shape == (8, 18, 2)
    assert (framed.score >= 0.5).all()
    x0 = np.array([f.box[0] for f in framed.framings])
    assert (np.diff(x0) > 0).all() and 100 < x0[-1] - x0[0] < 24 * 7 + 20  # follows (smoothing may lag)
    neck = framed.keypoints[:, JOINT["neck"]]
    assert (neck >= 0).all() and np.ptp(neck[:, 1]) <= 3
    with pytest.raises(InputError, match="no person found in any of the 2 frames"):
        frame_sequence([canvas, canvas], (128, 64), fps=25, model=pose_model)

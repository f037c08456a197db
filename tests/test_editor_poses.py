"""Editor pose I/O: keypoint checks, our CSV row, OpenPose JSON (COCO-18 and BODY_25), mirror, templates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deformgan.editor.poses import (
    COCO18_FROM_BODY25,
    annotation_csv,
    check_keypoints,
    from_openpose_json,
    mirror_permutation,
    template_pose,
    to_openpose_json,
)
from deformgan.editor.session import whole_photo_box
from deformgan.errors import InputError
from deformgan.keypoints import JOINT, JOINT_NAMES, SKELETON_LIMBS, read_annotations

SIZE = (128, 64)


def a_pose() -> np.ndarray:
    kp = template_pose(SIZE)
    kp[JOINT["Lwri"]] = -1  # one hidden joint
    return kp


def test_openpose_json_round_trip_and_hidden_joint_is_zero_triple():
    kp = a_pose()
    text = to_openpose_json(kp, SIZE)
    document = json.loads(text)
    triples = np.asarray(document["people"][0]["pose_keypoints_2d"]).reshape(18, 3)
    # OpenPose's convention (doc/02_output.md): an undetected joint is 0, 0, 0; ours shown with c = 1.
    assert triples[JOINT["Lwri"]].tolist() == [0, 0, 0]
    assert triples[JOINT["Rwri"]].tolist() == [*kp[JOINT["Rwri"]], 1]
    assert (document["canvas_width"], document["canvas_height"]) == (64, 128)
    (back,) = from_openpose_json(text, SIZE)
    assert back.dtype == np.int64 and np.array_equal(back, kp)


def test_openpose_json_from_other_tools():
    """Floats rounded, confidence > 0 = shown, no canvas fields = model-frame pixels, several people."""
    first = [10.4, 20.6, 0.3] + [0, 0, 0] * 17
    second = [0, 0, 0] * 17 + [63.0, 127.0, 0.9]
    text = json.dumps({"people": [{"pose_keypoints_2d": first}, {"pose_keypoints_2d": second}]})
    a, b = from_openpose_json(text, SIZE)
    assert a[0].tolist() == [10, 21] and (a[1:] == -1).all()
    assert b[17].tolist() == [63, 127] and (b[:17] == -1).all()


def test_openpose_body25_is_mapped_to_coco18():
    """BODY_25 has a mid-hip at 8 and feet at 19-24 (OpenPose's POSE_BODY_25_BODY_PARTS): joint j of the
    file is written with x = j, so each of our joints must read the BODY_25 index it maps from."""
    values = []
    for j in range(25):
        values += [float(j), 100.0, 1.0]
    (kp,) = from_openpose_json(json.dumps({"people": [{"pose_keypoints_2d": values}]}), SIZE)
    assert kp[:, 0].tolist() == list(COCO18_FROM_BODY25)
    assert kp[JOINT["Rhip"], 0] == 9 and kp[JOINT["Lank"], 0] == 14 and kp[17, 0] == 18


def test_openpose_canvas_scaled_to_the_frame():
    """A 256 x 512 (W x H) canvas into the 64 x 128 frame: pixel index p -> (p + 0.5) / 4 - 0.5, rounded."""
    values = [100.0, 200.0, 1.0] + [0, 0, 0] * 17
    text = json.dumps({"canvas_width": 256, "canvas_height": 512, "people": [{"pose_keypoints_2d": values}]})
    (kp,) = from_openpose_json(text, SIZE)
    assert kp[0].tolist() == [25, 50]  # (24.625, 49.625) rounded


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"people": []}', "empty"),
        ('{"people": [{"pose_keypoints_2d": [1, 2, 3]}]}', "expected 54"),
        ('{"people": [{"face": []}]}', "no 'pose_keypoints_2d'"),
        ('{"people": [{"pose_keypoints_2d": ' + json.dumps([70, 5, 1] + [0] * 51) + "}]}", "joint nose"),
        ('{"people": [{"pose_keypoints_2d": ' + json.dumps(["a"] * 54) + "}]}", "expected numbers"),
        ('{"canvas_width": 0, "canvas_height": 5, "people": [{}]}', "must be > 0"),
    ],
)
def test_openpose_bad_files(text, message):
    with pytest.raises(InputError, match=message):
        from_openpose_json(text, SIZE, "pose.json")


def test_annotation_csv_row_reads_back(tmp_path: Path):
    kp = a_pose()
    path = tmp_path / "pose.csv"
    path.write_text(annotation_csv("me-pose", kp))
    assert list(read_annotations(path)) == ["me-pose"]
    assert np.array_equal(read_annotations(path)["me-pose"], kp)
    with pytest.raises(InputError, match="without ':'"):
        annotation_csv("a:b", kp)


def test_check_keypoints():
    kp = a_pose()
    assert np.array_equal(check_keypoints(kp.tolist(), SIZE, "pose"), kp)
    with pytest.raises(InputError, match="whole pixels"):
        check_keypoints(kp + 0.5, SIZE, "pose")
    half = kp.copy()
    half[3, 0] = -1
    with pytest.raises(InputError, match="joint Relb has only one coordinate"):
        check_keypoints(half, SIZE, "pose")
    outside = kp.copy()
    outside[JOINT["Rank"]] = (10, 128)
    with pytest.raises(InputError, match=r"joint Rank at \(x=10, y=128\) lies outside the 64x128"):
        check_keypoints(outside, SIZE, "target pose")
    with pytest.raises(InputError, match="18 \\[x, y\\] pairs"):
        check_keypoints(kp[:5], SIZE, "pose")
    with pytest.raises(InputError, match="pairs of numbers"):
        check_keypoints([["a", "b"]] * 18, SIZE, "pose")


def test_mirror_permutation_swaps_sides_from_the_names():
    perm = mirror_permutation()
    assert [perm[p] for p in perm] == list(range(18))  # an involution
    assert perm[JOINT["nose"]] == JOINT["nose"] and perm[JOINT["neck"]] == JOINT["neck"]
    for i, name in enumerate(JOINT_NAMES):
        if name[0] in "LR":
            assert JOINT_NAMES[perm[i]] == {"L": "R", "R": "L"}[name[0]] + name[1:]
    # The skeleton's bones map onto bones: a mirrored pose is drawn with the same limbs.
    bones = {frozenset(b) for b in SKELETON_LIMBS}
    assert {frozenset((perm[a], perm[b])) for a, b in SKELETON_LIMBS} == bones


@pytest.mark.parametrize("size", [(128, 64), (256, 256), (256, 176)])
def test_template_pose_fits_and_faces_the_camera(size):
    kp = template_pose(size)
    assert (kp >= 0).all() and (kp[:, 0] < size[1]).all() and (kp[:, 1] < size[0]).all()
    # Frontal: the person's right side is on the image's left (joint 14 is the right eye in the files).
    for right, left in (("Rsho", "Lsho"), ("Rhip", "Lhip"), ("Rwri", "Lwri")):
        assert kp[JOINT[right], 0] < kp[JOINT[left], 0]
    assert kp[14, 0] < kp[15, 0] and kp[16, 0] < kp[17, 0]
    assert kp[JOINT["Rank"], 1] > kp[JOINT["Rkne"], 1] > kp[JOINT["Rhip"], 1] > kp[JOINT["neck"], 1]


def test_whole_photo_box_by_hand():
    # 300 x 400 (H x W) photo into a 1:2 (W:H) frame: full width 400, height 800, centred: y0 = -250.
    assert whole_photo_box((300, 400), (128, 64)) == (0, -250, 400, 800)
    # 1000 x 100 photo (taller than 1:2): full height, width 500, x0 = -200.
    assert whole_photo_box((1000, 100), (128, 64)) == (-200, 0, 500, 1000)
    assert whole_photo_box((128, 64), (128, 64)) == (0, 0, 64, 128)  # already a frame: identity

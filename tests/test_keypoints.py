"""Keypoints: the annotation/pairs CSV formats, Gaussian heatmaps, skeleton drawing."""

from __future__ import annotations

import numpy as np
import pytest

from deformgan.errors import InputError
from deformgan.keypoints import (
    JOINT,
    JOINT_NAMES,
    NUM_JOINTS,
    draw_skeleton,
    read_annotations,
    read_pairs,
    write_annotations,
    write_pairs,
)

HEADER = "name:keypoints_y:keypoints_x\n"
ROW = (
    "0364_c2s1_084546_01.jpg: [14, 28, 29, 50, 65, 28, 41, 27, 68, 96, 112, 67, 93, 119, 12, -1, 14, -1]: "
    "[45, 30, 20, 18, 31, 40, 54, 48, 26, 20, 2, 44, 51, 53, 41, -1, 30, -1]\n"
)


def _write(tmp_path, text, name="a.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reader_converts_to_xy(tmp_path):
    """The file stores rows (y) then columns (x); the API is (x, y). Row above: nose y=14, x=45."""
    annotations = read_annotations(_write(tmp_path, "name:keypoints_y:keypoints_x\n" + ROW))
    kp = annotations["0364_c2s1_084546_01.jpg"]
    assert kp.shape == (NUM_JOINTS, 2) and kp.dtype == np.int64
    assert tuple(kp[JOINT["nose"]]) == (45, 14)
    assert tuple(kp[JOINT["Reye"]]) == (-1, -1)


def test_round_trip_is_byte_exact(tmp_path):
    text = "name:keypoints_y:keypoints_x\n" + ROW
    source = _write(tmp_path, text)
    write_annotations(tmp_path / "b.csv", read_annotations(source))
    assert (tmp_path / "b.csv").read_text() == text
    pairs = [("a.jpg", "b.jpg"), ("b.jpg", "a.jpg")]
    write_pairs(tmp_path / "p.csv", pairs)
    assert (tmp_path / "p.csv").read_text() == "from,to\na.jpg,b.jpg\nb.jpg,a.jpg\n"
    assert read_pairs(tmp_path / "p.csv") == pairs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,keypoints\n", "row 1: expected the header"),
        ("name:keypoints_y:keypoints_x\nx.jpg: [1, 2]: [3, 4]\n", "row 2: keypoints_y must be a list of 18"),
        ("name:keypoints_y:keypoints_x\nx.jpg: [1, 2\n", "row 2: expected 3 colon-separated fields"),
        ("name:keypoints_y:keypoints_x\nx.jpg: [a]: [b]\n", "row 2: keypoints_y is not a list of integers"),
        ("name:keypoints_y:keypoints_x\n" + ROW + ROW, "row 3: duplicate image name"),
        (
            "name:keypoints_y:keypoints_x\nx.jpg: [" + ", ".join(["-1"] + ["5"] * 17) + "]: ["
            + ", ".join(["3"] * 18) + "]\n",
            "joint nose has only one coordinate set to -1",
        ),
        (HEADER + ROW.replace("[14,", "[99999999999999999999999,"), "beyond 1048576 pixels"),
        (HEADER + ROW.replace("0364_c2s1", "../../etc/0364_c2s1"), "not a plain image file"),
        (HEADER + ROW.replace("0364_c2s1", "/abs/0364_c2s1"), "not a plain image file"),
        ("name:keypoints_y:keypoints_x\nx.jpg: [" + "[" * 5000 + "]: []\n", "keypoints_y is not a list"),
    ],
)  # fmt: skip
def test_malformed_annotations_name_file_and_row(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(InputError, match=message) as error:
        read_annotations(path)
    assert str(path) in str(error.value)


def test_byte_order_mark_is_accepted_and_bad_bytes_name_the_row(tmp_path):
    """Spreadsheets write a UTF-8 BOM before the header: accepted. A Latin-1 byte: one line naming the row."""
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + ("name:keypoints_y:keypoints_x\n" + ROW).encode())
    assert list(read_annotations(path)) == ["0364_c2s1_084546_01.jpg"]
    pairs = tmp_path / "bom-pairs.csv"
    pairs.write_bytes(b"\xef\xbb\xbffrom,to\na.jpg,b.jpg\n")
    assert read_pairs(pairs) == [("a.jpg", "b.jpg")]
    latin = tmp_path / "latin.csv"
    latin.write_bytes(("name:keypoints_y:keypoints_x\n" + ROW).encode() + b"caf\xe9.jpg: [1]: [2]\n")
    with pytest.raises(InputError, match=r"latin.csv: row 3: not UTF-8 text \(byte 0xe9 at column 4\)"):
        read_annotations(latin)
    with pytest.raises(InputError, match="row 2: '..' is not a plain image file name"):
        read_pairs(_write(tmp_path, "from,to\n..,b.jpg\n"))


def test_missing_files(tmp_path):
    with pytest.raises(InputError, match="annotation file not found"):
        read_annotations(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="pairs file not found"):
        read_pairs(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="row 2: expected two image names"):
        read_pairs(_write(tmp_path, "from,to\na.jpg\n"))


def test_real_annotation_files_parse(shared):
    """The real Market file: 12,936 annotated training images (shared/README.md), all (18, 2)."""
    annotations = read_annotations(shared / "data/annotations/market-annotation-train.csv")
    assert len(annotations) == 12936
    assert all(kp.shape == (18, 2) for kp in annotations.values())


def test_draw_skeleton():
    kp = np.full((18, 2), -1)
    kp[JOINT["Rsho"]] = (10, 10)
    kp[JOINT["Relb"]] = (10, 40)
    image = draw_skeleton(kp, (64, 32))
    assert image.shape == (64, 32, 3) and image.dtype == np.uint8
    assert image[25, 10].any()  # on the bone
    assert not image[25, 25].any()  # off the bone
    assert len(JOINT_NAMES) == 18

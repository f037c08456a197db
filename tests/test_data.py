"""Tests for deformgan.data: layout discovery, pair generation, PairDataset items and its error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deformgan.data import (
    PRESETS,
    DatasetPreset,
    PairDataset,
    find_layout,
    load_image,
    make_pairs,
    write_pair_files,
)
from deformgan.errors import InputError
from deformgan.keypoints import (
    JOINT,
    MISSING,
    read_annotations,
    read_pairs,
    write_annotations,
    write_pairs,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
ANNOTATIONS = SHARED / "data" / "annotations"


def shared_annotations() -> Path:
    if not ANNOTATIONS.is_dir():
        pytest.skip("../shared absent: real annotation CSVs (shared/data/annotations) not available")
    return ANNOTATIONS


# ----------------------------------------------------------------------------------------------
# Tiny datasets


def pose(x0: int = 20, y0: int = 20) -> np.ndarray:
    """A full (18, 2) (x, y) pose with distinct coordinates; every joint present."""
    return np.array([[x0 + (j % 6), y0 + 4 * j] for j in range(18)], dtype=np.int64)


def write_image(path: Path, size: tuple[int, int], color=(0, 0, 0), pixels: np.ndarray | None = None) -> None:
    height, width = size
    array = np.zeros((height, width, 3), np.uint8) + np.uint8(color) if pixels is None else pixels
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_dataset(
    root: Path,
    train: dict[str, np.ndarray],
    test: dict[str, np.ndarray] | None = None,
    size: tuple[int, int] = (128, 64),
    prefix: str = "market",
    train_pairs: list[tuple[str, str]] | None = None,
    test_pairs: list[tuple[str, str]] | None = None,
) -> Path:
    """Write images (black PNGs) + annotations (+ pairs) in the reference layout."""
    for split, split_annotations in (("train", train), ("test", test or {})):
        for name in split_annotations:
            write_image(root / f"{prefix}-dataset" / split / name, size)
        if split_annotations or split == "train":
            write_annotations(root / f"{prefix}-annotation-{split}.csv", split_annotations)
    if train_pairs is not None:
        write_pairs(root / f"{prefix}-pairs-train.csv", train_pairs)
    if test_pairs is not None:
        write_pairs(root / f"{prefix}-pairs-test.csv", test_pairs)
    return root


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    train = {"0001_a.png": pose(10, 10), "0001_b.png": pose(30, 12), "0002_a.png": pose(5, 2)}
    test = {"0003_a.png": pose(12, 30), "0003_b.png": pose(14, 40)}
    return make_dataset(
        tmp_path,
        train,
        test,
        train_pairs=[("0001_a.png", "0001_b.png"), ("0001_b.png", "0001_a.png")],
        test_pairs=[("0003_a.png", "0003_b.png")],
    )


# ----------------------------------------------------------------------------------------------
# Layout discovery


def test_find_layout_infers_the_prefix(tiny: Path):
    layout = find_layout(tiny)
    assert layout.prefix == "market"
    assert layout.image_dirs == {"train": tiny / "market-dataset/train", "test": tiny / "market-dataset/test"}
    assert layout.annotation_files["test"] == tiny / "market-annotation-test.csv"
    assert layout.pairs_files["train"] == tiny / "market-pairs-train.csv"
    assert layout.existing_annotation_files() == [
        tiny / "market-annotation-train.csv",
        tiny / "market-annotation-test.csv",
    ]


def test_find_layout_several_prefixes_asks_for_prefix(tiny: Path):
    make_dataset(tiny, {"0009_a.png": pose()}, prefix="synth")
    with pytest.raises(InputError, match=r"several datasets \(market, synth\); choose one with prefix="):
        find_layout(tiny)
    assert find_layout(tiny, prefix="synth").prefix == "synth"


def test_find_layout_missing_pieces(tmp_path: Path):
    with pytest.raises(InputError, match="dataset folder not found"):
        find_layout(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no dataset found, expected <prefix>-dataset"):
        find_layout(tmp_path)
    write_annotations(tmp_path / "market-annotation-train.csv", {"0001_a.png": pose()})
    with pytest.raises(InputError, match=r"market-dataset: image folder not found"):
        find_layout(tmp_path)
    (tmp_path / "market-dataset").mkdir()
    with pytest.raises(InputError, match="expected a train/ or test/ image folder"):
        find_layout(tmp_path)
    (tmp_path / "market-dataset" / "test").mkdir()
    (tmp_path / "market-annotation-train.csv").unlink()
    (tmp_path / "market-pairs-test.csv").write_text("from,to\n")
    with pytest.raises(InputError, match="no keypoint annotations, expected market-annotation-train.csv"):
        find_layout(tmp_path)


# ----------------------------------------------------------------------------------------------
# Items


def test_item_shapes_ranges_dtypes(tiny: Path):
    dataset = PairDataset(tiny, split="train")
    assert len(dataset) == 2
    item = dataset[0]
    for key in ("source_image", "target_image"):
        assert item[key].shape == (3, 128, 64) and item[key].dtype == torch.float32
        # black PNGs: (0 / 255 - 0.5) * 2 = -1 everywhere
        assert torch.equal(item[key], torch.full((3, 128, 64), -1.0))
    for key in ("source_kp", "target_kp"):
        assert item[key].shape == (18, 2) and item[key].dtype == torch.float32
    assert (item["source_name"], item["target_name"]) == ("0001_a.png", "0001_b.png")
    assert torch.equal(item["source_kp"], torch.from_numpy(pose(10, 10)).float())
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["source_image"].shape == (2, 3, 128, 64)
    assert batch["target_name"] == ["0001_b.png", "0001_a.png"]


def test_load_image_value_mapping(tmp_path: Path):
    pixels = np.zeros((4, 2, 3), np.uint8)
    pixels[0, 0] = (0, 128, 255)
    write_image(tmp_path / "x.png", (4, 2), pixels=pixels)
    image = load_image(tmp_path / "x.png", DatasetPreset("tiny", (4, 2)))
    # (I / 255 - 0.5) * 2 (the authors' loader): 0 -> -1, 255 -> 1, 128 -> 1/255; channels stay R, G, B.
    assert image[:, 0, 0].tolist() == pytest.approx([-1.0, 1 / 255, 1.0], abs=1e-6)


def test_keypoints_are_x_y(tmp_path: Path):
    """A bright pixel drawn at (row 100, column 10) must be where the keypoint (x, y) says."""
    kp = pose(20, 20)
    kp[JOINT["nose"]] = (10, 100)  # x = column 10, y = row 100
    make_dataset(
        tmp_path, {"0001_a.png": kp, "0001_b.png": pose()}, train_pairs=[("0001_a.png", "0001_b.png")]
    )
    pixels = np.zeros((128, 64, 3), np.uint8)
    pixels[100, 10] = 255
    write_image(tmp_path / "market-dataset/train/0001_a.png", (128, 64), pixels=pixels)
    item = PairDataset(tmp_path)[0]
    x, y = item["source_kp"][JOINT["nose"]].long().tolist()
    assert (x, y) == (10, 100)
    bright = (item["source_image"][0] == 1.0).nonzero().tolist()
    assert bright == [[y, x]]


def test_deepfashion_176_crop(tmp_path: Path):
    kp = pose(60, 20)
    kp[JOINT["Rear"]] = MISSING
    kp[JOINT["Lear"]] = (39, 50)  # lands on x = -1 after the crop: ambiguous with "missing", dropped
    kp[JOINT["Leye"]] = (30, 50)  # outside the crop: kept at x = -10, as PATN does
    make_dataset(
        tmp_path,
        {"0001_a.png": kp, "0001_b.png": pose(70, 20)},
        size=(256, 256),
        prefix="fasion",
        train_pairs=[("0001_a.png", "0001_b.png")],
    )
    # Encode the column index in the red channel so the crop position can be read back.
    pixels = np.zeros((256, 256, 3), np.uint8)
    pixels[..., 0] = np.arange(256, dtype=np.uint8)[None, :]
    write_image(tmp_path / "fasion-dataset/train/0001_a.png", (256, 256), pixels=pixels)
    item = PairDataset(tmp_path, preset="deepfashion-176")[0]
    image = item["source_image"]
    assert image.shape == (3, 256, 176)
    columns = torch.round((image[0, 0] / 2 + 0.5) * 255).long()
    assert columns.tolist() == list(range(40, 216))  # columns 40..215 of the 256-wide image
    expected = kp.astype(np.float32)
    expected[:, 0] -= 40
    expected[JOINT["Rear"]] = MISSING
    expected[JOINT["Lear"]] = MISSING
    assert torch.equal(item["source_kp"], torch.from_numpy(expected))
    assert item["source_kp"][JOINT["Leye"]].tolist() == [-10.0, 50.0]
    assert PRESETS["deepfashion-176"].native_size == (256, 256)


def test_images_looked_up_in_train_then_test(tmp_path: Path):
    make_dataset(
        tmp_path,
        {"0001_a.png": pose()},
        {"0001_b.png": pose()},
        train_pairs=[("0001_a.png", "0001_b.png")],
    )
    # The same name in both folders: the train image wins (the authors' lookup order).
    write_image(tmp_path / "market-dataset/test/0001_a.png", (128, 64), color=(255, 255, 255))
    item = PairDataset(tmp_path)[0]
    assert item["source_image"].max() == -1.0  # black train copy, not the white test copy
    assert item["target_name"] == "0001_b.png"  # found in the test folder only


def test_explicit_pairs_and_annotations(tiny: Path):
    dataset = PairDataset(
        tiny,
        split="test",
        pairs=[("0001_a.png", "0003_a.png")],
        annotations=[tiny / "market-annotation-train.csv", tiny / "market-annotation-test.csv"],
    )
    assert (dataset[0]["source_name"], dataset[0]["target_name"]) == ("0001_a.png", "0003_a.png")
    assert len(PairDataset(tiny, split="test")) == 1  # the test pairs CSV by default
    custom = DatasetPreset("small", (128, 64))
    assert PairDataset(tiny, preset=custom).preset.native_size == (128, 64)


# ----------------------------------------------------------------------------------------------
# Error messages


def test_error_unannotated_name(tiny: Path):
    write_pairs(tiny / "market-pairs-train.csv", [("0001_a.png", "0001_b.png"), ("0001_a.png", "9999_x.png")])
    with pytest.raises(
        InputError, match=r"market-pairs-train.csv: row 3: image '9999_x.png' has no keypoints"
    ):
        PairDataset(tiny)


def test_error_missing_image(tiny: Path):
    (tiny / "market-dataset/train/0001_b.png").unlink()
    with pytest.raises(
        InputError, match=r"market-pairs-train.csv: row 2: image file '0001_b.png' not found in"
    ):
        PairDataset(tiny)


def test_error_wrong_image_size(tiny: Path):
    write_image(tiny / "market-dataset/train/0001_b.png", (100, 50))
    dataset = PairDataset(tiny)  # construction decodes nothing
    message = r"0001_b.png: expected a 128x64 \(HxW\) image, got 100x50"
    with pytest.raises(InputError, match=message):
        dataset[0]
    with pytest.raises(InputError, match=message):
        dataset.check_images()
    assert PairDataset(tiny, split="test").check_images() == 2


def test_error_incomplete_torso(tmp_path: Path):
    kp = pose()
    kp[JOINT["Lhip"]] = MISSING
    empty = np.full((18, 2), MISSING)
    make_dataset(
        tmp_path,
        {"0001_a.png": pose(), "0001_b.png": kp, "0001_c.png": empty},
        train_pairs=[("0001_a.png", "0001_b.png")],
        test_pairs=[],
    )
    with pytest.raises(
        InputError, match=r"row 2: image '0001_b.png' lacks torso joint\(s\) Lhip; .*allow_incomplete"
    ):
        PairDataset(tmp_path)
    with pytest.raises(
        InputError, match=r"item 0: image '0001_c.png' lacks torso joint\(s\) Rhip, Lhip, Lsho, Rsho"
    ):
        PairDataset(tmp_path, pairs=[("0001_c.png", "0001_a.png")])
    assert len(PairDataset(tmp_path, allow_incomplete_torso=True)) == 1


def test_error_malformed_annotation_row(tiny: Path):
    path = tiny / "market-annotation-test.csv"
    path.write_text(path.read_text() + "0003_c.png: [1, 2]: [3, 4]\n")
    with pytest.raises(
        InputError, match=r"market-annotation-test.csv: row 4: keypoints_y must be a list of 18"
    ):
        PairDataset(tiny)


def test_error_missing_pairs_file_and_bad_arguments(tiny: Path):
    (tiny / "market-pairs-test.csv").unlink()
    with pytest.raises(
        InputError, match=r"market-pairs-test.csv: pairs file not found \(create it with .*write_pair_files"
    ):
        PairDataset(tiny, split="test")
    with pytest.raises(InputError, match="split: expected 'train' or 'test', got 'val'"):
        PairDataset(tiny, split="val")
    with pytest.raises(
        InputError, match="unknown dataset preset 'celeb', expected one of market, deepfashion"
    ):
        PairDataset(tiny, preset="celeb")
    with pytest.raises(InputError, match=r"pairs: item 0: expected a \(source, target\) pair"):
        PairDataset(tiny, pairs=[("0001_a.png",)])
    with pytest.raises(InputError, match="also annotated in"):
        PairDataset(tiny, annotations=[tiny / "market-annotation-train.csv"] * 2)


# ----------------------------------------------------------------------------------------------
# Pair generation


def test_make_pairs_counts_order_and_filters():
    no_torso = pose()
    no_torso[JOINT["Rsho"]] = MISSING
    annotations = {
        "0002_c1.jpg": pose(),
        "0001_c1.jpg": pose(),
        "0002_c2.jpg": pose(),
        "0001_c2.jpg": pose(),
        "0002_c3.jpg": pose(),
        "0001_c3.jpg": no_torso,  # incomplete torso: dropped
        "0000_c1.jpg": pose(),  # Market distractors: dropped
        "0000_c2.jpg": pose(),
        "-1_c1.jpg": pose(),  # Market junk: dropped
        "-1_c2.jpg": pose(),
        "0003_c1.jpg": pose(),  # a single image makes no pair
    }
    pairs = make_pairs(annotations)
    # identity 0002 has 3 valid images -> 3 * 2 = 6 ordered pairs, 0001 has 2 -> 2, 0003 has 1 -> 0;
    # identities in order of first appearance, permutations in file order (reference pd.unique + permutations)
    assert pairs == [
        ("0002_c1.jpg", "0002_c2.jpg"),
        ("0002_c1.jpg", "0002_c3.jpg"),
        ("0002_c2.jpg", "0002_c1.jpg"),
        ("0002_c2.jpg", "0002_c3.jpg"),
        ("0002_c3.jpg", "0002_c1.jpg"),
        ("0002_c3.jpg", "0002_c2.jpg"),
        ("0001_c1.jpg", "0001_c2.jpg"),
        ("0001_c2.jpg", "0001_c1.jpg"),
    ]


def test_make_pairs_test_sampling():
    annotations = {f"{i // 5:04d}_{i}.jpg": pose() for i in range(5, 45)}  # 8 identities x 5 images
    every = make_pairs(annotations)
    assert len(every) == 8 * 5 * 4
    sample = make_pairs(annotations, test_sample=50)
    assert sample == make_pairs(annotations, test_sample=50, seed=0)  # deterministic
    assert sample != make_pairs(annotations, test_sample=50, seed=1)
    assert len(set(sample)) == 50 and set(sample) <= set(every)  # without replacement, from the pairs
    # min(test_sample, N): asking for more than exist returns every pair, shuffled
    assert sorted(make_pairs(annotations, test_sample=10_000)) == sorted(every)
    with pytest.raises(InputError, match="test_sample"):
        make_pairs(annotations, test_sample=-1)


def test_write_pair_files(tmp_path: Path):
    train = {f"{i // 3:04d}_{i}.png": pose() for i in range(3, 12)}  # 3 identities x 3 -> 18 pairs
    test = {f"{i // 4:04d}_{i}.png": pose() for i in range(20, 28)}  # 2 identities x 4 -> 24 pairs
    make_dataset(tmp_path, train, test, prefix="synth")
    written = write_pair_files(tmp_path, test_sample=10)
    assert written == {
        "train": (tmp_path / "synth-pairs-train.csv", 18),
        "test": (tmp_path / "synth-pairs-test.csv", 10),
    }
    assert read_pairs(tmp_path / "synth-pairs-train.csv") == make_pairs(train)
    assert read_pairs(tmp_path / "synth-pairs-test.csv") == make_pairs(test, test_sample=10)
    assert len(PairDataset(tmp_path, split="test")) == 10
    with pytest.raises(InputError, match="synth-pairs-train.csv: pairs file already exists"):
        write_pair_files(tmp_path)
    (tmp_path / "synth-dataset/test/0005_20.png").unlink()
    with pytest.raises(
        InputError, match=r"synth-annotation-test.csv: 1 annotated image\(s\) not found .*'0005_20.png'"
    ):
        write_pair_files(tmp_path, overwrite=True)


# ----------------------------------------------------------------------------------------------
# Real annotation files (../shared)


def test_real_csv_round_trip(tmp_path: Path):
    """read -> write reproduces every real annotation and pairs CSV byte for byte."""
    csvs = sorted(shared_annotations().rglob("*.csv"))
    assert len(csvs) >= 5
    for path in csvs:
        out = tmp_path / path.name
        if "-annotation-" in path.name:
            write_annotations(out, read_annotations(path))
        else:
            write_pairs(out, read_pairs(path))
        assert out.read_bytes() == path.read_bytes(), path


def test_standard_test_pairs_are_reproduced():
    """make_pairs(test annotations, test_sample=12000) regenerates the published test pairs exactly.

    This holds for the standard 12,000 Market pairs (used by Def-GAN, PATN and later work) and for the
    authors' own DeepFashion split (8,670 pairs: fewer than 12,000, so the draw is a permutation of all).
    """
    root = shared_annotations()
    cases = [
        ("market-annotation-test.csv", "market-pairs-test.csv"),
        ("defgan-split/fasion-annotation-test.csv", "defgan-split/fasion-pairs-test.csv"),
    ]
    for annotation_file, pairs_file in cases:
        pairs = make_pairs(read_annotations(root / annotation_file), test_sample=12000, seed=0)
        assert pairs == read_pairs(root / pairs_file), pairs_file


def test_real_market_pairs_satisfy_the_rules():
    """Whatever the draw, every standard Market test pair is same-identity, complete-torso, no distractor."""
    root = shared_annotations()
    annotations = read_annotations(root / "market-annotation-test.csv")
    pairs = read_pairs(root / "market-pairs-test.csv")
    torso = [JOINT[n] for n in ("Rsho", "Lsho", "Rhip", "Lhip")]
    assert len(pairs) == 12000
    for source, target in pairs:
        assert source.split("_")[0] == target.split("_")[0] and source != target
        for name in (source, target):
            assert not name.startswith(("-1", "0000")), name
            assert (annotations[name][torso] != MISSING).all(), name


def test_real_market_train_pair_count():
    """The reference's pair rules on the Market train annotations give its 263,632 train pairs
    (``create_pairs_dataset.py``).
    """
    pairs = make_pairs(read_annotations(shared_annotations() / "market-annotation-train.csv"))
    assert len(pairs) == 263_632

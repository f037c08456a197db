"""Re-ID data layouts (deformgan.reid.data): Market-1501 names and folders, synthetic roots, extra folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deformgan.errors import InputError
from deformgan.reid.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ReIDImageDataset,
    eval_transform,
    load_reid_dataset,
    parse_market_name,
    read_extra_folder,
    split_query_gallery,
    write_manifest,
)


def _image(path: Path, value: int = 128, size=(16, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(path)
    return path


def _market(root: Path) -> Path:
    for name in ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s2_012345_02.jpg"]:
        _image(root / "bounding_box_train" / name)
    for name in ["0005_c1s1_001051_00.jpg", "0009_c4s3_065432_00.jpg"]:
        _image(root / "query" / name)
    for name in ["0005_c2s1_001101_01.jpg", "0000_c1s1_000000_01.jpg", "-1_c3s1_000401_03.jpg"]:
        _image(root / "bounding_box_test" / name)
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"not an image")  # Market-1501 ships these
    return root


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("0002_c1s1_000451_03.jpg", (2, 1)),
        ("-1_c3s2_000401_03.jpg", (-1, 3)),
        ("0000_c6s4_002427_02.jpg", (0, 6)),
        ("1501_c5s3_015240_04.PNG", (1501, 5)),
    ],
)
def test_parse_market_name(name, expected):
    assert parse_market_name(name) == expected


@pytest.mark.parametrize(
    "name",
    ["0002_c1_000451_03.jpg", "02_c1s1_000451_03.jpg", "0002_c1s1_000451_03.bmp", "0002_c0s1_000451_03.jpg"],
)
def test_bad_market_names_are_one_line_errors(name):
    with pytest.raises(InputError, match=r"train/" + name.replace(".", r"\.")) as error:
        parse_market_name(name, "train")
    assert "\n" not in str(error.value)


def test_generated_names_with_a_market_prefix():
    """deformgan's generated images are named <from>_<to>.png: the identity is the conditioning image's."""
    assert parse_market_name("0002_c1s1_000451_03.jpg_0007_c3s2_012345_02.jpg.png", prefix_only=True) == (
        2,
        1,
    )
    with pytest.raises(InputError, match="expected a Market-1501 image name"):
        parse_market_name("0002_c1s1_000451_03.jpg_0007_c3s2_012345_02.jpg.png")


def test_market_layout(tmp_path):
    splits = load_reid_dataset(_market(tmp_path))
    assert splits.layout == "market"
    assert [(im.identity, im.camera) for im in splits.train] == [(2, 1), (2, 2), (7, 3)]
    assert [(im.identity, im.camera) for im in splits.query] == [(5, 1), (9, 4)]
    # sorted by name: "-1_..." < "0000_..." < "0005_..."; Thumbs.db is ignored
    assert [(im.identity, im.camera) for im in splits.gallery] == [(-1, 3), (0, 1), (5, 2)]
    summary = splits.summary()
    assert summary["train"] == {"images": 3, "identities": 2}
    assert summary["gallery"] == {"images": 3, "identities": 1}


def test_market_layout_errors(tmp_path):
    root = _market(tmp_path / "m")
    _image(root / "query" / "5_c1s1_001051_00.jpg")
    with pytest.raises(InputError, match=r"query/5_c1s1_001051_00\.jpg: expected a Market-1501 image name"):
        load_reid_dataset(root)
    partial = tmp_path / "partial"
    _image(partial / "query" / "0005_c1s1_001051_00.jpg")
    with pytest.raises(InputError, match="incomplete Market-1501 layout, missing .*bounding_box_train"):
        load_reid_dataset(partial)
    with pytest.raises(InputError, match="expected Market-1501 folders .* or one <prefix>-dataset"):
        load_reid_dataset(tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        load_reid_dataset(tmp_path / "nowhere")


def test_synthetic_layout_and_query_split(tmp_path):
    from deformgan.synth import write_synthetic_dataset

    write_synthetic_dataset(
        tmp_path, identities=8, poses_per_identity=10, size=(32, 16), seed=1, progress=False
    )
    splits = load_reid_dataset(tmp_path)
    assert splits.layout == "synthetic"
    assert len(splits.train) == 60 and len(splits.query) + len(splits.gallery) == 20
    gallery = {im.path for im in splits.gallery}
    keys = [(im.identity, im.camera) for im in splits.query]
    assert len(keys) == len(set(keys))  # at most one query per identity and camera
    for query in splits.query:
        assert query.path not in gallery
        assert any(g.identity == query.identity and g.camera != query.camera for g in splits.gallery)
        # a query is taken only from a camera that keeps another image of that person in the gallery
        assert any(g.identity == query.identity and g.camera == query.camera for g in splits.gallery)
    again = load_reid_dataset(tmp_path)
    assert [im.path for im in again.query] == [im.path for im in splits.query]  # deterministic


def test_query_split_rule():
    """Identity 1: cameras 1 (3 images), 2 (1 image) -> one query from camera 1. Identity 2: only camera 3
    -> no query (it could never be matched). Identity 3: cameras 1 (2), 2 (2) -> a query from each."""
    from deformgan.reid.data import ReIDImage

    images = [
        ReIDImage(Path(f"{i}.png"), identity, camera)
        for i, (identity, camera) in enumerate(
            [(1, 1), (1, 1), (1, 1), (1, 2), (2, 3), (2, 3), (3, 1), (3, 1), (3, 2), (3, 2)]
        )
    ]
    query, gallery = split_query_gallery(images, seed=0)
    assert sorted((q.identity, q.camera) for q in query) == [(1, 1), (3, 1), (3, 2)]
    assert len(gallery) == 7


def test_extra_folder_from_names_and_manifest(tmp_path):
    folder = tmp_path / "generated"
    _image(folder / "0002_c1s1_000451_03.jpg_0007_c3s2_012345_02.jpg.png")
    _image(folder / "0007_c3s2_012345_02.jpg_0002_c1s1_000451_03.jpg.png")
    images = read_extra_folder(folder)
    assert [(im.identity, im.camera) for im in images] == [(2, 1), (7, 3)]

    # A manifest lists the images and overrides what the names say.
    write_manifest(
        folder,
        [
            {"name": images[0].path.name, "identity": 11, "camera": 4, "target": "0007_c3s2_012345_02.jpg"},
            {"name": images[1].path.name, "identity": 12, "camera": 5},
        ],
    )
    header = (folder / "manifest.csv").read_text().splitlines()[0]
    assert header == "name,identity,camera,target"
    assert [(im.identity, im.camera) for im in read_extra_folder(folder)] == [(11, 4), (12, 5)]


def test_extra_folder_errors(tmp_path):
    folder = tmp_path / "g"
    _image(folder / "0000_c1s1_000451_03.png")
    with pytest.raises(InputError, match="extra training images need a person identity > 0"):
        read_extra_folder(folder)
    write_manifest(folder, [{"name": "missing.png", "identity": 3, "camera": 1}])
    with pytest.raises(InputError, match=r"manifest\.csv:2: image 'missing\.png' is not a file"):
        read_extra_folder(folder)
    write_manifest(folder, [{"name": "0000_c1s1_000451_03.png", "identity": "x", "camera": 1}])
    with pytest.raises(InputError, match=r"manifest\.csv:2 identity: expected an integer >= 1, got 'x'"):
        read_extra_folder(folder)
    (folder / "manifest.csv").write_text("name,label\na.png,3\n")
    with pytest.raises(InputError, match="missing identity, camera"):
        read_extra_folder(folder)
    with pytest.raises(InputError, match="missing camera"):
        write_manifest(folder, [{"name": "a.png", "identity": 1}])


def test_dataset_items(tmp_path):
    splits = load_reid_dataset(_market(tmp_path))
    dataset = ReIDImageDataset(splits.train, eval_transform((32, 16)))
    assert dataset.identities == [2, 7]
    item = dataset[2]
    assert item["image"].shape == (3, 32, 16) and item["image"].dtype == torch.float32
    assert (item["label"], item["identity"], item["camera"]) == (1, 7, 3)
    # a uniform grey 128 image normalises to (128/255 - mean) / std per channel
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(item["image"].mean(dim=(1, 2)), expected, atol=1e-5, rtol=0)
    gallery = ReIDImageDataset(splits.gallery, eval_transform((32, 16)), identities=dataset.identities)
    assert [gallery.label(i) for i in range(len(gallery))] == [-1, -1, -1]

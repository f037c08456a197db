"""deformgan.evaluation.formats: detecting and cutting the method folders the field publishes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from method_folders import Synthetic, write_folder

from deformgan.errors import InputError
from deformgan.evaluation.formats import parse_name, read_method
from deformgan.images import write_image
from deformgan.keypoints import read_annotations

PANELS = ("generated", "target", "source")


@pytest.fixture(scope="module")
def synth() -> Synthetic:
    return Synthetic(6, seed=1)


@pytest.mark.parametrize(
    "fmt, detected, panels",
    [
        ("generated", "generated", ("generated",)),
        ("strips", "strips", ("source", "target", "generated")),
        ("vis", "vis", ("source", "source_pose", "target", "target_pose", "generated")),
        ("vis3", "vis", ("source", "target", "generated")),
        ("numbered", "numbered", ("source", "target", "generated")),
        ("numbered1", "numbered", ("generated",)),
        ("named", "named", ("generated",)),
    ],
)
def test_every_png_format_is_detected_and_cut_exactly(tmp_path, synth, fmt, detected, panels):
    folder = write_folder(
        tmp_path / fmt, fmt, synth.pairs, synth.generated, synth.source, synth.target, synth.pose_panels()
    )
    (folder / "metrics.json").write_text("{}")  # not an image: ignored (evaluate may write beside them)
    read = read_method(folder)
    assert read.format == detected and read.panels == panels and read.frame == (128, 64)
    assert detected in read.description and "128x64" in read.description
    # PNG is lossless: each panel is exactly the array written there.
    np.testing.assert_array_equal(read.generated, synth.generated)
    if "target" in panels:
        np.testing.assert_array_equal(read.target, synth.target)
        np.testing.assert_array_equal(read.source, synth.source)
    else:
        assert read.target is None and read.source is None
    if detected == "numbered":
        assert read.pairs is None and read.keys == [(f"#{i}", "") for i in range(len(synth.pairs))]
    else:
        assert read.pairs == synth.pairs and read.keys == synth.pairs


def test_jpeg_vis_strips_are_read_within_jpeg_error(tmp_path, synth):
    # Photographs are smooth at the pixel scale; JPEG of i.i.d. pixel noise would not be (blur it first).
    smooth = {k: np.stack([cv2.GaussianBlur(x, (0, 0), 2) for x in getattr(synth, k)]) for k in PANELS}
    poses = synth.pose_panels()
    folder = write_folder(
        tmp_path / "vis", "vis", synth.pairs, smooth["generated"], smooth["source"], smooth["target"], poses,
        suffix=".jpg",
    )  # fmt: skip
    read = read_method(folder)
    assert read.format == "vis" and read.pairs == synth.pairs
    # Quality-95 JPEG: about one grey level on average; a panel cut at the wrong place would be tens.
    for name in PANELS:
        error = np.abs(getattr(read, name).astype(int) - smooth[name]).mean()
        assert error < 2, (name, error)
    assert np.abs(read.generated.astype(int) - smooth["source"]).mean() > 10  # neighbouring panels differ


def test_numbered_strips_are_named_by_the_pairs_list(tmp_path, synth):
    numbers = [1, 2, 3, 4, 5, 6]
    folder = write_folder(
        tmp_path / "num",
        "numbered",
        synth.pairs,
        synth.generated,
        synth.source,
        synth.target,
        numbers=numbers,
    )
    read = read_method(folder, pairs=synth.pairs, first_number=1)
    assert read.pairs == synth.pairs
    with pytest.raises(
        InputError, match="numbered file 6 has no pair: the pairs list has 6 rows numbered from 0"
    ):
        read_method(folder, pairs=synth.pairs)  # numbering from 0 puts file 6 past the list


def test_pair_names_without_extensions_resolve_with_the_annotations(tmp_path, synth):
    folder = write_folder(tmp_path / "stems", "named-stems", synth.pairs, synth.generated)
    with pytest.raises(InputError, match="unknown file name"):
        read_method(folder)  # p000_a_p000_b.png: no extension boundary, nothing to match against
    read = read_method(folder, known=synth.keypoints)
    assert read.format == "named" and read.pairs == synth.pairs


def test_parse_name_cases():
    market = "0007_c2s3_070952_01.jpg_0007_c3s3_077419_03.jpg.png"
    assert parse_name(market).pair == ("0007_c2s3_070952_01.jpg", "0007_c3s3_077419_03.jpg")
    vis = "fashionWOMENDressesid0000262902_3back.jpg___fashionWOMENDressesid0000262902_1front.jpg_vis.jpg"
    assert parse_name(vis).kind == "vis"
    assert parse_name(vis).pair[1] == "fashionWOMENDressesid0000262902_1front.jpg"
    assert parse_name("00145.png").number == 145
    assert parse_name("a.jpg_b.jpg.jpg").pair == ("a.jpg", "b.jpg")  # JPEG output of a pair
    assert parse_name("readme.png") is None
    with pytest.raises(InputError, match="ambiguous pair name"):
        parse_name("a.jpg_b.jpg_c.jpg.png")  # (a.jpg, b.jpg_c.jpg) or (a.jpg_b.jpg, c.jpg)
    assert parse_name("a.jpg_b.jpg_c.jpg.png", known={"a.jpg", "b.jpg_c.jpg"}).pair == (
        "a.jpg",
        "b.jpg_c.jpg",
    )


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_bad_folders_get_one_clear_line(tmp_path, synth):
    with pytest.raises(InputError, match="folder of generated images not found") as error:
        read_method(tmp_path / "absent")
    _one_line(error)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(InputError, match="no .png/.jpg images") as error:
        read_method(tmp_path / "empty")
    _one_line(error)

    unknown = write_folder(
        tmp_path / "unknown", "strips", synth.pairs[:2], synth.generated, synth.source, synth.target
    )
    write_image(synth.generated[0], unknown / "IMG_1234.png")
    with pytest.raises(InputError, match="IMG_1234.png: unknown file name") as error:
        read_method(unknown)
    _one_line(error)

    mixed = write_folder(
        tmp_path / "mixed", "strips", synth.pairs[:3], synth.generated, synth.source, synth.target
    )
    write_folder(mixed, "numbered", synth.pairs[:2], synth.generated, synth.source, synth.target)
    with pytest.raises(
        InputError, match="mixes file-name formats: 3 pair-named files .* 2 numbered files"
    ) as error:
        read_method(mixed)
    _one_line(error)

    sizes = write_folder(tmp_path / "sizes", "generated", synth.pairs[:3], synth.generated)
    write_image(synth.source[0][:, :48], sizes / f"{synth.pairs[4][0]}_{synth.pairs[4][1]}.png")
    with pytest.raises(InputError, match="differs from .* the folder mixes image sizes") as error:
        read_method(sizes)
    _one_line(error)

    # A frame of no known dataset: one panel when 3 cannot divide the width; ambiguous widths need the
    # frame named (or --triplets).
    odd = tmp_path / "odd"
    odd.mkdir()
    write_image(np.zeros((128, 100, 3), np.uint8), odd / "a.jpg_b.jpg.png")
    assert read_method(odd).frame == (128, 100) and read_method(odd).format == "generated"
    ambiguous = tmp_path / "ambiguous"
    ambiguous.mkdir()
    write_image(np.zeros((128, 96, 3), np.uint8), ambiguous / "a.jpg_b.jpg.png")
    with pytest.raises(
        InputError, match=r"128x96 \(HxW\) image is not 1 or 3 panels of a known frame"
    ) as error:
        read_method(ambiguous)
    _one_line(error)
    assert read_method(ambiguous, strips=True).frame == (128, 32)  # --triplets decides
    assert read_method(ambiguous, frame=(128, 96)).format == "generated"  # or the frame, named

    twice = write_folder(
        tmp_path / "twice", "numbered", synth.pairs[:1], synth.generated, synth.source, synth.target
    )
    write_image(np.concatenate([synth.source[0], synth.target[0], synth.generated[0]], 1), twice / "0.png")
    with pytest.raises(InputError, match="number 0 appears twice"):
        read_method(twice)


def test_real_strips_and_the_formats_built_from_them(tmp_path, shared):
    """The authors' Market strips are detected; the same images re-written as VUNet/PATN-style JPEG vis
    strips, numbered strips and named generated images read back to the same pairs and pixels."""
    annotations = shared / "data" / "annotations"
    known = {**read_annotations(annotations / "market-annotation-train.csv")}
    strips = read_method(shared / "data" / "triplets" / "market", known=known)
    assert strips.format == "strips" and len(strips.pairs) == 100 and strips.frame == (128, 64)
    assert all(a in known and b in known for a, b in strips.pairs)
    n = 20
    pairs, generated, source, target = (
        strips.pairs[:n],
        strips.generated[:n],
        strips.source[:n],
        strips.target[:n],
    )
    zeros = np.zeros_like(generated)
    vis = read_method(
        write_folder(tmp_path / "vis", "vis", pairs, generated, source, target, (zeros, zeros), ".jpg")
    )
    assert vis.format == "vis" and vis.pairs == pairs
    assert np.abs(vis.target.astype(int) - target).mean() < 3  # JPEG quality 95
    numbered = read_method(
        write_folder(tmp_path / "num", "numbered", pairs, generated, source, target), pairs=pairs
    )
    np.testing.assert_array_equal(numbered.generated, generated)
    assert numbered.pairs == pairs
    named = read_method(write_folder(tmp_path / "named", "named-stems", pairs, generated), known=known)
    assert named.format == "named" and named.pairs == pairs

    fashion = read_method(
        shared / "data" / "triplets" / "deepfashion",
        known=read_annotations(annotations / "fasion-annotation-test.csv"),
    )
    assert fashion.format == "strips" and fashion.frame == (256, 256) and len(fashion.pairs) == 100

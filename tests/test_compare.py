"""deformgan.evaluation.compare (and .evaluate): several methods on the pairs they share."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from method_folders import Synthetic, write_dataset, write_folder

from deformgan.errors import InputError
from deformgan.evaluation import metrics as M
from deformgan.evaluation.compare import TARGET_MISMATCH, compare_methods
from deformgan.evaluation.evaluate import UNNAMED, evaluate, lpips_per_pair
from deformgan.evaluation.scores import METRICS, score_images, target_masks
from deformgan.images import read_image
from deformgan.keypoints import read_annotations

SCORES = ("ssim", "mask_ssim", "l1")


@pytest.fixture(scope="module")
def synth() -> Synthetic:
    return Synthetic(12, seed=2)


def _folders(tmp_path, synth):
    perfect = write_folder(
        tmp_path / "perfect", "strips", synth.pairs, synth.target, synth.source, synth.target
    )
    noisy = write_folder(
        tmp_path / "noisy",
        "vis",
        synth.pairs[:10],
        synth.generated,
        synth.source,
        synth.target,
        synth.pose_panels(),
    )
    plain = write_folder(
        tmp_path / "plain", "generated", synth.pairs[1:], synth.source[1:]
    )  # "copy the source"
    return {"perfect": perfect, "noisy": noisy, "plain": plain}


def test_compare_scores_the_shared_pairs_and_writes_every_output(tmp_path, synth):
    csv = synth.annotations(tmp_path / "synth-annotation-test.csv")
    out = tmp_path / "out"
    result = compare_methods(
        _folders(tmp_path, synth), annotations=csv, out=out, metrics=SCORES, rows_per_page=4
    )
    shared = synth.pairs[1:10]  # perfect has 0..11, noisy 0..9, plain 1..11
    n = len(shared)
    assert result["meta"]["pairs"] == n
    assert result["meta"]["statement"] == f"scores computed on the {n} pairs all 3 methods share"
    methods = result["methods"]
    assert list(methods) == ["perfect", "noisy", "plain"]
    assert [methods[m]["meta"]["format"] for m in methods] == ["strips", "vis", "generated"]

    # Perfect method: SSIM(x, x) = 1 and L1(x, x) = 0 by definition.
    assert methods["perfect"]["ssim"]["value"] == pytest.approx(1.0, abs=1e-12)
    assert methods["perfect"]["mask_ssim"]["value"] == pytest.approx(1.0, abs=1e-12)
    assert methods["perfect"]["l1"]["value"] == 0.0
    # The others: exactly evaluate's score_images on the shared pairs, against the right targets.
    index = [synth.pairs.index(p) for p in shared]
    target = synth.target[index]
    mask = target_masks(shared, synth.keypoints, (128, 64))
    for name, generated in (("noisy", synth.generated[index]), ("plain", synth.source[index])):
        expected = score_images(generated, target, mask, metrics=SCORES)
        for score in SCORES:
            assert methods[name][score] == expected[score], (name, score)
            assert methods[name][score]["n"] == n
    assert methods["plain"]["meta"]["target_source"] == "strips of perfect"  # no target of its own
    assert methods["noisy"]["meta"]["target_difference"] == 0.0  # PNG: its targets are the reference's

    unmatched = result["meta"]["unmatched"]
    assert unmatched["perfect"]["not_shared"] == 3 and unmatched["perfect"]["missing"] == 0
    assert unmatched["noisy"]["missing"] == 2 and unmatched["noisy"]["not_shared"] == 1
    assert unmatched["plain"]["not_shared"] == 2 and unmatched["plain"]["missing"] == 1
    assert unmatched["plain"]["missing_examples"] == [f"{synth.pairs[0][0]} -> {synth.pairs[0][1]}"]

    # Files: JSON = the result, Markdown with the statement, figure pages, one strip per pair, the page.
    assert json.loads((out / "compare.json").read_text()) == json.loads(json.dumps(result))
    markdown = (out / "compare.md").read_text()
    assert f"Scores computed on the {n} pairs all 3 methods share." in markdown
    assert "| perfect | 1.000 | 1.000 | 0.000 |" in markdown
    pages = sorted((out / "figures").glob("page-*.png"))
    assert [p.name for p in pages] == ["page-001.png", "page-002.png", "page-003.png"]  # 4 + 4 + 1 rows
    # Layout: 5 columns (conditioning, target + pose, 3 methods) of 64 px x 2 with 2 px gaps; a full page
    # has an 18 px header and 4 rows of (256 + 2 * 2) px tiles, an 18 px score band and a 16 px name line.
    first = read_image(pages[0])
    assert first.shape == (18 + 4 * (260 + 18 + 16), 5 * 128 + 6 * 2, 3)
    strips = sorted((out / "pairs").glob("*.png"))
    assert len(strips) == n and read_image(strips[0]).shape == (128, 5 * 64 + 4 * 1, 3)  # native; shown 2x
    # The page: self-contained (no URL with a scheme), every image it references exists.
    page = (out / "compare.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    rows = json.loads(re.search(r'<script type="application/json" id="rows">(.*?)</script>', page).group(1))
    assert len(rows) == n
    for row, pair in zip(rows, shared, strict=True):
        assert (out / row["image"]).is_file()
        assert row["pair"] == f"{pair[0]} -> {pair[1]}"
    assert rows[0]["ssim:noisy"] == pytest.approx(M.ssim(synth.generated[index[:1]], target[:1])[0])


def test_with_a_dataset_folder_its_images_are_the_one_truth(tmp_path, synth):
    """compare --data: every method is scored against the dataset's target images, whatever its strips
    hold, and the figures take the conditioning and target columns from the dataset."""
    root = write_dataset(tmp_path / "data", synth, Synthetic(3, seed=7))
    # Strips whose generated panel is exactly the dataset's target, but whose target panel is the next
    # pair's target (a numbering off by one), and plain images of another method (no panels at all).
    shifted = write_folder(
        tmp_path / "shifted", "strips", synth.pairs, synth.target, synth.source, np.roll(synth.target, 1, 0)
    )
    plain = write_folder(tmp_path / "plain", "generated", synth.pairs, synth.generated)
    out = tmp_path / "out"
    result = compare_methods({"shifted": shifted, "plain": plain}, data=root, out=out, metrics=SCORES)
    methods = result["methods"]
    # Against the dataset's targets the shifted strips' output is perfect: SSIM(x, x) = 1, L1(x, x) = 0.
    assert methods["shifted"]["ssim"]["value"] == pytest.approx(1.0, abs=1e-12)
    assert methods["shifted"]["mask_ssim"]["value"] == pytest.approx(1.0, abs=1e-12)
    assert methods["shifted"]["l1"]["value"] == 0.0
    # Its own target panel is other images (mean difference far above the JPEG-level threshold): flagged.
    meta = methods["shifted"]["meta"]
    assert meta["target_source"] == "dataset" and meta["target_mismatch"]
    assert meta["target_difference"] > TARGET_MISMATCH
    # The plain method: exactly score_images against the dataset's targets, with the masks of the
    # dataset's annotated target poses.
    mask = target_masks(synth.pairs, synth.keypoints, (128, 64))
    expected = score_images(synth.generated, synth.target, mask, metrics=SCORES)
    assert {k: methods["plain"][k] for k in SCORES} == expected
    assert methods["plain"]["meta"]["target_source"] == "dataset"
    assert result["meta"]["target_reference"] == result["meta"]["source_reference"] == "dataset"
    assert result["meta"]["data"] == str(root)
    # The page strip of the first pair: [dataset source | dataset target + skeleton | shifted | plain],
    # 64 px panels with 1 px gaps; the source and both outputs are the images themselves.
    strip = read_image(out / "pairs" / "00001.png")
    np.testing.assert_array_equal(strip[:, :64], synth.source[0])
    np.testing.assert_array_equal(strip[:, 2 * 65 : 2 * 65 + 64], synth.target[0])
    np.testing.assert_array_equal(strip[:, 3 * 65 :], synth.generated[0])
    # Without the dataset (keypoints only), the same strips are scored against their own shifted targets.
    alone = compare_methods({"shifted": shifted}, annotations=root / "synth-annotation-test.csv",
                            out=tmp_path / "alone", metrics=("ssim",))  # fmt: skip
    assert alone["methods"]["shifted"]["meta"]["target_source"] == "own strips"
    wrong = M.ssim(synth.target, np.roll(synth.target, 1, 0)).mean()  # output vs the neighbour's target
    assert alone["methods"]["shifted"]["ssim"]["value"] == pytest.approx(wrong) and wrong < 0.5


def test_default_metrics_without_weights_are_na_with_the_reason(tmp_path, synth):
    folders = _folders(tmp_path, synth)
    result = compare_methods(
        {"perfect": folders["perfect"], "noisy": folders["noisy"]}, out=tmp_path / "out",
        weights=tmp_path / "no-weights", rows_per_page=20,
    )  # fmt: skip
    for name in ("perfect", "noisy"):
        entry = result["methods"][name]
        assert set(METRICS) <= set(entry)
        assert entry["ssim"]["value"] is not None and entry["l1"]["value"] is not None  # from the strips
        assert entry["mask_ssim"] == {"value": None, "reason": "no target keypoints (pass the dataset folder "
                                      "or annotation CSVs)", "n": 0}  # fmt: skip
        assert entry["lpips"]["reason"] == f"weights missing: {M.ALEXNET_WEIGHTS}"
        assert entry["is"]["reason"] == f"weights missing: {M.INCEPTION_WEIGHTS}"
        assert entry["fid"]["value"] is None and entry["ds"]["value"] is None
    assert "n/a (weights missing: " in (tmp_path / "out" / "compare.md").read_text()


def test_numbered_strips_need_the_pairs_list_to_meet_named_methods(tmp_path, synth):
    folders = _folders(tmp_path, synth)
    numbered = write_folder(
        tmp_path / "numbered", "numbered", synth.pairs, synth.generated, synth.source, synth.target
    )
    with pytest.raises(
        InputError,
        match="no pair is in every method's folder .*numbered strips without pair names: pass pairs=",
    ) as error:
        compare_methods(
            {"ours": folders["perfect"], "numbered": numbered}, out=tmp_path / "o1", metrics=SCORES
        )
    assert "\n" not in str(error.value)
    result = compare_methods(
        {"ours": folders["perfect"], "numbered": numbered},
        out=tmp_path / "o2",
        metrics=SCORES,
        pairs=synth.pairs,
    )
    assert result["meta"]["pairs"] == len(synth.pairs)
    assert result["methods"]["numbered"]["ssim"]["value"] == pytest.approx(
        M.ssim(synth.generated, synth.target).mean()
    )


def test_numbered_strips_alone_score_from_the_strip_and_say_why_mask_ssim_is_missing(tmp_path, synth):
    csv = synth.annotations(tmp_path / "a.csv")
    one = write_folder(tmp_path / "one", "numbered", synth.pairs, synth.generated, synth.source, synth.target)
    two = write_folder(tmp_path / "two", "numbered", synth.pairs, synth.source, synth.source, synth.target)
    result = compare_methods({"one": one, "two": two}, annotations=csv, out=tmp_path / "out", metrics=SCORES)
    entry = result["methods"]["one"]
    assert entry["ssim"]["value"] == pytest.approx(M.ssim(synth.generated, synth.target).mean())
    assert entry["l1"]["value"] == pytest.approx(M.l1(synth.generated, synth.target).mean())
    assert entry["mask_ssim"] == {"value": None, "reason": UNNAMED, "n": 0}
    page = (tmp_path / "out" / "compare.html").read_text()
    assert '"key": "#0"' in page or '"__key": "#0"' in page


def test_deepfashion_frames_are_compared_at_256x176(tmp_path):
    rng = np.random.default_rng(3)
    pairs = [(f"f{i}_1front.jpg", f"f{i}_2side.jpg") for i in range(4)]
    source, target, generated = (rng.integers(0, 255, (4, 256, 256, 3), dtype=np.uint8) for _ in range(3))
    ours = write_folder(tmp_path / "ours", "strips", pairs, generated, source, target)
    crop = slice(40, 216)
    theirs = write_folder(
        tmp_path / "theirs", "vis3", pairs, generated[:, :, crop], source[:, :, crop], target[:, :, crop]
    )
    result = compare_methods({"ours": ours, "theirs": theirs}, out=tmp_path / "out", metrics=("ssim",))
    assert result["meta"]["image_size"] == [256, 176]
    assert "ours cut from 256x256 to the central 256x176" in result["meta"]["frame_note"]
    expected = M.ssim(generated[:, :, crop], target[:, :, crop]).mean()
    assert result["methods"]["ours"]["ssim"]["value"] == pytest.approx(expected)
    assert result["methods"]["theirs"]["ssim"]["value"] == pytest.approx(expected)

    market = write_folder(tmp_path / "market", "generated", pairs, np.zeros((4, 128, 64, 3), np.uint8))
    with pytest.raises(InputError, match="different image sizes .*ours: 256x256; market: 128x64"):
        compare_methods({"ours": ours, "market": market}, out=tmp_path / "o2", metrics=("ssim",))


def test_bad_arguments(tmp_path, synth):
    with pytest.raises(InputError, match="at least one name=folder"):
        compare_methods({}, out=tmp_path)
    with pytest.raises(InputError, match="non-empty string"):
        compare_methods({" ": tmp_path}, out=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no .png/.jpg images"):
        compare_methods({"a": tmp_path / "empty"}, out=tmp_path / "out")


@pytest.mark.slow  # builds LPIPS (AlexNet + torchmetrics) twice: ~9 s on 2 shared cores
def test_lpips_per_pair_means_what_score_images_reports(tmp_path, synth):
    """The per-pair LPIPS of the comparison pages averages to score_images' LPIPS (same crop, same [-1, 1]
    mapping), with a weights file the test creates (random AlexNet features + torchmetrics' v0.1 heads)."""
    from torchvision.models import alexnet

    torch.manual_seed(0)
    torch.save(alexnet(weights=None).state_dict(), tmp_path / M.ALEXNET_WEIGHTS)
    per_pair = lpips_per_pair(synth.generated[:4], synth.target[:4], tmp_path)
    expected = score_images(synth.generated[:4], synth.target[:4], metrics=("lpips",), weights=tmp_path)[
        "lpips"
    ]
    assert per_pair.shape == (4,) and (per_pair > 0).all()
    assert per_pair.mean() == pytest.approx(expected["value"], rel=1e-6)


def test_evaluate_reads_every_format_alike(tmp_path, synth):
    csv = synth.annotations(tmp_path / "a.csv")
    strips = write_folder(
        tmp_path / "strips", "strips", synth.pairs, synth.generated, synth.source, synth.target
    )
    reference = evaluate(strips, triplets=True, annotations=csv, metrics=SCORES, progress=False)
    vis = write_folder(
        tmp_path / "vis", "vis", synth.pairs, synth.generated, synth.source, synth.target, synth.pose_panels()
    )
    for folder in (strips, vis):
        result = evaluate(folder, annotations=csv, metrics=SCORES, progress=False, out=tmp_path / "m.json")
        assert {k: result[k] for k in SCORES} == {k: reference[k] for k in SCORES}
        assert result["meta"]["format"] in ("strips", "vis")
    plain = write_folder(tmp_path / "plain", "generated", synth.pairs, synth.generated)
    with pytest.raises(InputError, match="expected strips with a target panel .*found 'generated' images"):
        evaluate(plain, annotations=csv, metrics=SCORES, triplets=True)
    result = evaluate(vis, annotations=csv, metrics=SCORES, pairs=synth.pairs[:3] + [("x.jpg", "y.jpg")])
    assert result["meta"]["pairs"] == 3
    assert result["meta"]["missing"] == {"count": 1, "examples": ["x.jpg -> y.jpg"]}
    assert result["meta"]["extra"]["count"] == len(synth.pairs) - 3


@pytest.mark.slow  # 3 methods x 30 real pairs: reading, SSIM, figures (~10 s on 2 shared cores)
def test_real_defgan_against_baselines_built_from_its_strips(tmp_path, shared):
    """Def-GAN's Market strips against "copy the source" as JPEG vis strips and as plain generated images:
    Def-GAN's scores are exactly ``deformgan evaluate``'s on the same pairs (the validated paper protocol,
    benchmarks/results/real_triplets.md), and it beats copying the source on mask-SSIM there too."""
    from deformgan.evaluation.formats import read_method

    annotations = shared / "data" / "annotations"
    csvs = [annotations / "market-annotation-train.csv", annotations / "market-annotation-test.csv"]
    triplets = shared / "data" / "triplets" / "market"
    known = {}
    for path in csvs:
        known.update(read_annotations(path))
    strips = read_method(triplets, known=known)
    pairs = strips.pairs[:30]
    n = len(pairs)
    zeros = np.zeros_like(strips.source[:n])
    source, target = strips.source[:n], strips.target[:n]
    copy_vis = write_folder(
        tmp_path / "copy-vis", "vis", pairs, source, source, target, (zeros, zeros), ".jpg"
    )
    copy_plain = write_folder(tmp_path / "copy", "generated", pairs[:25], strips.source[:25])
    result = compare_methods(
        {"Def-GAN": triplets, "copy (vis)": copy_vis, "copy": copy_plain},
        annotations=csvs, out=tmp_path / "out", metrics=SCORES, pairs=pairs,
    )  # fmt: skip
    assert result["meta"]["pairs"] == 25
    reference = evaluate(
        triplets, triplets=True, annotations=csvs, pairs=pairs[:25], metrics=SCORES, progress=False
    )
    for score in SCORES:
        assert result["methods"]["Def-GAN"][score]["value"] == pytest.approx(
            reference[score]["value"], abs=1e-12
        )
    methods = result["methods"]
    assert methods["Def-GAN"]["mask_ssim"]["value"] > methods["copy"]["mask_ssim"]["value"]
    # JPEG re-encoding (quality 95) changes the targets by about a grey level: no mismatch flag.
    assert methods["copy (vis)"]["meta"]["target_difference"] < 3 < TARGET_MISMATCH
    assert not methods["copy (vis)"]["meta"]["target_mismatch"]
    assert methods["copy"]["meta"]["target_source"] == "strips of Def-GAN"


def test_target_mismatch_threshold_separates_jpeg_from_other_images(shared):
    """TARGET_MISMATCH lies between what JPEG re-encoding does to a target and what a numbering shifted by
    one (every target another person) does, on the real Market and DeepFashion triplets."""
    from deformgan.evaluation.formats import read_method

    for dataset in ("market", "deepfashion"):
        strips = read_method(shared / "data" / "triplets" / dataset)
        targets = strips.target[:40]
        from io import BytesIO

        from PIL import Image

        def jpeg(image, quality):
            buffer = BytesIO()
            Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
            return np.asarray(Image.open(buffer).convert("RGB"))

        re_encoded = np.stack([jpeg(t, 75) for t in targets])
        jpeg_difference = np.abs(re_encoded.astype(int) - targets).mean()
        shifted_difference = np.abs(np.roll(targets, 1, axis=0).astype(int) - targets).mean()
        assert jpeg_difference < TARGET_MISMATCH / 2, (dataset, jpeg_difference)
        assert shifted_difference > 2 * TARGET_MISMATCH, (dataset, shifted_difference)

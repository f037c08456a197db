"""deformgan.evaluation.evaluate: pair names, triplet strips, dataset folders, result schema, real Def-GAN
outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from method_folders import Synthetic, write_folder
from PIL import Image

from deformgan.errors import InputError
from deformgan.evaluation import METRICS, evaluate, markdown_table
from deformgan.evaluation import metrics as M
from deformgan.evaluation.evaluate import UNNAMED
from deformgan.evaluation.scores import score_images, target_masks
from deformgan.keypoints import write_annotations, write_pairs

MARKET_A = "0007_c2s3_070952_01.jpg"
MARKET_B = "0007_c3s3_077419_03.jpg"


def _pose(offset: int) -> np.ndarray:
    """A standing person in a 32x16 frame, (x, y), all 18 joints present."""
    ys = np.array([3, 6, 6, 10, 14, 6, 10, 14, 16, 22, 28, 16, 22, 28, 2, 2, 3, 3])
    xs = np.array([8, 8, 5, 4, 4, 11, 12, 12, 6, 6, 6, 10, 10, 10, 7, 9, 6, 10]) + offset
    return np.stack([xs, ys], -1).astype(np.int64)


def _write_triplets(folder, n: int, seed: int = 0) -> tuple[list[tuple[str, str]], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    pairs, targets, generated = [], [], []
    for i in range(n):
        source, target = rng.integers(0, 256, (2, 32, 16, 3), dtype=np.uint8)
        output = np.clip(target.astype(int) + rng.integers(-20, 21, target.shape), 0, 255).astype(np.uint8)
        a, b = f"{i:04d}_c1s1_000001_01.jpg", f"{i:04d}_c2s1_000002_01.jpg"
        Image.fromarray(np.concatenate([source, target, output], 1)).save(folder / f"{a}_{b}.png")
        pairs.append((a, b))
        targets.append(target)
        generated.append(output)
    return pairs, np.stack(targets), np.stack(generated)


def test_evaluate_triplets_schema_files_and_missing_weights(tmp_path):
    pairs, _, _ = _write_triplets(tmp_path / "gen", 12)
    annotations = tmp_path / "synth-annotation-test.csv"
    write_annotations(annotations, {name: _pose(i % 2) for i, pair in enumerate(pairs) for name in pair})
    empty = tmp_path / "no-weights"
    empty.mkdir()
    results = evaluate(
        tmp_path / "gen",
        triplets=True,
        annotations=annotations,
        out=tmp_path / "out",
        weights=empty,
        progress=False,
    )
    # Schema: every metric has "value" and "reason", exactly one of them set.
    for name in METRICS:
        entry = results[name]
        assert (entry["value"] is None) != (entry["reason"] is None), (name, entry)
    assert 0 < results["ssim"]["value"] < 1 and results["ssim"]["n"] == 12
    assert results["mask_ssim"]["value"] > results["ssim"]["value"]  # the background noise is masked out
    assert results["lpips"]["reason"] == "weights missing: alexnet-owt-7be5be79.pth"
    assert results["is"]["reason"] == "weights missing: weights-inception-2015-12-05-6726825d.pth"
    assert results["fid"]["reason"] == "weights missing: weights-inception-2015-12-05-6726825d.pth"
    assert results["ds"]["reason"] == "weights missing: ssd300_vgg16_coco-b556d3b4.pth"
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["ssim"] == results["ssim"] and saved["meta"]["pairs"] == 12
    table = (tmp_path / "out" / "metrics.md").read_text()
    assert "n/a (weights missing: alexnet-owt-7be5be79.pth)" in table
    assert not list((tmp_path / "out").glob("*.tmp"))  # atomic writes leave no temporary file


def test_evaluate_reads_targets_and_keypoints_from_a_dataset_folder(tmp_path):
    root = tmp_path / "data"
    (root / "synth-dataset" / "test").mkdir(parents=True)
    (root / "synth-dataset" / "train").mkdir(parents=True)
    rng = np.random.default_rng(2)
    names = [f"000{i}_c1s1_00000{i}_01.jpg" for i in range(3)]
    images = rng.integers(0, 256, (3, 32, 16, 3), dtype=np.uint8)
    for name, image in zip(names, images, strict=True):
        # Lossless content under the dataset's .jpg name, so "output = target" is exact.
        Image.fromarray(image).save(root / "synth-dataset" / "test" / name, format="PNG")
    write_annotations(root / "synth-annotation-test.csv", {name: _pose(0) for name in names})
    gen = tmp_path / "gen"
    gen.mkdir()
    pairs = [(names[0], names[1]), (names[2], names[0])]
    for a, b in pairs:  # a perfect generator: the output is the target itself
        Image.fromarray(images[names.index(b)]).save(gen / f"{a}_{b}.png")
    results = evaluate(
        gen, data=root, metrics=("ssim", "mask_ssim", "l1", "fid"), weights=tmp_path, progress=False
    )
    assert results["ssim"]["value"] == pytest.approx(1.0)
    assert results["mask_ssim"]["value"] == pytest.approx(1.0)
    assert results["l1"]["value"] == 0.0
    assert set(results) == {"ssim", "mask_ssim", "l1", "fid", "meta"}
    assert results["meta"]["pairs_source"] == "every image of the folder"  # the dataset has no pairs file
    with pytest.raises(InputError, match="unknown"):
        evaluate(gen, data=root, metrics=("psnr",), progress=False)
    # With a test pairs file, those pairs are scored (not whatever is in the folder), and the folder's
    # missing and extra images are reported: here one test pair has no image and one image is no test pair.
    test_pairs = [pairs[0], (names[1], names[2])]
    write_pairs(root / "synth-pairs-test.csv", test_pairs)
    results = evaluate(gen, data=root, metrics=("l1",), progress=False)
    meta = results["meta"]
    assert meta["pairs"] == 1 and meta["pairs_source"].startswith("the dataset's test pairs")
    assert meta["missing"] == {"count": 1, "examples": [f"{names[1]} -> {names[2]}"]}
    assert meta["extra"] == {"count": 1, "examples": [f"{names[2]} -> {names[0]}"]}


SCORES = ("ssim", "mask_ssim", "l1")


@pytest.mark.parametrize("fmt", ["vis", "vis3", "numbered"])
def test_evaluate_triplets_reads_vis_and_numbered_strips(tmp_path, fmt):
    """--triplets on VUNet/PATN `_vis` strips (5 panels with poses, or 3) and on numbered strips named by
    the pairs list: the panels are cut exactly, so the scores are score_images' on the true targets."""
    synth = Synthetic(6, seed=11)
    csv = synth.annotations(tmp_path / "synth-annotation-test.csv")
    folder = write_folder(
        tmp_path / fmt, fmt, synth.pairs, synth.generated, synth.source, synth.target, synth.pose_panels()
    )
    pairs = synth.pairs if fmt == "numbered" else None  # file i is pairs row i
    result = evaluate(folder, triplets=True, annotations=csv, pairs=pairs, metrics=SCORES, progress=False)
    mask = target_masks(synth.pairs, synth.keypoints, (128, 64))
    assert {k: result[k] for k in SCORES} == score_images(synth.generated, synth.target, mask, metrics=SCORES)
    assert result["meta"]["format"] == ("numbered" if fmt == "numbered" else "vis")
    assert result["meta"]["target_source"] == "strips" and result["meta"]["pairs"] == 6


def test_evaluate_triplets_decides_the_panels_of_numbered_strips_of_an_unknown_frame(tmp_path):
    """A numbered 32x48 image of no known frame is 3 panels of 32x16 or 1 of 32x48: without --triplets
    that is a one-line error; with it, 3 panels, scored against the strip's own target panel. mask-SSIM is
    n/a with the reason: without pair names the target keypoints are unknown."""
    rng = np.random.default_rng(4)
    source, target = rng.integers(0, 256, (2, 4, 32, 16, 3), dtype=np.uint8)
    generated = np.clip(target.astype(int) + rng.integers(-30, 31, target.shape), 0, 255).astype(np.uint8)
    folder = write_folder(tmp_path / "num", "numbered", [("a", "b")] * 4, generated, source, target)
    csv = tmp_path / "a.csv"
    write_annotations(csv, {"a": _pose(0), "b": _pose(1)})
    with pytest.raises(InputError, match="32x48 .*is not 3 or 1 panels of a known frame") as error:
        evaluate(folder, annotations=csv, metrics=SCORES, progress=False)
    assert "\n" not in str(error.value)
    result = evaluate(folder, triplets=True, annotations=csv, metrics=SCORES, progress=False)
    assert result["ssim"]["value"] == pytest.approx(M.ssim(generated, target).mean())
    assert result["l1"]["value"] == pytest.approx(M.l1(generated, target).mean())
    assert result["mask_ssim"] == {"value": None, "reason": UNNAMED, "n": 0}
    assert result["meta"]["image_size"] == [32, 16] and not result["meta"]["named"]


def test_markdown_table_cells():
    rows = {
        "model": {
            "ssim": {"value": 0.29012, "reason": None},
            "is": {"value": 3.1851, "std": 0.05, "reason": None},
        }
    }
    rows["other"] = {
        "ssim": {"value": None, "reason": "weights missing: x.pth"},
        "is": {"value": 1.0, "std": 0.0},
    }
    table = markdown_table(rows)
    assert "| model | 0.290 | 3.185 ± 0.050 |" in table
    assert "| other | n/a (weights missing: x.pth) | 1.000 ± 0.000 |" in table


@pytest.mark.slow  # SSIM of 2 x 100 real 256x256 pairs: 10-20 s on 2 shared cores
def test_real_defgan_deepfashion_outputs_match_the_reported_scores(shared):
    annotations = shared / "data" / "annotations" / "fasion-annotation-test.csv"
    results = evaluate(
        shared / "data" / "triplets" / "deepfashion",
        triplets=True,
        annotations=annotations,
        metrics=("ssim", "mask_ssim", "l1"),
        progress=False,
    )
    # The paper reports SSIM 0.756 for the DeepFashion Full model; a user's retraining
    # (pose-gan #3) got mask-SSIM 0.950 and L1 0.125. On these 100 pairs (per-pair SSIM std ~0.1, so a
    # standard error ~0.01) the authors' outputs must score within that noise.
    assert results["ssim"]["value"] == pytest.approx(0.756, abs=0.02)
    assert results["mask_ssim"]["value"] == pytest.approx(0.950, abs=0.02)
    assert results["l1"]["value"] == pytest.approx(0.125, abs=0.02)

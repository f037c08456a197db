"""deformgan.evaluation.causes and .failures: causes against hand computations, the ranking, the pages."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from method_folders import Synthetic, standing_pose, train_names, write_dataset, write_folder
from skimage.color import rgb2lab

from deformgan.errors import InputError
from deformgan.evaluation import causes as C
from deformgan.evaluation import metrics as M
from deformgan.evaluation.failures import find_failures, warped_sources
from deformgan.evaluation.scores import target_masks
from deformgan.keypoints import JOINT, MISSING, read_annotations
from deformgan.parts import part_masks

# ---------------------------------------------------------------------------------------------- causes


def _pose(**joints) -> np.ndarray:
    kp = standing_pose().astype(np.float64)
    for name, xy in joints.items():
        kp[JOINT[name]] = xy
    return kp


def test_missing_keypoints_counts_the_joints_the_part_warps_need_in_both_poses():
    # Counted: the source's Lwri and Rank (forearm and lower-leg warps), and the target's head (no head
    # keypoint at all: the head warp has nothing to fit). Not counted: the source's Leye (the other head
    # keypoints still fit the head) and the target's neck (no part uses it). 2 + 1 = 3.
    no_head = {name: (MISSING, MISSING) for name in ("nose", "Leye", "Reye", "Lear", "Rear")}
    source = _pose(Lwri=(MISSING, MISSING), Rank=(MISSING, MISSING), Leye=(MISSING, MISSING))
    target = _pose(neck=(MISSING, MISSING), **no_head)
    complete = standing_pose().astype(np.float64)
    found = C.missing_keypoints(np.stack([source, complete]), np.stack([target, complete]))
    assert found.values.tolist() == [3.0, 0.0]
    assert found.details == ["target head; source Lwri, Rank", "every joint the part warps need is present"]
    # The joints are exactly those the part affines are fitted on: the 4 torso joints and both ends of the
    # 8 limbs of deformgan.parts (12 distinct joints).
    assert set(C.MODEL_JOINTS) == {"Rsho", "Lsho", "Rhip", "Lhip", "Relb", "Lelb", "Rwri", "Lwri",
                                   "Rkne", "Lkne", "Rank", "Lank"}  # fmt: skip


def test_one_missing_joint_is_tagged_whatever_the_other_pairs_are():
    """The rule is fixed (> 0 joints), so a pair missing one wrist is tagged even when every other pair
    misses more; a percentile rule would put its threshold at the typical count and not tag it."""
    values = {"missing_keypoints": np.array([1.0, *[4.0] * 9])}
    rule = C.thresholds_for(values, percentile=50)["missing_keypoints"]
    assert rule == {"threshold": 0.0, "rule": "fixed: value > 0"}
    assert C.rules_text({"missing_keypoints": rule}) == "missing keypoints: fixed: value > 0"


def test_arm_joint_inside_the_torso_by_hand():
    # Torso square 20..40 x 20..60: st = sqrt((40^2 + 40^2) / 2) = 40. Rwri at (30, 30) is 10 px from the
    # nearest edges (x = 20, x = 40, y = 20) -> 10 / 40 = 0.25 torso units inside; the other arm joints are
    # outside.
    kp = _pose(
        Rsho=(20, 20), Lsho=(40, 20), Lhip=(40, 60), Rhip=(20, 60),
        Relb=(10, 40), Rwri=(30, 30), Lelb=(50, 40), Lwri=(55, 50),
    )  # fmt: skip
    found = C.arm_in_torso(kp[None])
    assert found.values[0] == pytest.approx(0.25)
    assert found.details == ["Rwri 0.25 torso units inside the torso"]
    torso = {"Rsho": (20, 20), "Lsho": (40, 20), "Lhip": (40, 60), "Rhip": (20, 60)}
    outside = C.arm_in_torso(_pose(**torso, Relb=(10, 40), Rwri=(5, 40), Lelb=(50, 40), Lwri=(55, 50))[None])
    assert outside.values[0] == pytest.approx(-10 / 40)  # Relb and Lelb, 10 px outside


def test_warp_of_a_uniformly_scaled_pose_is_the_scale_on_every_part():
    target = standing_pose().astype(np.float64)
    source = 0.5 * target  # every part affine (target -> source) is 0.5 I: area 1/4, anisotropy 1
    area, anisotropy, valid = C.warp_factors(source[None], target[None])
    assert valid.all()
    np.testing.assert_allclose(area, 0.25, atol=1e-5)
    np.testing.assert_allclose(anisotropy, 1.0, atol=1e-5)
    assert C.large_warp(source[None], target[None]).values[0] == pytest.approx(math.log(4), abs=1e-5)
    # Stretching x by 2: the torso fit (4 points, exact) has area 2 and anisotropy 2.
    wide = target * np.array([2.0, 1.0])
    area, anisotropy, _ = C.warp_factors(wide[None], target[None])
    assert area[0, 0] == pytest.approx(2.0, abs=1e-5) and anisotropy[0, 0] == pytest.approx(2.0, abs=1e-5)


def test_rare_pose_is_invariant_to_position_and_size_and_never_its_own_neighbour():
    target = standing_pose().astype(np.float64)
    moved = target * 1.5 + np.array([5.0, 7.0])  # same pose, elsewhere and larger
    st = C._scale(target[None])[0][0]
    other = target.copy()
    other[JOINT["Rwri"], 0] += 0.5 * st  # one of the 14 joints off by half a torso unit
    reference = np.stack([moved, other])
    found = C.rare_pose(target[None], reference, ["self.jpg", "other.jpg"], ["x.jpg"], [["x.jpg"]])
    assert found.values[0] == pytest.approx(0.0, abs=1e-6)
    assert found.details == ["nearest reference pose self.jpg"]
    # The same query named like the first reference: that one is excluded, the next is sqrt(0.5^2 / 14).
    found = C.rare_pose(target[None], reference, ["self.jpg", "other.jpg"], ["self.jpg"], [["self.jpg"]])
    assert found.values[0] == pytest.approx(math.sqrt(0.25 / 14), rel=1e-6)


def _forearm(kp: np.ndarray, factor: float) -> np.ndarray:
    kp = kp.copy()
    elbow, wrist = kp[JOINT["Relb"]], kp[JOINT["Rwri"]]
    kp[JOINT["Rwri"]] = elbow + (wrist - elbow) * factor
    return kp


def test_implausible_bone_is_the_modified_z_score_by_hand():
    base = standing_pose().astype(np.float64)
    reference = np.stack([_forearm(base, math.exp(d)) for d in (-0.1, 0.0, 0.1)])
    stats = C.bone_statistics(reference)
    forearm = C.BONES.index(("Relb", "Rwri"))
    assert stats.mad[forearm] == pytest.approx(0.1)  # median |d - 0| of (-0.1, 0, 0.1)
    # A forearm e times as long: |ln e - 0| / (1.4826 * 0.1) = 6.745 (Iglewicz & Hoaglin's 0.6745 / MAD).
    query = _forearm(base, math.e)
    found = C.implausible_bones(base[None], query[None], stats)
    assert found.values[0] == pytest.approx(1 / (1.4826 * 0.1), rel=1e-6)
    assert found.details[0].startswith("target Relb-Rwri")
    assert found.values[0] > C.OUTLIER_Z


def test_colour_features_and_rare_appearance_by_hand():
    image = np.zeros((1, 16, 8, 3), np.uint8)
    image[...] = (200, 30, 30)
    features = C.colour_features(image)
    np.testing.assert_allclose(
        features[0, :3], rgb2lab(np.array([[[200, 30, 30]]], np.uint8))[0, 0], atol=1e-9
    )
    np.testing.assert_allclose(features[0, 3:], 0, atol=1e-9)
    # Reference values 0 and 2: standard deviation 1; the query 5 is 5 and 3 spreads away.
    reference = np.array([[0.0], [2.0]])
    assert C.rare_appearance(np.array([[5.0]]), reference, neighbours=2).values[0] == pytest.approx(4.0)
    assert C.rare_appearance(np.array([[5.0]]), reference, [[1]], neighbours=2).values[0] == pytest.approx(
        5.0
    )


def test_thresholds_rules():
    values = {"rare_pose": np.arange(1.0, 101.0), "arm_in_torso": np.zeros(100)}
    rules = C.thresholds_for(values)
    assert rules["rare_pose"]["threshold"] == pytest.approx(90.1)  # numpy's linear percentile of 1..100
    assert rules["rare_pose"]["rule"] == "value > 90th percentile over all 100 pairs"
    assert rules["arm_in_torso"] == {"threshold": 0.0, "rule": "fixed: value > 0"}
    assert C.thresholds_for(values, percentile=50)["rare_pose"]["threshold"] == pytest.approx(50.5)
    assert C.thresholds_for(values, overrides={"rare_pose": 7})["rare_pose"] == {
        "threshold": 7.0,
        "rule": "given",
    }
    with pytest.raises(InputError, match="unknown causes"):
        C.thresholds_for(values, overrides={"bad_luck": 1})


def test_warped_source_of_an_unchanged_pose_is_the_source():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (1, 128, 64, 3), dtype=np.uint8)
    kp = standing_pose().astype(np.float64)[None]
    combined, per_part, valid = warped_sources(source, kp, kp)
    assert valid.all()
    # Identity affines: every part reads the pixel it covers; the torso covers the whole image.
    np.testing.assert_array_equal(combined, source)
    np.testing.assert_array_equal(per_part[0, 0], source[0])
    masks = part_masks(__import__("torch").from_numpy(kp), (128, 64)).numpy()[0] > 0.5
    np.testing.assert_array_equal(per_part[0, 8], source[0] * masks[8][..., None])  # right forearm only


# ---------------------------------------------------------------------------------------------- find_failures


@pytest.fixture
def planted(tmp_path):
    """20 pairs generated perfectly except 3 garbled ones; pair 5's target has a wrist over the torso and
    pair 7's target misses its left wrist."""
    synth = Synthetic(20, seed=4)
    target_5 = synth.keypoints[synth.pairs[5][1]]
    target_5[JOINT["Rwri"]] = (target_5[JOINT["Rsho"]] + target_5[JOINT["Lhip"]]) // 2
    synth.keypoints[synth.pairs[7][1]][JOINT["Lwri"]] = MISSING
    generated = synth.target.copy()
    rng = np.random.default_rng(5)
    bad = [3, 11, 16]
    generated[bad] = rng.integers(0, 256, generated[bad].shape, dtype=np.uint8)
    folder = write_folder(tmp_path / "ours", "strips", synth.pairs, generated, synth.source, synth.target)
    return synth, folder, bad, generated, synth.annotations(tmp_path / "synth-annotation-test.csv")


def test_find_failures_ranks_tags_and_writes_the_page(tmp_path, planted):
    synth, folder, bad, generated, csv = planted
    out = tmp_path / "out"
    result = find_failures(folder, annotations=csv, out=out, worst=5)
    n = len(synth.pairs)
    mask = target_masks(synth.pairs, synth.keypoints, (128, 64))
    expected = M.ssim(generated, synth.target, mask)
    ranked = result["pairs"]
    assert [r["score"] for r in ranked] == pytest.approx(sorted(expected))  # worst (lowest) first
    assert {(r["from"], r["to"]) for r in ranked[:3]} == {synth.pairs[i] for i in bad}
    assert result["meta"]["worst_decile"] == 2 and result["meta"]["shown"] == 5
    assert "every annotated image given" in result["meta"]["pose_reference"]
    assert result["meta"]["appearance_reference"].startswith("the 20 distinct test source images")

    by_pair = {(r["from"], r["to"]): r for r in ranked}
    assert "arm_in_torso" in by_pair[synth.pairs[5]]["tags"]
    assert [p for p, r in by_pair.items() if "arm_in_torso" in r["tags"]] == [synth.pairs[5]]
    # Every synthetic pose has all 18 joints except pair 7's target: the fixed rule (> 0) tags it alone.
    assert [p for p, r in by_pair.items() if "missing_keypoints" in r["tags"]] == [synth.pairs[7]]
    assert by_pair[synth.pairs[7]]["details"]["missing_keypoints"] == "target Lwri"
    # The page states each cause's rule as applied (the same strings as the per-cause rules).
    assert result["meta"]["threshold_rules"].startswith("missing keypoints: fixed: value > 0; ")
    for cause in result["causes"].values():
        assert f"{cause['label']}: {cause['rule']}" in result["meta"]["threshold_rules"]
    # Rates are the tag frequencies: recompute them from the ranked list.
    for key, cause in result["causes"].items():
        tagged = [key in r["tags"] for r in ranked]
        assert cause["all_rate"] == pytest.approx(sum(tagged) / n)
        assert cause["worst_decile_rate"] == pytest.approx(sum(tagged[:2]) / 2)
        assert set(cause) >= {"threshold", "rule", "description", "lift", "spearman_with_badness"}

    assert json.loads((out / "failures.json").read_text()) == json.loads(json.dumps(result))
    page = (out / "failures.html").read_text()
    assert "Causes: how often tagged" in page and "The 5 worst pairs" in page
    for rank in range(1, 6):
        assert (out / "failures" / f"{rank:03d}.png").is_file()
        assert (out / "failures" / f"{rank:03d}-parts.png").is_file()
    assert not (out / "failures" / "006.png").exists()
    markdown = (out / "failures.md").read_text()
    assert "| cause | rule | threshold |" in markdown and markdown.count("\n1. ") == 1


def test_find_failures_bad_input(tmp_path, planted):
    synth, folder, _, _, csv = planted
    with pytest.raises(InputError, match="every cause needs the poses"):
        find_failures(folder, out=tmp_path / "o")
    with pytest.raises(InputError, match="no per-pair value"):
        find_failures(folder, annotations=csv, out=tmp_path / "o", score="fid")
    with pytest.raises(InputError, match=f"score lpips: weights missing: {M.ALEXNET_WEIGHTS}"):
        find_failures(folder, annotations=csv, out=tmp_path / "o", score="lpips", weights=tmp_path / "none")
    numbered = write_folder(
        tmp_path / "num", "numbered", synth.pairs, synth.target, synth.source, synth.target
    )
    with pytest.raises(InputError, match="numbered strips without pair names; pass pairs="):
        find_failures(numbered, annotations=csv, out=tmp_path / "o")
    assert (
        find_failures(numbered, annotations=csv, out=tmp_path / "o", pairs=synth.pairs, worst=1)["meta"][
            "pairs"
        ]
        == 20
    )
    plain = write_folder(tmp_path / "plain", "generated", synth.pairs, synth.target)
    with pytest.raises(InputError, match="format 'generated' has no source images; pass the dataset folder"):
        find_failures(plain, annotations=csv, out=tmp_path / "o")
    with pytest.raises(InputError, match="worst: expected >= 1"):
        find_failures(folder, annotations=csv, out=tmp_path / "o", worst=0)


def test_find_failures_with_a_dataset_folder(tmp_path):
    """failures --data: plain generated images are scored against the dataset's targets, poses are rare
    relative to the training annotations and colours relative to the training images."""
    synth, train = Synthetic(12, seed=8), Synthetic(6, seed=9)
    synth.source[0] = (0, 200, 0)  # one source all green: colours no training image has
    train.keypoints[train.pairs[2][1]] = synth.keypoints[synth.pairs[3][1]].copy()  # pair 3's pose, trained
    root = write_dataset(tmp_path / "data", synth, train)
    generated = synth.target.copy()
    bad = [4, 9]
    generated[bad] = np.random.default_rng(1).integers(0, 256, generated[bad].shape, dtype=np.uint8)
    folder = write_folder(tmp_path / "plain", "generated", synth.pairs, generated)  # no source/target panels
    result = find_failures(folder, data=root, out=tmp_path / "out", worst=3)
    ranked = result["pairs"]
    by_pair = {(r["from"], r["to"]): r for r in ranked}

    # Ground truth = the dataset's targets: the garbled pairs come first, every other output is its target
    # exactly (mask-SSIM(x, x) = 1).
    assert {(r["from"], r["to"]) for r in ranked[:2]} == {synth.pairs[i] for i in bad}
    assert [r["score"] for r in ranked[2:]] == pytest.approx([1.0] * 10, abs=1e-12)

    # Poses: the dataset's training annotations; pair 3's target pose is a training pose (distance 0).
    meta = result["meta"]
    assert meta["pose_reference"] == f"training poses: {root / 'synth-annotation-train.csv'}"
    copied = train_names(train)[train.pairs[2][1]]
    assert by_pair[synth.pairs[3]]["values"]["rare_pose"] == pytest.approx(0.0, abs=1e-9)
    assert by_pair[synth.pairs[3]]["details"]["rare_pose"] == f"nearest reference pose {copied}"

    # Appearance: the 12 training images (not the test sources), each source's CIELAB statistics inside
    # its Ma et al. mask against theirs; the green source is the farthest and tagged.
    assert meta["appearance_reference"] == f"12 training images of {root / 'synth-dataset' / 'train'}"
    names = train_names(train)
    train_images = dict(zip([a for a, _ in train.pairs], train.source, strict=True))
    train_images.update(zip([b for _, b in train.pairs], train.target, strict=True))
    order = sorted(names, key=names.get)  # the training files in file-name order
    reference = C.colour_features(
        np.stack([train_images[n] for n in order]), np.stack([train.keypoints[n] for n in order])
    )
    source_kp = np.stack([synth.keypoints[a] for a, _ in synth.pairs])
    expected = C.rare_appearance(C.colour_features(synth.source, source_kp), reference).values
    got = [by_pair[p]["values"]["rare_appearance"] for p in synth.pairs]
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    assert int(np.argmax(got)) == 0 and "rare_appearance" in by_pair[synth.pairs[0]]["tags"]


@pytest.mark.slow  # 100 real Market pairs against 12,936 training poses, plus 30 DeepFashion pairs (~10 s)
def test_real_failures(tmp_path, shared):
    annotations = shared / "data" / "annotations"
    train = annotations / "market-annotation-train.csv"
    test = annotations / "market-annotation-test.csv"
    result = find_failures(
        shared / "data" / "triplets" / "market", annotations=[train, test], train_annotations=train,
        out=tmp_path / "market", worst=10,
    )  # fmt: skip
    assert result["meta"]["pairs"] == 100 and result["meta"]["worst_decile"] == 10
    assert result["meta"]["pose_reference"] == f"training poses: {train}"
    scores = [r["score"] for r in result["pairs"]]
    assert scores == sorted(scores)
    # The mean per-pair mask-SSIM is evaluate's validated value (benchmarks/results/real_triplets.md).
    assert np.mean(scores) == pytest.approx(0.828, abs=5e-4)
    for key, cause in result["causes"].items():
        assert cause["computable"] >= 95, key  # nearly every pair has every value
    # The pairs' own images are in the training CSV (these triplets come from its identities) and are
    # excluded: no target pose is its own nearest neighbour.
    assert all(r["values"]["rare_pose"] is None or r["values"]["rare_pose"] > 0 for r in result["pairs"])

    fashion = shared / "data" / "triplets" / "deepfashion"
    csv = annotations / "fasion-annotation-test.csv"
    from deformgan.evaluation.formats import read_method

    pairs = read_method(fashion, known=read_annotations(csv)).pairs[:30]
    result = find_failures(fashion, annotations=csv, pairs=pairs, out=tmp_path / "fashion", worst=3)
    assert result["meta"]["pairs"] == 30 and (tmp_path / "fashion" / "failures" / "003-parts.png").is_file()

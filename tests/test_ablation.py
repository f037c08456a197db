"""Smoke tests of benchmarks/ablation.py's functions (the benchmark itself is run by hand: its docstring)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation.py"


@pytest.fixture(scope="module")
def ablation():
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports its sibling `machine`, as when run directly
    spec = importlib.util.spec_from_file_location("ablation_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        sys.path.remove(str(SCRIPT.parent))


def test_mean_and_se_by_hand(ablation):
    # values 1, 2, 3, 4: mean 2.5, sample variance (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3, SE = sqrt(5/3) / 2.
    mean, se = ablation.mean_and_se(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == pytest.approx(2.5)
    assert se == pytest.approx(np.sqrt(5 / 3) / 2)


def test_paired_table_uses_per_pair_differences(ablation):
    # Model B is model A + 0.1 on every pair (+/- a little): the unpaired SEs are large (pairs vary a lot)
    # but the paired difference is 0.1 with a tiny SE, which is what the table must report.
    base = np.array([0.2, 0.9, 0.5, 0.7])
    better = base + np.array([0.09, 0.11, 0.10, 0.10])
    scores = {
        "A": {"ssim": base, "mask_ssim": base, "l1": base},
        "B": {"ssim": better, "mask_ssim": better, "l1": better},
    }
    row = ablation.paired_table(scores, "A", ["B"]).splitlines()[-1]
    diff_se = np.std([0.09, 0.11, 0.10, 0.10], ddof=1) / 2
    assert f"+0.1000 ± {diff_se:.4f}" in row
    assert f"= {0.1 / diff_se:.1f})" in row


def test_variants_have_equal_budgets_and_pixel_percloss_is_dsc(ablation):
    settings = ablation.Settings(iterations=7, width=0.25)
    variants = ablation.variant_configs(settings, vgg=None)
    assert [v.key for v in variants] == ["baseline", "dsc", "percloss", "full"]
    # Equal budgets: identical train, data and discriminator sections, the same generator but the skips.
    assert len({v.config.train for v in variants}) == 1
    assert len({v.config.data for v in variants}) == 1
    assert len({v.config.discriminator for v in variants}) == 1
    assert {dataclasses.replace(v.config.generator, warp_skip="mask") for v in variants} == {
        variants[1].config.generator
    }
    assert variants[0].config.train.iterations == 7 and variants[0].config.generator.width == 0.25
    assert [v.config.generator.warp_skip for v in variants] == ["none", "mask", "mask", "mask"]
    # Without VGG weights PercLoss is the DSC config: its run is shared; the others train their own.
    assert ablation.run_aliases(variants) == {
        "baseline": "baseline",
        "dsc": "dsc",
        "percloss": "dsc",
        "full": "full",
    }
    assert "pixel" in variants[2].label and "pixels" in variants[3].label


def test_vgg_variants_use_the_paper_layers(ablation, tmp_path):
    weights = tmp_path / "vgg19-dcbb9e9d.pth"  # only the path enters the config; nothing is loaded here
    variants = {v.key: v for v in ablation.variant_configs(ablation.Settings(), vgg=weights)}
    perc, full = variants["percloss"].config.objective, variants["full"].config.objective
    # The authors' README: PercLoss = L1 on conv2_1 (lambda 0.5); Full = NN loss on conv1_2 (lambda 0.01,
    # n = 3).
    assert (perc.reconstruction, perc.features, perc.reconstruction_weight) == ("l1", "conv2_1", 0.5)
    assert (full.reconstruction, full.features, full.reconstruction_weight, full.neighborhood) == (
        "nn",
        "conv1_2",
        0.01,
        3,
    )
    assert len(set(ablation.run_aliases(list(variants.values())).values())) == 4


def test_strip_figure_layout(ablation):
    n, h, w = 5, 128, 64
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    kp = np.full((n, 18, 2), -1.0, dtype=np.float32)
    figure = ablation.strip_figure(images, kp, images, {"Baseline": images, "DSC": images}, rows=3)
    gap, label = 2, 14
    # 3 rows of (h + gap) under a label bar; 5 columns (source, pose, truth, 2 models) of (w + gap).
    assert figure.shape == (label + 3 * (h + gap), 5 * (w + gap), 3)
    # The rows are spread over the set: pairs 0, 2 and 4 in the source column.
    top = label
    for row, index in enumerate([0, 2, 4]):
        y = top + row * (h + gap)
        np.testing.assert_array_equal(figure[y : y + h, :w], images[index])


def test_fixed_test_pairs_are_a_reproducible_subset(ablation, tmp_path):
    from deformgan.synth import write_synthetic_dataset

    write_synthetic_dataset(tmp_path, identities=4, poses_per_identity=3, progress=False)
    all_pairs = ablation.fixed_test_pairs(tmp_path, 10_000, seed=0)
    subset = ablation.fixed_test_pairs(tmp_path, 3, seed=0)
    assert len(all_pairs) == 6  # 1 test identity of 4, 3 poses -> 3 * 2 ordered pairs
    assert subset == ablation.fixed_test_pairs(tmp_path, 3, seed=0)
    assert len(subset) == 3 and all(p in all_pairs for p in subset)
    assert subset == sorted(subset, key=all_pairs.index)  # file order kept

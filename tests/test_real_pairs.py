"""The part geometry and the deformable warp on real pose pairs (../shared/data/triplets).

Warping the source image part by part toward the target pose (the paper's deformable skip applied to
pixels) must bring the person closer to the target than the unwarped source: the mean mask-SSIM to the
target, on the target's Ma et al. mask, goes up.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deformgan.evaluation.formats import read_method
from deformgan.evaluation.metrics import ssim
from deformgan.evaluation.scores import target_masks
from deformgan.keypoints import read_annotations
from deformgan.parts import part_affines, part_masks
from deformgan.warp import deform

DATASETS = {
    "market": ("market", ["market-annotation-train.csv", "market-annotation-test.csv"], (128, 64)),
    "deepfashion": ("deepfashion", ["fasion-annotation-test.csv"], (256, 256)),
}


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_part_warp_raises_mask_ssim_on_real_pairs(shared, name):
    folder, csvs, size = DATASETS[name]
    keypoints: dict[str, np.ndarray] = {}
    for csv in csvs:
        keypoints.update(read_annotations(shared / "data" / "annotations" / csv))
    strips = read_method(shared / "data" / "triplets" / folder, known=keypoints)
    source = strips.source
    source_kp = torch.from_numpy(np.stack([keypoints[a] for a, _ in strips.pairs])).float()
    target_kp = torch.from_numpy(np.stack([keypoints[b] for _, b in strips.pairs])).float()

    theta, valid = part_affines(source_kp, target_kp)
    masks = part_masks(target_kp, size)
    # Warp raw [0, 255] pixels: zero means "no part here" for the max over parts, as for ReLU features.
    pixels = torch.from_numpy(source).permute(0, 3, 1, 2).float()
    warped = deform(pixels, theta, valid, masks, "max", "nearest")
    warped = warped.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

    eval_mask = target_masks(strips.pairs, keypoints, size)
    copy_score = ssim(source, strips.target, eval_mask).mean()
    warp_score = ssim(warped, strips.target, eval_mask).mean()
    print(f"{name}: mask-SSIM copy source {copy_score:.3f}, warped source {warp_score:.3f}")
    assert len(strips.pairs) == 100
    assert warp_score > copy_score, (copy_score, warp_score)

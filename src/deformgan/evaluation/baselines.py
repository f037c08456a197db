"""The two references every generated person is measured against: the source image copied unchanged,
and the source warped part by part into the target pose (what the deformable skips do to features,
applied to the pixels, with no network)."""

from __future__ import annotations

import numpy as np
import torch

from deformgan.parts import part_affines, part_masks
from deformgan.warp import deform


def copy_source(source: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) sources, unchanged: the score a generator must beat to have done anything."""
    return np.asarray(source)


def warp_only(source: np.ndarray, source_kp: np.ndarray, target_kp: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) sources warped toward the target poses by the 10 part affines (max over parts).

    source_kp, target_kp: (N, 18, 2) (x, y) pixels, -1 = missing. The warp runs on pixel values in
    [0, 255]: ``deform`` zero-fills outside each part's mask and takes the max over parts (the authors'
    layer, designed for non-negative ReLU features), so a zero must mean "no contribution", which it does
    for non-negative pixels and would not for [-1, 1] images.
    """
    size = source.shape[1:3]
    src_kp = torch.as_tensor(np.asarray(source_kp)).float()
    tgt_kp = torch.as_tensor(np.asarray(target_kp)).float()
    theta, valid = part_affines(src_kp, tgt_kp)
    masks = part_masks(tgt_kp, size)
    pixels = torch.from_numpy(np.ascontiguousarray(source)).permute(0, 3, 1, 2).float()
    warped = deform(pixels, theta, valid, masks, "max", "nearest")
    return warped.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()

"""Keypoint heatmaps: the pose representation both generator streams and the discriminator read.

Paper Sec. 3: a pose P(x) is a stack of 18 heatmaps, one per joint, each a Gaussian of fixed width around
the joint (the authors' ``pose_utils.cords_to_map``: sigma = 6 px at every resolution).
"""

from __future__ import annotations

import torch

from deformgan.keypoints import MISSING, is_present


def keypoint_heatmaps(kp: torch.Tensor, size: tuple[int, int], sigma: float = 6.0) -> torch.Tensor:
    """Gaussian keypoint heatmaps (``pose_utils.cords_to_map``).

    kp: (..., 18, 2) keypoints in (x, y) pixels, -1 = missing. size: (H, W).
    Returns float (..., 18, H, W): ``exp(-((row - y)^2 + (col - x)^2) / (2 sigma^2))`` on the integer
    pixel grid (peak 1 at the joint), an all-zero channel for a missing joint. The Gaussian is separable,
    so it is built as an outer product of a row and a column profile (no (H*W) distance tensor per joint).
    """
    kp = torch.as_tensor(kp)
    height, width = size
    dtype = kp.dtype if kp.is_floating_point() else torch.float32
    kp_f = kp.to(dtype)
    rows = torch.arange(height, device=kp.device, dtype=dtype)
    cols = torch.arange(width, device=kp.device, dtype=dtype)
    present = is_present(kp).to(dtype)
    gy = torch.exp(-((rows - kp_f[..., 1:2]) ** 2) / (2 * sigma**2)) * present[..., None]  # (..., 18, H)
    gx = torch.exp(-((cols - kp_f[..., 0:1]) ** 2) / (2 * sigma**2))  # (..., 18, W)
    return gy[..., :, None] * gx[..., None, :]


def heatmap_keypoints(heatmaps: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Inverse of :func:`keypoint_heatmaps` for display (reference ``map_to_cord``).

    heatmaps: (..., 18, H, W) -> long (..., 18, 2) (x, y) of each channel's argmax, -1 where the peak is
    below ``threshold``.
    """
    *lead, joints, height, width = heatmaps.shape
    flat = heatmaps.reshape(*lead, joints, height * width)
    peak, index = flat.max(dim=-1)
    kp = torch.stack([index % width, index // width], dim=-1)
    return torch.where((peak >= threshold)[..., None], kp, torch.full_like(kp, MISSING))

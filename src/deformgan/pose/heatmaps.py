"""Keypoint heatmaps: the pose representation both generator streams and the discriminator read.

Paper, arXiv v1 Eq. 1: a pose is a stack of 18 heatmaps, one per joint, peaked at the joint (the authors'
``pose_utils.cords_to_map``: ``exp(-d^2 / (2 sigma^2))``, sigma = 6 px at every resolution). Two modes:

- ``"reference"``, what the authors' code actually computed, and what every released checkpoint was
  trained on: it ran under Python 2 with integer keypoints and an integer sigma, so ``-d^2 / (2 * 6^2)``
  was a FLOOR division and the maps are ``exp(floor(-d^2 / 72))``: 1 at the joint, e^-1 for
  0 < d <= sqrt(72) = 8.49 px, e^-2 up to 12 px, e^-3 up to 14.7 px, ... (rings, not a smooth bump);
- ``"gaussian"``, the smooth ``exp(-d^2 / (2 sigma^2))`` the code meant.
"""

from __future__ import annotations

import torch

from deformgan.keypoints import MISSING, is_present

HEATMAP_MODES = ("reference", "gaussian")


def keypoint_heatmaps(
    kp: torch.Tensor, size: tuple[int, int], sigma: float = 6.0, mode: str = "gaussian"
) -> torch.Tensor:
    """Keypoint heatmaps (``pose_utils.cords_to_map``).

    kp: (..., 18, 2) keypoints in (x, y) pixels, -1 = missing. size: (H, W). mode: see the module
    docstring ("reference" rounds the keypoints to integer pixels, as the authors' annotations are).
    Returns float (..., 18, H, W) on the integer pixel grid (peak 1 at the joint), an all-zero channel for
    a missing joint. The Gaussian is separable, so it is built as an outer product of a row and a column
    profile (no (H*W) distance tensor per joint); the reference mode needs the full distance map.
    """
    kp = torch.as_tensor(kp)
    height, width = size
    dtype = kp.dtype if kp.is_floating_point() else torch.float32
    kp_f = kp.to(dtype)
    rows = torch.arange(height, device=kp.device, dtype=dtype)
    cols = torch.arange(width, device=kp.device, dtype=dtype)
    present = is_present(kp).to(dtype)
    if mode == "reference":
        # Python 2 integer arithmetic: exact in float64 for squared pixel distances (< 2^53).
        y = kp_f[..., 1:2].double().round()
        x = kp_f[..., 0:1].double().round()
        d2 = (rows.double() - y)[..., :, None] ** 2 + (cols.double() - x)[
            ..., None, :
        ] ** 2  # (..., 18, H, W)
        maps = torch.exp(torch.floor(-d2 / (2 * float(sigma) ** 2))).to(dtype)
        return maps * present[..., None, None]
    gy = torch.exp(-((rows - kp_f[..., 1:2]) ** 2) / (2 * sigma**2)) * present[..., None]  # (..., 18, H)
    gx = torch.exp(-((cols - kp_f[..., 0:1]) ** 2) / (2 * sigma**2))  # (..., 18, W)
    return gy[..., :, None] * gx[..., None, :]


def heatmap_keypoints(heatmaps: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Inverse of :func:`keypoint_heatmaps` for display (``pose_utils.map_to_cord``).

    heatmaps: (..., 18, H, W) -> long (..., 18, 2) (x, y) of each channel's argmax, -1 where the peak is
    below ``threshold``.
    """
    *lead, joints, height, width = heatmaps.shape
    flat = heatmaps.reshape(*lead, joints, height * width)
    peak, index = flat.max(dim=-1)
    kp = torch.stack([index % width, index // width], dim=-1)
    return torch.where((peak >= threshold)[..., None], kp, torch.full_like(kp, MISSING))

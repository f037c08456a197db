"""The evaluation mask of Ma et al. (NIPS 2017), the region mask-SSIM and mask-IS are computed on.

The authors' ``pose_utils.produce_ma_mask`` re-implements it: 23 segments between target joints drawn as
quadrilaterals of half-width 4 px, discs of radius 4 px on every visible joint, then a morphological
closing (dilation, erosion) with a 5x5 square. The radius is fixed in pixels at every resolution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deformgan.keypoints import is_present

#: The 23 segments of the Ma et al. evaluation mask (``produce_ma_mask``, 0-indexed joints).
EVALUATION_SEGMENTS: tuple[tuple[int, int], ...] = tuple(
    (a - 1, b - 1)
    for a, b in (
        (2, 3),
        (2, 6),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (2, 9),
        (9, 10),
        (10, 11),
        (2, 12),
        (12, 13),
        (13, 14),
        (2, 1),
        (1, 15),
        (15, 17),
        (1, 16),
        (16, 18),
        (2, 17),
        (2, 18),
        (9, 12),
        (12, 6),
        (9, 3),
        (17, 18),
    )  # fmt: skip
)


def _binary_closing(mask: torch.Tensor, size: int = 5) -> torch.Tensor:
    """Dilation then erosion with a size x size square (skimage ``dilation``/``erosion``, reflect border).

    With scipy's reflect border a max/min filter sees only pixels already inside the window, which equals
    ignoring the outside: dilation pads with 0 (max_pool's -inf), erosion with 1.
    """
    x = mask.float()[:, None]
    dilated = F.max_pool2d(x, size, stride=1, padding=size // 2)
    eroded = 1 - F.max_pool2d(1 - dilated, size, stride=1, padding=size // 2)
    return eroded[:, 0] > 0.5


def evaluation_mask(kp: torch.Tensor, size: tuple[int, int], radius: float = 4.0) -> torch.Tensor:
    """The Ma et al. evaluation mask of a pose (the authors' ``pose_utils.produce_ma_mask``).

    kp: (B, 18, 2) (x, y) pixels. Returns bool (B, H, W): 23 segments drawn as quadrilaterals of half-width
    ``radius`` px, discs of radius ``radius`` px (strictly inside, like skimage ``disk``) on every present
    joint, then a 5x5 closing. The radius is fixed in pixels for every resolution, like the reference.
    Zero-length segments (coincident joints) are skipped (the reference divides by zero there).
    """
    kp = torch.as_tensor(kp).float()  # float32 is exact enough for pixel-grid tests, and twice as fast
    present = is_present(kp)
    rows = torch.arange(size[0], dtype=kp.dtype, device=kp.device)[:, None]  # pixel centres at integers
    cols = torch.arange(size[1], dtype=kp.dtype, device=kp.device)[None, :]
    a_idx = [a for a, _ in EVALUATION_SEGMENTS]
    b_idx = [b for _, b in EVALUATION_SEGMENTS]
    a, b = kp[:, a_idx], kp[:, b_idx]
    d = b - a
    length2 = (d**2).sum(-1)
    seg_ok = present[:, a_idx] & present[:, b_idx] & (length2 > 0)
    # Inside the segment's quadrilateral (closed, like skimage ``polygon``): the projection on the segment
    # falls within it and the distance to its line is at most the radius. Two maps instead of four edges.
    dx, dy = d[..., 0, None, None], d[..., 1, None, None]
    rel_x = cols - a[..., 0, None, None]
    rel_y = rows - a[..., 1, None, None]
    along = dx * rel_x + dy * rel_y
    across = dx * rel_y - dy * rel_x
    length2 = length2[..., None, None]
    eps = 1e-9 * length2
    inside = (along >= -eps) & (along <= length2 + eps) & (across**2 <= radius**2 * length2 + eps)
    segments = (inside & seg_ok[..., None, None]).any(1)
    dist2 = (cols - kp[..., 0, None, None]) ** 2 + (rows - kp[..., 1, None, None]) ** 2
    discs = ((dist2 < radius**2) & present[..., None, None]).any(1)
    return _binary_closing(segments | discs)

"""Pose conditioning: heatmaps and part geometry for a batch of pose pairs (paper Sec. 3-4)."""

from __future__ import annotations

import torch

from deformgan.conditioning import PoseConditioning, pose_conditioning


def affine(a0=1.0, a1=0.0, a2=0.0, b0=0.0, b1=1.0, b2=0.0) -> torch.Tensor:
    """One (2, 3) target->source pixel affine: x' = a0 x + a1 y + a2, y' = b0 x + b1 y + b2."""
    return torch.tensor([[a0, a1, a2], [b0, b1, b2]], dtype=torch.float32)


def standing_pose(shift: float = 0.0) -> torch.Tensor:
    """A plausible 128x64 standing person, (18, 2) (x, y), all joints present."""
    kp = torch.tensor(
        [[32, 20], [32, 30], [24, 30], [20, 50], [18, 68], [40, 30], [44, 50], [46, 68], [27, 66],
         [27, 92], [27, 118], [37, 66], [37, 92], [37, 118], [30, 17], [34, 17], [28, 18], [36, 18]],
        dtype=torch.float32,
    )  # fmt: skip
    return kp + shift


def test_pose_conditioning_shapes_for_each_variant():
    source = torch.stack([standing_pose(), standing_pose(2)])
    target = torch.stack([standing_pose(-3), standing_pose(1)])
    target[1, 4] = -1  # a missing right wrist: the right forearm is invalid
    mask = pose_conditioning(source, target, (128, 64), "mask")
    assert mask.source_heatmaps.shape == mask.target_heatmaps.shape == (2, 18, 128, 64)
    assert mask.theta.shape == (2, 10, 2, 3) and mask.theta.dtype == torch.float32
    assert mask.valid.shape == (2, 10) and mask.valid.dtype == torch.bool
    assert mask.masks.shape == (2, 10, 128, 64) and mask.masks.dtype == torch.float32
    assert not mask.valid[1, 8] and mask.valid[0].all()
    # A pure shift of every joint by (-3, -3) -> (0, 0): each part's affine is that translation, target ->
    # source, i.e. x_source = x_target + 3.
    torch.testing.assert_close(mask.theta[0], affine(a2=3.0, b2=3.0).expand(10, 2, 3), atol=1e-4, rtol=0)
    one = pose_conditioning(source, target, (128, 64), "global")
    assert one.theta.shape == (2, 1, 2, 3) and one.valid.shape == (2, 1) and one.masks is None
    none = pose_conditioning(source, target, (128, 64), "none")
    assert none.theta is None and none.valid is None and none.masks is None
    moved = mask.to("cpu")
    assert moved is not mask and torch.equal(moved.masks, mask.masks)


def test_pose_conditioning_dataclass_to_keeps_none():
    cond = PoseConditioning(torch.zeros(1, 18, 4, 4), torch.zeros(1, 18, 4, 4))
    assert cond.to("cpu").theta is None

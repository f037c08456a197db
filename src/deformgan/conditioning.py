"""What the networks are fed besides the source image: heatmaps of both poses and the part geometry.

Paper Sec. 3-4: the generator's appearance stream reads the source image with its pose heatmaps
``(x_a, H_a)``, the pose stream reads the target heatmaps ``H_b``, and the deformable skip connections
need the part affines and the target part masks; the discriminator reads ``(x_a, H_a, y, H_b)``. The
paper's Baseline needs the heatmaps only. :func:`pose_conditioning` computes all of it for a batch of pose
pairs, on the keypoints' device.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from deformgan import parts
from deformgan.config import Config
from deformgan.pose.heatmaps import keypoint_heatmaps

#: The generator variants by the geometry their skip connections use (the authors' ``--warp_skip``):
#: "none" = the paper's Baseline (plain U-Net skips), "mask" = deformable skips (10 part affines and
#: masks; the paper's DSC, PercLoss and Full models), "global" = one affine for the whole body, no masks
#: (the authors' ``--warp_skip full``, renamed here so that it is not mistaken for the Full model).
WARP_SKIPS = ("none", "mask", "global")


@dataclass
class PoseConditioning:
    """Everything the networks need besides the source image, for one batch.

    source_heatmaps, target_heatmaps: (B, 18, H, W) keypoint heatmaps.
    theta: (B, P, 2, 3) target->source pixel affines (P = 10 parts for "mask", 1 for "global"), or None.
    valid: (B, P) bool, or None. masks: (B, P, H, W) float 0/1 target part masks ("mask" only), or None.
    """

    source_heatmaps: torch.Tensor
    target_heatmaps: torch.Tensor
    theta: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    masks: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> PoseConditioning:
        """A copy with every tensor moved to ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return PoseConditioning(**{k: None if v is None else v.to(device) for k, v in moved.items()})


def pose_conditioning(
    source_kp: torch.Tensor,
    target_kp: torch.Tensor,
    size: tuple[int, int],
    warp_skip: str,
    heatmaps: str = "gaussian",
    sigma: float = 6.0,
) -> PoseConditioning:
    """Heatmaps, part affines and part masks for a batch of pose pairs, on the keypoints' device.

    source_kp, target_kp: float (B, 18, 2) (x, y) pixels, -1 = missing. size: (H, W).
    warp_skip "mask": 10 part affines + target part masks; "global": one affine, no masks; "none":
    heatmaps only. heatmaps, sigma: the heatmap mode and width (:func:`deformgan.pose.keypoint_heatmaps`).
    """
    size = (int(size[0]), int(size[1]))
    cond = PoseConditioning(
        source_heatmaps=keypoint_heatmaps(source_kp, size, sigma, heatmaps),
        target_heatmaps=keypoint_heatmaps(target_kp, size, sigma, heatmaps),
    )
    if warp_skip == "none":
        return cond
    device = source_kp.device
    if warp_skip == "mask":
        theta, valid = parts.part_affines(source_kp, target_kp)
        cond.masks = parts.part_masks(target_kp, size).to(device=device, dtype=torch.float32)
    else:
        theta, valid = parts.global_affine(source_kp, target_kp)
    cond.theta = theta.to(device=device, dtype=torch.float32)
    cond.valid = valid.to(device=device, dtype=torch.bool)
    return cond


def conditioning_for(
    config: Config, source_kp: torch.Tensor, target_kp: torch.Tensor, warp_skip: str | None = None
) -> PoseConditioning:
    """:func:`pose_conditioning` as a run's config asks for it (image size, heatmaps, the generator's skip
    type unless ``warp_skip`` overrides it: the discriminator needs heatmaps only, ``"none"``)."""
    return pose_conditioning(
        source_kp,
        target_kp,
        config.image_size,
        config.generator.warp_skip if warp_skip is None else warp_skip,
        config.conditioning.heatmaps,
        config.conditioning.sigma,
    )

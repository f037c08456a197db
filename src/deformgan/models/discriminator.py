"""The conditional PatchGAN discriminator (``conditional_gan.make_discriminator``, ``--disc_type call``)."""

from __future__ import annotations

import torch
from torch import nn

from deformgan.errors import InputError
from deformgan.keypoints import NUM_JOINTS
from deformgan.models.blocks import DownBlock, keras_init_, make_norm, scaled

IMAGE_CHANNELS = 3


def patch_grid(image_size: tuple[int, int]) -> tuple[int, int]:
    """(h', w') of the discriminator's logit map: a 'valid' 4x4/2 conv, then four 4x4/2 pad-1 convs.
    (3, 1) at 128x64 and (7, 7) at 256x256."""

    def side(n: int) -> int:
        n = (n - 4) // 2 + 1
        for _ in range(4):
            n = (n + 2 - 4) // 2 + 1
        return n

    return side(int(image_size[0])), side(int(image_size[1]))


class Discriminator(nn.Module):
    """forward(source_image, source_heatmaps, image, target_heatmaps) -> raw logits (B, 1, h', w').

    Input concat = 3 + 18 + 3 + 18 = 42 channels; Conv 4x4 s2 'valid' with bias (64, no activation) ->
    down blocks 128, 256, 512 (norm) -> down block 1 (no norm). The sigmoid lives in the loss.
    """

    def __init__(self, image_size: tuple[int, int], norm: str = "reference", width: float = 1.0):
        super().__init__()
        if not width > 0:
            raise InputError(f"Discriminator: width must be > 0, got {width}")
        make_norm(norm, 1)  # validates the name
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.patch_grid = patch_grid(self.image_size)
        if min(self.patch_grid) < 1:
            raise InputError(
                f"Discriminator: image_size {self.image_size} is too small (needs both sides >= 48)"
            )
        f64, f128, f256, f512 = (scaled(f, width) for f in (64, 128, 256, 512))
        self.layers = nn.Sequential(
            nn.Conv2d(2 * (IMAGE_CHANNELS + NUM_JOINTS), f64, kernel_size=4, stride=2),
            DownBlock(f64, f128, norm),
            DownBlock(f128, f256, norm),
            DownBlock(f256, f512, norm),
            DownBlock(f512, 1, None),
        )
        keras_init_(self)

    def forward(
        self,
        source_image: torch.Tensor,
        source_heatmaps: torch.Tensor,
        image: torch.Tensor,
        target_heatmaps: torch.Tensor,
    ) -> torch.Tensor:
        inputs = (source_image, source_heatmaps, image, target_heatmaps)
        return self.layers(torch.cat(inputs, dim=1))

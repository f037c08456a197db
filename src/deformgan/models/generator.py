"""The U-Net generator with deformable skip connections.

Paper: Fig. 2 and "Deformable skip connections"; the authors' ``conditional_gan.make_generator``, ``encoder``,
``decoder`` and ``concatenate_skips``.

Two encoders with separate weights (appearance: source image + source heatmaps; pose: target heatmaps);
the appearance skips of stride <= 8 are warped part by part with :func:`deformgan.warp.deform` and
concatenated with the pose skips; deeper skips are plainly concatenated; one decoder consumes them
deepest first. ``warp_skip="none"`` is the paper's Baseline (one encoder on all 39 input channels).
"""

from __future__ import annotations

import torch
from torch import nn

from deformgan.conditioning import WARP_SKIPS, PoseConditioning
from deformgan.errors import InputError
from deformgan.keypoints import NUM_JOINTS
from deformgan.models.blocks import DownBlock, UpBlock, keras_init_, make_norm, scaled
from deformgan.warp import AGGREGATES, GRADIENTS, MODES, deform

WARPED_LEVELS = 4  # encoder levels 0..3 (strides 1, 2, 4, 8) are warped (``concatenate_skips``)
IMAGE_CHANNELS = 3


def encoder_levels(image_size: tuple[int, int]) -> int:
    """Number of encoder levels (full resolution + one per halving) for an (H, W) image.

    As many halvings as both sides allow while the deepest map keeps >= 4 rows: 6 levels at 128x64 (deepest
    4x2) and 7 at 256x256 (4x4), as the reference's two filter tables. 256x176 (176 = 11 * 16) gets 5 levels,
    deepest 16x11: the reference never ran that size. Raises :class:`InputError` below 4 levels.
    """
    height, width = int(image_size[0]), int(image_size[1])
    halvings = 0
    while height % 2 ** (halvings + 1) == 0 and width % 2 ** (halvings + 1) == 0:
        if height // 2 ** (halvings + 1) < 4:
            break
        halvings += 1
    if halvings < 3:
        raise InputError(
            f"image_size {height}x{width}: the generator needs both sides divisible by 8 and height >= 32"
        )
    return halvings + 1


def encoder_filters(levels: int) -> tuple[int, ...]:
    """(64, 128, 256, 512, ...) with ``levels`` entries: (64,128,256,512,512,512) for 6 levels
    (``encoder``).
    """
    return (64, 128, 256) + (512,) * (levels - 3)


def decoder_filters(levels: int) -> tuple[int, ...]:
    """Deepest first: (512, 512, 512, 256, 128, 3) for 6 levels (``decoder``)."""
    return (512,) * (levels - 3) + (256, 128, IMAGE_CHANNELS)


class Encoder(nn.Module):
    """Level 0: Conv 3x3 'same' with bias, no activation/norm; then down blocks with norm, the last without.
    forward (B, in_channels, H, W) -> list of every level's output (the skips), shallowest first."""

    def __init__(self, in_channels: int, filters: tuple[int, ...], norm: str):
        super().__init__()
        self.levels = nn.ModuleList([nn.Conv2d(in_channels, filters[0], kernel_size=3, padding=1)])
        for i in range(1, len(filters)):
            last = i == len(filters) - 1
            self.levels.append(DownBlock(filters[i - 1], filters[i], None if last else norm))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        for level in self.levels:
            x = level(x)
            skips.append(x)
        return skips


class Decoder(nn.Module):
    """Up blocks over concat(previous, skip), deepest first; dropout on the first three; the last stage is
    ReLU -> Conv 3x3 'same' with bias -> tanh. ``skip_channels`` are listed shallowest first."""

    def __init__(self, skip_channels: list[int], filters: tuple[int, ...], norm: str, dropout: float):
        super().__init__()
        deepest_first = skip_channels[::-1]
        self.stages = nn.ModuleList()
        previous = 0
        for i, (skip, nf) in enumerate(zip(deepest_first, filters, strict=True)):
            if i == len(filters) - 1:
                self.stages.append(
                    nn.Sequential(nn.ReLU(), nn.Conv2d(previous + skip, nf, 3, padding=1), nn.Tanh())
                )
            else:
                self.stages.append(UpBlock(previous + skip, nf, norm, dropout if i < 3 else 0.0))
            previous = nf

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = None
        for stage, skip in zip(self.stages, skips[::-1], strict=True):
            out = stage(skip if out is None else torch.cat([out, skip], dim=1))
        return out


class Generator(nn.Module):
    """Deformable-GAN generator. forward(source_image (B,3,H,W) in [-1,1], cond) -> (B,3,H,W) in [-1,1].

    image_size: (H, W), e.g. (128, 64) Market, (256, 256) DeepFashion.
    warp_skip: "mask" (DSC, 10 parts + masks), "global" (one affine, no masks), "none" (Baseline).
    warp_agg: "max" | "avg"; warp_mode: "nearest" (reference) | "bilinear".
    warp_gradient: "exact" (the adjoint of the warp) | "tf" (TF 1.x's resampling backward, which trained the
        authors' released checkpoints; :mod:`deformgan.warp`). The forward is the same either way.
    norm: "reference" (keras-contrib instance norm over C x H x W) | "instance" (per-channel).
    width: filter multiplier (1 = paper; the 3-channel output is never scaled). dropout: decoder dropout.
    """

    def __init__(
        self,
        image_size: tuple[int, int],
        warp_skip: str = "mask",
        warp_agg: str = "max",
        warp_mode: str = "nearest",
        norm: str = "reference",
        width: float = 1.0,
        dropout: float = 0.5,
        warp_gradient: str = "exact",
    ):
        super().__init__()
        if warp_skip not in WARP_SKIPS:
            raise InputError(f"Generator: warp_skip must be one of {WARP_SKIPS}, got {warp_skip!r}")
        if warp_agg not in AGGREGATES:
            raise InputError(f"Generator: warp_agg must be one of {AGGREGATES}, got {warp_agg!r}")
        if warp_mode not in MODES:
            raise InputError(f"Generator: warp_mode must be one of {MODES}, got {warp_mode!r}")
        if warp_gradient not in GRADIENTS:
            raise InputError(f"Generator: warp_gradient must be one of {GRADIENTS}, got {warp_gradient!r}")
        if not width > 0:
            raise InputError(f"Generator: width must be > 0, got {width}")
        if not 0 <= dropout < 1:
            raise InputError(f"Generator: dropout must be in [0, 1), got {dropout}")
        make_norm(norm, 1)  # validates the name
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.warp_skip, self.warp_agg, self.warp_mode = warp_skip, warp_agg, warp_mode
        self.warp_gradient = warp_gradient
        levels = encoder_levels(self.image_size)
        enc = tuple(scaled(f, width) for f in encoder_filters(levels))
        dec = tuple(scaled(f, width) for f in decoder_filters(levels)[:-1]) + (IMAGE_CHANNELS,)
        if warp_skip == "none":
            self.encoder = Encoder(IMAGE_CHANNELS + 2 * NUM_JOINTS, enc, norm)
            skip_channels = list(enc)
        else:
            self.appearance_encoder = Encoder(IMAGE_CHANNELS + NUM_JOINTS, enc, norm)
            self.pose_encoder = Encoder(NUM_JOINTS, enc, norm)
            skip_channels = [2 * c for c in enc]
        self.decoder = Decoder(skip_channels, dec, norm, dropout)
        keras_init_(self)

    def fuse_skips(
        self, appearance: list[torch.Tensor], pose: list[torch.Tensor], cond: PoseConditioning
    ) -> list[torch.Tensor]:
        """Warp the appearance skips of stride <= 8 part by part; concat with the pose skips."""
        masks = cond.masks if self.warp_skip == "mask" else None
        fused = []
        for level, (app, pos) in enumerate(zip(appearance, pose, strict=True)):
            if level < WARPED_LEVELS:
                app = deform(
                    app,
                    cond.theta,
                    cond.valid,
                    masks,
                    self.warp_agg,
                    self.warp_mode,
                    image_size=self.image_size,
                    gradient=self.warp_gradient,
                )
            fused.append(torch.cat([app, pos], dim=1))
        return fused

    def forward(self, source_image: torch.Tensor, cond: PoseConditioning) -> torch.Tensor:
        if self.warp_skip == "none":
            skips = self.encoder(torch.cat([source_image, cond.source_heatmaps, cond.target_heatmaps], dim=1))
        else:
            appearance = self.appearance_encoder(torch.cat([source_image, cond.source_heatmaps], dim=1))
            pose = self.pose_encoder(cond.target_heatmaps)
            skips = self.fuse_skips(appearance, pose, cond)
        return self.decoder(skips)

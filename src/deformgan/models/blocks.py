"""Building blocks shared by the generator and the discriminator (``conditional_gan.block``).

Down block: LeakyReLU(0.2) -> zero-pad 1 -> Conv 4x4 stride 2, no bias -> norm (optional).
Up block: ReLU -> ConvTranspose 4x4 stride 2 'valid', no bias -> crop 1 px each side -> norm -> Dropout.
``ConvTranspose2d(kernel_size=4, stride=2, padding=1)`` computes exactly the cropped 'valid' transpose
(PyTorch's ``padding`` removes ``padding`` rows/columns from each side of the full output), so no separate
crop is needed; ``tests/test_models.py`` checks the equivalence.
"""

from __future__ import annotations

import torch
from torch import nn

from deformgan.errors import InputError

NORMS = ("reference", "instance")


class ReferenceInstanceNorm(nn.Module):
    """keras-contrib ``InstanceNormalization()`` with its default ``axis=None``.

    Per sample, mean and POPULATION std over all of (C, H, W); ``eps`` is added to the std, not the variance;
    one scalar ``gamma`` and one scalar ``beta`` per layer. ``nn.GroupNorm(1, C)`` / ``F.layer_norm`` would
    put eps inside the square root and learn per-channel/per-element affines, so this is written out.
    The variance is floored at 1e-12 before the square root: for a constant input the reference's
    ``sqrt'(0)`` yields NaN gradients; here the output is the same (0) and the gradient stays finite.
    """

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> same shape."""
        dims = tuple(range(1, x.dim()))
        var, mean = torch.var_mean(x, dim=dims, correction=0, keepdim=True)
        std = var.clamp_min(1e-12).sqrt() + self.eps
        return (x - mean) / std * self.gamma + self.beta

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


def make_norm(kind: str, channels: int) -> nn.Module:
    """The norm layer named ``kind``: "reference" = :class:`ReferenceInstanceNorm`, "instance" = per-channel
    ``nn.InstanceNorm2d(affine=True)``."""
    if kind == "reference":
        return ReferenceInstanceNorm()
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    raise InputError(f"norm must be one of {NORMS}, got {kind!r}")


def scaled(filters: int, width: float) -> int:
    """A filter count scaled by the ``width`` multiplier (at least 1)."""
    return max(1, int(round(filters * width)))


class DownBlock(nn.Sequential):
    """LeakyReLU(0.2) -> Conv 4x4 s2 pad 1, no bias -> norm (None = no norm). Halves H and W."""

    def __init__(self, in_channels: int, out_channels: int, norm: str | None):
        layers: list[nn.Module] = [
            nn.LeakyReLU(0.2),
            nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
        ]
        if norm is not None:
            layers.append(make_norm(norm, out_channels))
        super().__init__(*layers)


class UpBlock(nn.Sequential):
    """ReLU -> ConvTranspose 4x4 s2 (= 'valid' + 1 px crop), no bias -> norm -> Dropout(p) if p > 0.
    Doubles H and W. Dropout is element dropout (``nn.Dropout``), active in train mode only."""

    def __init__(self, in_channels: int, out_channels: int, norm: str | None, dropout: float = 0.0):
        layers: list[nn.Module] = [
            nn.ReLU(),
            nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
        ]
        if norm is not None:
            layers.append(make_norm(norm, out_channels))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        super().__init__(*layers)


def keras_init_(module: nn.Module) -> None:
    """Keras default initialisation: Glorot-uniform kernels, zero biases, norm gamma 1 / beta 0.

    Glorot's limit ``sqrt(6 / (fan_in + fan_out))`` only needs the sum of the fans, which is
    ``k*k*(C_in + C_out)`` for both Keras and PyTorch kernel layouts, transposed convolutions included.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (ReferenceInstanceNorm, nn.InstanceNorm2d)):
            for name, value in (("gamma", 1.0), ("beta", 0.0), ("weight", 1.0), ("bias", 0.0)):
                param = getattr(m, name, None)
                if isinstance(param, torch.Tensor):
                    nn.init.constant_(param, value)

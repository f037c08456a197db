"""Generator and discriminator of Deformable GANs (reference doc §3-§4)."""

from deformgan.models.blocks import DownBlock, ReferenceInstanceNorm, UpBlock, keras_init_, make_norm
from deformgan.models.discriminator import Discriminator, patch_grid
from deformgan.models.generator import Decoder, Encoder, Generator, encoder_levels

__all__ = [
    "Decoder",
    "Discriminator",
    "DownBlock",
    "Encoder",
    "Generator",
    "ReferenceInstanceNorm",
    "UpBlock",
    "encoder_levels",
    "keras_init_",
    "make_norm",
    "patch_grid",
]

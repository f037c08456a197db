"""The networks of Deformable GANs: the deformable U-Net generator and the conditional PatchGAN
discriminator, built from a config's ``generator`` / ``discriminator`` sections."""

from __future__ import annotations

import dataclasses

from deformgan.config import Config
from deformgan.models.blocks import DownBlock, ReferenceInstanceNorm, UpBlock, keras_init_, make_norm
from deformgan.models.discriminator import Discriminator, patch_grid
from deformgan.models.generator import Decoder, Encoder, Generator, encoder_levels


def build_generator(config: Config) -> Generator:
    """``Generator(config.image_size, **config.generator)``."""
    return Generator(config.image_size, **dataclasses.asdict(config.generator))


def build_discriminator(config: Config) -> Discriminator:
    """``Discriminator(config.image_size, **config.discriminator)``."""
    return Discriminator(config.image_size, **dataclasses.asdict(config.discriminator))


__all__ = [
    "Decoder",
    "Discriminator",
    "DownBlock",
    "Encoder",
    "Generator",
    "ReferenceInstanceNorm",
    "UpBlock",
    "build_discriminator",
    "build_generator",
    "encoder_levels",
    "keras_init_",
    "make_norm",
    "patch_grid",
]

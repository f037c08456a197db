"""The networks of Deformable GANs: the deformable U-Net generator and the conditional PatchGAN
discriminator, built from a config's ``generator`` / ``discriminator`` sections."""

from __future__ import annotations

import dataclasses

import torch

from deformgan.config import Config
from deformgan.errors import InputError
from deformgan.models.blocks import DownBlock, ReferenceInstanceNorm, UpBlock, keras_init_, make_norm
from deformgan.models.discriminator import Discriminator, patch_grid
from deformgan.models.generator import Decoder, Encoder, Generator, encoder_levels


def build_generator(config: Config) -> Generator:
    """``Generator(config.image_size, **config.generator)``."""
    return Generator(config.image_size, **dataclasses.asdict(config.generator))


def build_discriminator(config: Config) -> Discriminator:
    """``Discriminator(config.image_size, **config.discriminator)``."""
    return Discriminator(config.image_size, **dataclasses.asdict(config.discriminator))


def load_weights(network: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """``network.load_state_dict(state)``, strictly; a mismatch (weights of another architecture or
    width) is one :class:`InputError` line naming the first missing, unexpected or misshapen tensor."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshapen = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or misshapen:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if misshapen:
            k = misshapen[0]
            parts.append(f"{len(misshapen)} of another shape (e.g. {k}: {tuple(state[k].shape)} vs "
                         f"{tuple(expected[k].shape)} in the config's network)")  # fmt: skip
        raise InputError(f"{where} weights do not match its config's network: {'; '.join(parts)}")
    network.load_state_dict(state)


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
    "load_weights",
    "make_norm",
    "patch_grid",
]

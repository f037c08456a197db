"""The training objectives: which loss terms, with which weights (the paper's ablation in one place).

Generator: ``L_G = adversarial_weight * L_adv + reconstruction_weight * L_rec`` where ``L_adv`` is the
non-saturating GAN loss of D's logits on the generated pair and ``L_rec`` compares the generated image
with the real target on pixels or VGG-19 features, with plain L1 or the nearest-neighbour loss.
Discriminator: ``L_D = -mean log D(real) - mean log(1 - D(fake))``.

The paper's four rows (the authors' README training commands; ``configs/{market,fashion}-*.yaml``):

============  =================  ==============  ========  =====================
row           generator          reconstruction  features  weight (lambda)
============  =================  ==============  ========  =====================
Baseline      plain U-Net skips  L1              pixel     100
DSC           deformable skips   L1              pixel     100
PercLoss      deformable skips   L1              conv2_1   0.5
Full          deformable skips   nearest-nbr.    conv1_2   0.01 (n = 3 / 5)
============  =================  ==============  ========  =====================

Every term is returned by name (``loss/G/adv``, ...) so that the run log lists exactly what was computed.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from deformgan.errors import InputError
from deformgan.losses import d_loss, g_adversarial_loss, l1_loss, nn_loss
from deformgan.vgg import VGG_CHOICES, VGG19Features

#: Logged generator terms: the weighted total, then the unweighted adversarial and reconstruction losses.
GENERATOR_TERMS = ("loss/G/total", "loss/G/adv", "loss/G/rec")
#: Logged discriminator terms: its loss on the real pairs and on the generated pairs (they sum to L_D).
DISCRIMINATOR_TERMS = ("loss/D/real", "loss/D/fake")
RECONSTRUCTIONS = ("l1", "nn")
FEATURES = ("pixel", "conv1_2", "conv2_1")


class GeneratorObjective(nn.Module):
    """``L_G`` of the config's ``objective`` section (its keys are exactly this constructor's arguments).

    reconstruction: "l1" (mean |a - b| over all elements) or "nn" (nearest-neighbour loss, window
    ``neighborhood``); features: "pixel", or the post-ReLU VGG-19 layer "conv1_2" (the Full model) /
    "conv2_1" (PercLoss); the real target's features are computed without gradient.
    vgg_preprocess: which VGG-19 (:mod:`deformgan.vgg`): "torchvision" (``vgg19-dcbb9e9d.pth``, ImageNet
    mean/std), "keras-reference" (Keras' ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``, the
    authors' caffe-style input -- the network the paper's lambdas were tuned on) or "auto" (Keras' file
    when found, else torchvision's); vgg_weights: an explicit file or folder (None = standard lookup).
    :meth:`describe_features` / :attr:`feature_source` say what was loaded.
    forward(fake_logits (D's logits on the generated pair), generated, target (B,3,H,W) in [-1, 1])
    -> (L_G, {term name: value}) with the terms of :data:`GENERATOR_TERMS`.
    """

    def __init__(
        self,
        adversarial_weight: float = 1.0,
        reconstruction: str = "l1",
        reconstruction_weight: float = 100.0,
        features: str = "pixel",
        neighborhood: int = 1,
        vgg_weights: str | Path | None = None,
        vgg_preprocess: str = "torchvision",
    ):
        super().__init__()
        if reconstruction not in RECONSTRUCTIONS:
            raise InputError(
                f"objective: reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}"
            )
        if features not in FEATURES:
            raise InputError(f"objective: features must be one of {FEATURES}, got {features!r}")
        if (
            isinstance(neighborhood, bool)
            or not isinstance(neighborhood, int)
            or neighborhood < 1
            or neighborhood % 2 == 0
        ):
            raise InputError(f"objective: neighborhood must be an odd int >= 1, got {neighborhood!r}")
        if vgg_preprocess not in VGG_CHOICES:
            raise InputError(
                f"objective: vgg_preprocess must be one of {VGG_CHOICES}, got {vgg_preprocess!r}"
            )
        self.adversarial_weight = adversarial_weight
        self.reconstruction = reconstruction
        self.reconstruction_weight = reconstruction_weight
        self.features = features
        self.neighborhood = neighborhood
        self.vgg = (
            None
            if features == "pixel"
            else VGG19Features([features], weights=vgg_weights, preprocess=vgg_preprocess)
        )

    @property
    def feature_source(self) -> dict | None:
        """What the reconstruction compares on, JSON-able: None for pixels, else the VGG-19 weights file,
        its kind ("keras" | "torchvision"), the resolved preprocessing and the layer
        (:attr:`deformgan.vgg.VGG19Features.source`)."""
        return None if self.vgg is None else dict(self.vgg.source)

    def describe_features(self) -> str:
        """One line for logs and run folders: "pixels", or which VGG-19 file and preprocessing are used."""
        return "pixels (no VGG)" if self.vgg is None else self.vgg.describe()

    def reconstruction_loss(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Unweighted ``L_rec`` of (B,3,H,W) images in [-1, 1] (the authors' ``st_loss``)."""
        if self.vgg is not None:
            generated = self.vgg(generated)[0]
            with torch.no_grad():
                target = self.vgg(target)[0]
        if self.reconstruction == "l1":
            return l1_loss(generated, target)
        return nn_loss(generated, target, self.neighborhood, "mean")

    def forward(
        self, fake_logits: torch.Tensor, generated: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        adversarial = g_adversarial_loss(fake_logits)
        reconstruction = self.reconstruction_loss(generated, target)
        total = self.adversarial_weight * adversarial + self.reconstruction_weight * reconstruction
        return total, dict(zip(GENERATOR_TERMS, (total, adversarial, reconstruction), strict=True))

    def extra_repr(self) -> str:
        return (
            f"{self.adversarial_weight} * adv + {self.reconstruction_weight} * {self.reconstruction}"
            f"({self.features}, n={self.neighborhood})"
        )


def discriminator_objective(
    real_logits: torch.Tensor, fake_logits: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``L_D`` from D's logits on real and generated pairs -> (L_D, terms of :data:`DISCRIMINATOR_TERMS`)."""
    real, fake = d_loss(real_logits, fake_logits)
    return real + fake, dict(zip(DISCRIMINATOR_TERMS, (real, fake), strict=True))

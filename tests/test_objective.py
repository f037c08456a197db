"""The training objectives: named terms, weights, reconstruction on pixels and VGG-19 features."""

from __future__ import annotations

import pytest
import torch
import torchvision

from deformgan.errors import InputError
from deformgan.losses import d_loss, g_adversarial_loss, l1_loss, nn_loss
from deformgan.objective import (
    DISCRIMINATOR_TERMS,
    GENERATOR_TERMS,
    GeneratorObjective,
    discriminator_objective,
)
from deformgan.pretrained import MissingWeightsError


def _random_pair(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=gen) * 2 - 1, torch.rand(shape, generator=gen) * 2 - 1


def test_generator_objective_weights_its_named_terms():
    """L_G = w_adv * L_adv + w_rec * L_rec with every term returned under its logged name."""
    generated, target = _random_pair((2, 3, 8, 6), seed=4)
    logits = torch.randn(2, 1, 3, 1, generator=torch.Generator().manual_seed(1))
    objective = GeneratorObjective(
        adversarial_weight=0.5, reconstruction="nn", reconstruction_weight=7.0, neighborhood=3
    )
    total, terms = objective(logits, generated, target)
    assert tuple(terms) == GENERATOR_TERMS
    torch.testing.assert_close(terms["loss/G/adv"], g_adversarial_loss(logits))
    torch.testing.assert_close(terms["loss/G/rec"], nn_loss(generated, target, 3))
    torch.testing.assert_close(total, 0.5 * g_adversarial_loss(logits) + 7.0 * nn_loss(generated, target, 3))
    assert terms["loss/G/total"] is total
    l1 = GeneratorObjective(reconstruction="l1")
    torch.testing.assert_close(l1.reconstruction_loss(generated, target), l1_loss(generated, target))


def test_discriminator_objective_is_the_sum_of_its_two_terms():
    real, fake = torch.randn(2, 4), torch.randn(2, 4)
    total, terms = discriminator_objective(real, fake)
    assert tuple(terms) == DISCRIMINATOR_TERMS
    expected_real, expected_fake = d_loss(real, fake)
    assert torch.equal(terms["loss/D/real"], expected_real) and torch.equal(
        terms["loss/D/fake"], expected_fake
    )
    torch.testing.assert_close(total, expected_real + expected_fake)


def _write_random_vgg19(path) -> None:
    """An explicit random-weights torchvision vgg19 file (tests only); the classifier, which VGG19Features
    cuts off, is stored as expanded zeros so the file stays small (see tests/test_vgg.py)."""
    torch.manual_seed(0)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"], batch_norm=False)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg19(weights=None).state_dict().items()}
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state |= {k: torch.zeros(1).expand(shape) for k, shape in shapes.items() if k.startswith("classifier.")}
    torch.save(state, path)


def test_reconstruction_on_vgg_features(tmp_path):
    weights = tmp_path / "vgg19-dcbb9e9d.pth"
    _write_random_vgg19(weights)
    objective = GeneratorObjective(
        reconstruction="nn", features="conv1_2", neighborhood=3, vgg_weights=weights
    )
    gen = torch.Generator().manual_seed(0)
    generated = (torch.rand(1, 3, 16, 8, generator=gen) * 2 - 1).requires_grad_(True)
    target = torch.rand(1, 3, 16, 8, generator=gen) * 2 - 1
    value = objective.reconstruction_loss(generated, target)
    (grad,) = torch.autograd.grad(value, generated)
    features = objective.vgg
    torch.testing.assert_close(value, nn_loss(features(generated)[0], features(target)[0], 3))
    # The gradient reaches the image through the frozen VGG: it equals autograd through nn_loss itself.
    (expected_grad,) = torch.autograd.grad(nn_loss(features(generated)[0], features(target)[0], 3), generated)
    torch.testing.assert_close(grad, expected_grad)
    assert not any(p.requires_grad for p in objective.parameters())
    perceptual = GeneratorObjective(reconstruction="l1", features="conv2_1", vgg_weights=weights)
    torch.testing.assert_close(
        perceptual.reconstruction_loss(generated, target),
        l1_loss(perceptual.vgg(generated)[0], perceptual.vgg(target)[0]),
    )


def test_objective_bad_arguments(tmp_path):
    with pytest.raises(InputError, match="reconstruction"):
        GeneratorObjective(reconstruction="l2")
    with pytest.raises(InputError, match="features"):
        GeneratorObjective(features="conv9_9")
    with pytest.raises(InputError, match="neighborhood"):
        GeneratorObjective(reconstruction="nn", neighborhood=4)
    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        GeneratorObjective(
            reconstruction="nn", features="conv1_2", neighborhood=3, vgg_weights=tmp_path / "absent.pth"
        )

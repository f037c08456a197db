"""Losses: GAN terms, L1, the fast nearest-neighbour loss against the literal one (authors' ``nn_loss``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import deformgan.losses as losses
from deformgan.errors import InputError
from deformgan.losses import (
    d_loss,
    g_adversarial_loss,
    l1_loss,
    nn_loss,
    nn_loss_reference,
)

# ----------------------------------------------------------------------------------------------
# GAN losses


def test_gan_losses_match_the_reference_sigmoid_formulas():
    # The authors' gan.py on sigmoid outputs with the 1e-7 epsilon; per element the softplus form differs by
    # log(1 + 1e-7/p) <= 1e-7/p, p the probability inside the log: that mean is the tolerance.
    gen = torch.Generator().manual_seed(0)
    real_logits = torch.randn(4, 1, 3, 1, generator=gen, dtype=torch.float64) * 3
    fake_logits = torch.randn(4, 1, 3, 1, generator=gen, dtype=torch.float64) * 3
    real, fake = torch.sigmoid(real_logits), torch.sigmoid(fake_logits)
    reference_d = -torch.log(real + 1e-7).mean() - torch.log(1 - fake + 1e-7).mean()
    reference_g = -torch.log(fake + 1e-7).mean()
    d_bound = (1e-7 / real).mean() + (1e-7 / (1 - fake)).mean()
    g_bound = (1e-7 / fake).mean()
    assert abs(sum(d_loss(real_logits, fake_logits)) - reference_d) <= d_bound
    assert abs(g_adversarial_loss(fake_logits) - reference_g) <= g_bound
    assert d_bound < 1e-4  # the logits are not saturated enough for this to be a loose check


def test_gan_losses_hand_values_and_stability():
    zero = torch.zeros(2, 1, 3, 3)
    # D(x) = sigmoid(0) = 1/2: each term is log 2.
    assert [term.item() for term in d_loss(zero, zero)] == pytest.approx([math.log(2), math.log(2)])
    assert g_adversarial_loss(zero).item() == pytest.approx(math.log(2))
    # Saturated logits stay finite (the sigmoid form would need the epsilon); softplus(100) = 100.
    huge = torch.full((1, 1, 2, 2), 100.0, requires_grad=True)
    value = sum(d_loss(-huge, huge))
    value.backward()
    assert value.item() == pytest.approx(200.0) and torch.isfinite(huge.grad).all()


def test_l1_loss_is_the_mean_over_all_elements():
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    b = torch.zeros_like(a)
    assert l1_loss(a, b).item() == pytest.approx(2.5)  # (1+2+3+4)/4
    with pytest.raises(InputError, match="same shape"):
        l1_loss(a, torch.zeros(1, 1, 2, 3))


# ----------------------------------------------------------------------------------------------
# Nearest-neighbour loss: fast vs literal


def _random_pair(shape, seed):
    gen = torch.Generator().manual_seed(seed)
    generated = torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
    return generated, target


def _value_and_grads(fn, generated, target, neighborhood, reduction, weights=None):
    value = fn(generated, target, neighborhood, reduction)
    scalar = value if weights is None else (value * weights).sum()
    grads = torch.autograd.grad(scalar, (generated, target))
    return value.detach(), grads


@pytest.mark.parametrize("neighborhood", [1, 3, 5, 7])
@pytest.mark.parametrize("size", [(7, 5), (9, 4), (6, 6)])
@pytest.mark.parametrize("channels", [1, 3, 64])
def test_nn_loss_value_and_gradients_equal_the_literal_algorithm(neighborhood, size, channels):
    generated, target = _random_pair((2, channels, *size), seed=neighborhood * 100 + channels + size[0])
    fast, fast_grads = _value_and_grads(nn_loss, generated, target, neighborhood, "mean")
    literal, literal_grads = _value_and_grads(nn_loss_reference, generated, target, neighborhood, "mean")
    torch.testing.assert_close(fast, literal, rtol=1e-12, atol=1e-12)
    for fast_grad, literal_grad in zip(fast_grads, literal_grads, strict=True):
        torch.testing.assert_close(fast_grad, literal_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("neighborhood", [3, 5])
def test_nn_loss_per_position_map_and_weighted_gradients_match(neighborhood):
    # reduction="none" with an arbitrary upstream gradient exercises the per-position backward weights.
    generated, target = _random_pair((3, 4, 11, 8), seed=7)
    weights = torch.randn(3, 11, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fast, fast_grads = _value_and_grads(nn_loss, generated, target, neighborhood, "none", weights)
    literal, literal_grads = _value_and_grads(
        nn_loss_reference, generated, target, neighborhood, "none", weights
    )
    assert fast.shape == (3, 11, 8)
    torch.testing.assert_close(fast, literal, rtol=1e-12, atol=1e-12)
    for fast_grad, literal_grad in zip(fast_grads, literal_grads, strict=True):
        torch.testing.assert_close(fast_grad, literal_grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("elements_per_tile", [1, 2 * 5 * 10 * 7])
def test_nn_loss_split_into_tiles_matches(monkeypatch, elements_per_tile):
    # Force 1 batch element per tile (the path large feature maps take), or 2 with a last partial tile.
    monkeypatch.setattr(losses, "_TILE_ELEMENTS", elements_per_tile)
    generated, target = _random_pair((3, 5, 10, 7), seed=3)
    fast, fast_grads = _value_and_grads(nn_loss, generated, target, 5, "sum")
    literal, literal_grads = _value_and_grads(nn_loss_reference, generated, target, 5, "sum")
    torch.testing.assert_close(fast, literal, rtol=1e-12, atol=1e-12)
    for fast_grad, literal_grad in zip(fast_grads, literal_grads, strict=True):
        torch.testing.assert_close(fast_grad, literal_grad, rtol=1e-12, atol=1e-12)


def test_nn_loss_float32_matches_and_only_generated_needs_grad():
    # The training case: float32 features, target computed under no_grad.
    gen = torch.Generator().manual_seed(5)
    generated = torch.randn(2, 16, 12, 10, generator=gen, requires_grad=True)
    target = torch.randn(2, 16, 12, 10, generator=gen)
    fast = nn_loss(generated, target, 3)
    (grad_fast,) = torch.autograd.grad(fast, generated)
    literal = nn_loss_reference(generated, target, 3)
    (grad_literal,) = torch.autograd.grad(literal, generated)
    torch.testing.assert_close(fast, literal, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_fast, grad_literal)


def test_nn_loss_half_precision_is_searched_in_float32():
    # bfloat16 features (mixed precision): same result as float32 on the same (bf16-representable) values,
    # up to the final rounding of the distance to bfloat16.
    generated, target = (x.detach().to(torch.bfloat16) for x in _random_pair((2, 8, 6, 5), seed=9))
    generated.requires_grad_(True)
    value = nn_loss(generated, target, 3, "none")
    (grad,) = torch.autograd.grad(value.sum(), generated)
    reference = nn_loss_reference(generated.detach().float(), target.float(), 3, "none")
    assert value.dtype == torch.bfloat16 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(value.float(), reference, rtol=1e-2, atol=0)
    assert torch.isin(grad.float(), torch.tensor([-1.0, 0.0, 1.0])).all()


def test_nn_loss_window_one_is_channel_summed_l1():
    # n = 1: the only candidate is q = p, so the map is sum_c |g - t| and the mean is C * mean |g - t|.
    generated, target = _random_pair((2, 3, 5, 4), seed=11)
    per_position = nn_loss(generated, target, 1, "none")
    torch.testing.assert_close(per_position, (generated - target).abs().sum(dim=1))
    torch.testing.assert_close(nn_loss(generated, target, 1), 3 * F.l1_loss(generated, target))


def test_nn_loss_hand_computed_3x3():
    # One channel, 3x3, window 3. target = 0..8 row-major; generated at each p picks the closest target
    # value among its in-image 3x3 neighbours (the -10000 padding of the reference is never chosen).
    target = torch.arange(9.0).view(1, 1, 3, 3)
    generated = torch.tensor([[[[8.0, 0.5, 2.0], [10.0, 4.0, -1.0], [3.0, 7.2, 0.0]]]], requires_grad=True)
    # p=(0,0): neighbours {0,1,3,4} -> |8-4| = 4;   p=(0,1): {0..5} -> |0.5-0| = |0.5-1| = 0.5 (tie)
    # p=(0,2): {1,2,4,5} -> 0;                       p=(1,0): {0,1,3,4,6,7} -> |10-7| = 3
    # p=(1,1): all -> 0;                             p=(1,2): {1,2,4,5,7,8} -> |-1-1| = 2
    # p=(2,0): {3,4,6,7} -> 0;                       p=(2,1): {3..8} -> |7.2-7| = 0.2
    # p=(2,2): {4,5,7,8} -> |0-4| = 4
    expected = torch.tensor([[[4.0, 0.5, 0.0], [3.0, 0.0, 2.0], [0.0, 0.2, 4.0]]])
    per_position = nn_loss(generated, target, 3, "none")
    torch.testing.assert_close(per_position, expected)
    assert nn_loss(generated, target, 3, "sum").item() == pytest.approx(13.7)
    # d/dg = sign(g - t(q*)). Tie at p=(0,1) between q=(0,0) and q=(0,1): the row-major offset order tries
    # (dy=0, dx=-1) -> q=(0,0) before (dy=0, dx=0) -> q=(0,1), so g - t(q*) = 0.5 - 0 > 0 gives +1 (the
    # other choice would give -1). Exact matches (distance 0) give sign(0) = 0.
    (grad,) = torch.autograd.grad(per_position.sum(), generated)
    expected_grad = torch.tensor([[[[1.0, 1.0, 0.0], [1.0, 0.0, -1.0], [0.0, 1.0, -1.0]]]])
    torch.testing.assert_close(grad, expected_grad)
    torch.testing.assert_close(
        grad, torch.autograd.grad(nn_loss_reference(generated, target, 3, "sum"), generated)[0]
    )


def test_nn_loss_reductions_relate():
    generated, target = _random_pair((3, 2, 6, 5), seed=2)
    per_position = nn_loss(generated, target, 3, "none")
    total = nn_loss(generated, target, 3, "sum")
    mean = nn_loss(generated, target, 3, "mean")
    torch.testing.assert_close(total, per_position.sum())
    torch.testing.assert_close(mean, total / (3 * 6 * 5))  # mean over batch and positions, not channels


def test_nn_loss_never_picks_out_of_image_neighbours():
    # generated equals the reference's padding value: with padding as a candidate, border positions would
    # score 0; out-of-image neighbours are never candidates, so every position scores |-10000 - 0|.
    generated = torch.full((1, 1, 4, 4), -10000.0)  # equals the reference's padding value
    target = torch.zeros(1, 1, 4, 4)
    assert nn_loss(generated, target, 3, "none").eq(10000.0).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"neighborhood": 2}, "odd"),
        ({"neighborhood": 0}, "odd"),
        ({"neighborhood": -3}, "odd"),
        ({"neighborhood": 3.0}, "odd int"),
        ({"reduction": "max"}, "reduction"),
    ],
)
def test_nn_loss_rejects_bad_arguments(kwargs, message):
    x = torch.zeros(1, 2, 4, 4)
    for fn in (nn_loss, nn_loss_reference):
        with pytest.raises(InputError, match=message):
            fn(x, x, **kwargs)


def test_nn_loss_rejects_bad_shapes():
    with pytest.raises(InputError, match="same shape"):
        nn_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 5))
    with pytest.raises(InputError, match=r"\(B,C,H,W\)"):
        nn_loss(torch.zeros(2, 4, 4), torch.zeros(2, 4, 4))
    with pytest.raises(InputError, match="dtype"):
        nn_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4, dtype=torch.float64))

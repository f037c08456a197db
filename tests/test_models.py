"""Tests for deformgan.models: generator and discriminator architecture (the authors' ``make_generator``,
``make_discriminator``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from deformgan.conditioning import PoseConditioning
from deformgan.errors import InputError
from deformgan.models import (
    Discriminator,
    Generator,
    ReferenceInstanceNorm,
    UpBlock,
    encoder_levels,
    patch_grid,
)

SIZES = {"market": (128, 64), "deepfashion": (256, 256)}
VARIANTS = ("none", "mask", "global")


def conditioning(batch: int, size: tuple[int, int], warp_skip: str, seed: int = 0) -> PoseConditioning:
    """Hand-made conditioning: random heatmaps, near-identity part affines, random masks (torso full)."""
    g = torch.Generator().manual_seed(seed)
    cond = PoseConditioning(
        torch.rand(batch, 18, *size, generator=g), torch.rand(batch, 18, *size, generator=g)
    )
    if warp_skip == "none":
        return cond
    parts = 10 if warp_skip == "mask" else 1
    theta = torch.eye(2, 3).repeat(batch, parts, 1, 1)
    theta[..., 2] += 6 * torch.randn(batch, parts, 2, generator=g)
    cond.theta, cond.valid = theta, torch.ones(batch, parts, dtype=torch.bool)
    if warp_skip == "mask":
        cond.masks = (torch.rand(batch, parts, *size, generator=g) > 0.7).float()
        cond.masks[:, 0] = 1
    return cond


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------------------------
# Parameter counts of the Keras reference, derived layer by layer from conditional_gan.py:
# Conv2D k x k: k*k*C_in*C_out (+ C_out bias); Conv2DTranspose 4x4 no bias: 16*C_in*C_out;
# keras-contrib InstanceNormalization(axis=None): one gamma + one beta = 2.


def conv(c_in: int, c_out: int, k: int, bias: bool) -> int:
    return k * k * c_in * c_out + (c_out if bias else 0)


def keras_generator_params(size: tuple[int, int], warp_skip: str) -> int:
    levels = 6 if max(size) == 128 else 7  # the reference's nfilters tables
    enc = [64, 128, 256] + [512] * (levels - 3)
    dec = [512] * (levels - 3) + [256, 128, 3]
    inputs = [39] if warp_skip == "none" else [21, 18]
    total = 0
    for c_in in inputs:
        total += conv(c_in, enc[0], 3, True)
        for i in range(1, levels):
            total += conv(enc[i - 1], enc[i], 4, False) + (2 if i < levels - 1 else 0)
    skips = [c * len(inputs) for c in enc][::-1]
    previous = 0
    for i, (skip, nf) in enumerate(zip(skips, dec, strict=True)):
        last = i == levels - 1
        total += conv(previous + skip, nf, 3, True) if last else conv(previous + skip, nf, 4, False) + 2
        previous = nf
    return total


def keras_discriminator_params() -> int:
    return (
        conv(42, 64, 4, True)
        + conv(64, 128, 4, False)
        + conv(128, 256, 4, False)
        + conv(256, 512, 4, False)
        + (3 * 2)
        + conv(512, 1, 4, False)
    )


@pytest.mark.parametrize("dataset", SIZES)
@pytest.mark.parametrize("warp_skip", VARIANTS)
def test_full_width_generator_has_the_keras_parameter_count(dataset, warp_skip):
    with torch.device("meta"):  # no memory, no init cost
        generator = Generator(SIZES[dataset], warp_skip=warp_skip)
    assert count(generator) == keras_generator_params(SIZES[dataset], warp_skip)


def test_parameter_counts_written_in_the_benchmark_table():
    # The numbers quoted in benchmarks/results/dsc_overhead.md. Hand check, Market DSC: appearance encoder
    # 9*21*64+64 + 16*(64*128+128*256+256*512+2*512*512) + 4*2 = 11,153,288; pose encoder the same with 18
    # input channels = 11,151,560; decoder 16*(1024+1536+1536)*512 + 16*1024*256 + 16*512*128 + 5*2
    # + 9*256*3+3 = 38,804,237; sum 61,109,085.
    assert keras_generator_params((128, 64), "none") == 36_072_533
    assert keras_generator_params((128, 64), "mask") == 61_109_085
    assert keras_generator_params((256, 256), "none") == 48_655_449
    assert keras_generator_params((256, 256), "mask") == 82_080_611
    assert keras_discriminator_params() == 2_803_782


def test_full_width_discriminator_has_the_keras_parameter_count():
    with torch.device("meta"):
        assert (
            count(Discriminator((128, 64)))
            == count(Discriminator((256, 256)))
            == keras_discriminator_params()
        )


# ----------------------------------------------------------------------------------------------
# Shapes


@pytest.mark.parametrize("dataset", SIZES)
@pytest.mark.parametrize("warp_skip", VARIANTS)
def test_generator_output_shape_and_range(dataset, warp_skip):
    size = SIZES[dataset]
    torch.manual_seed(0)
    generator = Generator(size, warp_skip=warp_skip, width=1 / 8).eval()
    source = torch.rand(2, 3, *size) * 2 - 1
    with torch.no_grad():
        out = generator(source, conditioning(2, size, warp_skip))
    assert out.shape == (2, 3, *size)
    assert out.abs().max() <= 1 and torch.isfinite(out).all()


def test_encoder_levels_and_channel_flow_follow_the_reference():
    assert encoder_levels((128, 64)) == 6  # deepest 4x2
    assert encoder_levels((256, 256)) == 7  # deepest 4x4
    assert encoder_levels((256, 176)) == 5  # 176 = 11 * 16: deepest 16x11
    with pytest.raises(InputError, match="divisible"):
        encoder_levels((60, 30))
    with torch.device("meta"):
        g = Generator((128, 64), warp_skip="mask")
        baseline = Generator((128, 64), warp_skip="none")
    assert g.appearance_encoder.levels[0].in_channels == 21 and g.pose_encoder.levels[0].in_channels == 18
    # Decoder channel flow of the authors' ``decoder``: 1024->512, 512+1024->512 (x2), 512+512->256,
    # 256+256->128, 128+128->3.
    convs = [m for m in g.decoder.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (1024, 512), (1536, 512), (1536, 512), (1024, 256), (512, 128), (256, 3)
    ]  # fmt: skip
    assert baseline.encoder.levels[0].in_channels == 39
    # Dropout on the first three decoder stages only.
    dropouts = [any(isinstance(m, nn.Dropout) for m in stage.modules()) for stage in g.decoder.stages]
    assert dropouts == [True, True, True, False, False, False]


@pytest.mark.parametrize(("dataset", "grid"), [("market", (3, 1)), ("deepfashion", (7, 7))])
def test_discriminator_patch_grid(dataset, grid):
    # 3 patches at 128x64, 49 at 256x256 (valid 4x4/2 conv, then four 4x4/2 convs with 1 px padding).
    size = SIZES[dataset]
    assert patch_grid(size) == grid
    disc = Discriminator(size, width=1 / 8)
    x, hm = torch.rand(2, 3, *size), torch.rand(2, 18, *size)
    assert disc(x, hm, x, hm).shape == (2, 1, *grid)


# ----------------------------------------------------------------------------------------------
# Blocks


def test_reference_norm_matches_hand_computation():
    # keras-contrib InstanceNormalization(axis=None): (x - mean) / (std + 1e-3) * gamma + beta with the
    # population mean/std over C x H x W of each sample and scalar gamma, beta.
    x = torch.randn(3, 4, 5, 6) * 3 + 1
    norm = ReferenceInstanceNorm()
    with torch.no_grad():
        norm.gamma.fill_(2.0)
        norm.beta.fill_(0.5)
    xn = x.double().numpy().reshape(3, -1)
    mean = xn.mean(1, keepdims=True)
    std = np.sqrt(((xn - mean) ** 2).mean(1, keepdims=True))
    expected = ((xn - mean) / (std + 1e-3) * 2.0 + 0.5).reshape(x.shape)
    np.testing.assert_allclose(norm(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    assert [p.shape for p in norm.parameters()] == [torch.Size([1]), torch.Size([1])]
    # A constant input: output beta, finite gradients (the reference's sqrt'(0) would give NaN).
    constant = torch.full((1, 2, 3, 3), 4.0, requires_grad=True)
    out = norm(constant)
    out.sum().backward()
    assert torch.equal(out.detach(), torch.full_like(out, 0.5)) and torch.isfinite(constant.grad).all()


def test_up_block_padding_equals_valid_transpose_then_crop():
    # Keras: Conv2DTranspose 4x4/2 'valid' (2h+2) then Cropping2D(1) -> 2h. PyTorch padding=1 does the same.
    torch.manual_seed(0)
    block = UpBlock(5, 7, norm=None)
    transpose = block[1]
    x = torch.randn(2, 5, 4, 3)
    valid = nn.functional.conv_transpose2d(torch.relu(x), transpose.weight, stride=2)
    assert valid.shape[-2:] == (10, 8)
    torch.testing.assert_close(block(x), valid[..., 1:-1, 1:-1], rtol=1e-6, atol=1e-6)


def test_keras_initialisation():
    torch.manual_seed(0)
    g = Generator((128, 64), warp_skip="mask", width=1 / 2)
    for m in g.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            fans = m.weight[0, 0].numel() * (m.in_channels + m.out_channels)
            limit = (6 / fans) ** 0.5  # Glorot uniform
            assert m.weight.abs().max() <= limit
            if m.weight.numel() > 10_000:  # uniform(-l, l) has std l / sqrt(3)
                assert abs(m.weight.std().item() - limit / 3**0.5) < 0.02 * limit
            assert m.bias is None or torch.equal(m.bias, torch.zeros_like(m.bias))
        if isinstance(m, ReferenceInstanceNorm):
            assert m.gamma.item() == 1 and m.beta.item() == 0


# ----------------------------------------------------------------------------------------------
# Behaviour


def test_dropout_is_active_in_train_mode_only():
    size = (64, 32)
    torch.manual_seed(0)
    g = Generator(size, width=1 / 8)
    source, cond = torch.rand(1, 3, *size) * 2 - 1, conditioning(1, size, "mask")
    g.eval()
    assert torch.equal(g(source, cond), g(source, cond))
    g.train()
    assert not torch.equal(g(source, cond), g(source, cond))
    no_dropout = Generator(size, width=1 / 8, dropout=0.0).train()
    assert torch.equal(no_dropout(source, cond), no_dropout(source, cond))


def test_skips_are_warped_only_down_to_stride_8():
    # Shifting the part affines changes what the warped skips read; deeper (stride >= 16) skips are not
    # warped, so fuse_skips leaves them equal to plain concatenation.
    size = (128, 64)
    g = Generator(size, width=1 / 8).eval()
    source = torch.rand(1, 3, *size) * 2 - 1
    cond = conditioning(1, size, "mask")
    with torch.no_grad():
        app = g.appearance_encoder(torch.cat([source, cond.source_heatmaps], 1))
        pose = g.pose_encoder(cond.target_heatmaps)
        fused = g.fuse_skips(app, pose, cond)
    for level, (f, a, p) in enumerate(zip(fused, app, pose, strict=True)):
        plain = torch.cat([a, p], 1)
        assert torch.equal(f, plain) == (level >= 4), level


@pytest.mark.parametrize("warp_skip", ["mask", "global"])
def test_gradients_reach_both_encoders(warp_skip):
    size = (64, 32)
    g = Generator(size, warp_skip=warp_skip, width=1 / 8)
    g(torch.rand(2, 3, *size) * 2 - 1, conditioning(2, size, warp_skip)).square().mean().backward()
    for encoder in (g.appearance_encoder, g.pose_encoder):
        grad = encoder.levels[0].weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_instance_norm_and_bilinear_avg_options_run():
    size = (64, 32)
    g = Generator(size, norm="instance", warp_agg="avg", warp_mode="bilinear", width=1 / 8).eval()
    assert any(isinstance(m, nn.InstanceNorm2d) for m in g.modules())
    with torch.no_grad():
        assert g(torch.zeros(1, 3, *size), conditioning(1, size, "mask")).shape == (1, 3, *size)


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="warp_skip"):
        Generator((128, 64), warp_skip="stn")
    with pytest.raises(InputError, match="norm"):
        Generator((128, 64), norm="batch")
    with pytest.raises(InputError, match="too small"):
        Discriminator((32, 16))
    with pytest.raises(InputError, match="warp_agg"):
        Generator((128, 64), warp_agg="sum")
    with pytest.raises(InputError, match="dropout"):
        Generator((128, 64), dropout=1.0)

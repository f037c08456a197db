"""Tests for deformgan.warp: the deformable skip connection (the authors' ``AffineTransformLayer``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deformgan.errors import InputError
from deformgan.warp import (
    _round_half_away_from_zero,
    deform,
    downsample_masks,
    feature_stride,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_file(relative: str) -> Path:
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"../shared absent: {relative} not found (real-data check)")
    return path


def affine(a0=1.0, a1=0.0, a2=0.0, b0=0.0, b1=1.0, b2=0.0) -> torch.Tensor:
    """One (2, 3) target->source pixel affine: x' = a0 x + a1 y + a2, y' = b0 x + b1 y + b2."""
    return torch.tensor([[a0, a1, a2], [b0, b1, b2]], dtype=torch.float32)


def single_part(features: torch.Tensor, theta: torch.Tensor, image_size, **kwargs) -> torch.Tensor:
    """deform with one valid part covering everything (the reference's ``warp_skip full``)."""
    batch = features.shape[0]
    valid = torch.ones(batch, 1, dtype=torch.bool)
    return deform(features, theta.expand(batch, 1, 2, 3), valid, None, image_size=image_size, **kwargs)


def tf_round(v: float) -> int:
    """C's std::round on a float32 value, computed in float64 where |v| + 0.5 is exact."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def loop_deform(features, theta, valid, masks, stride, aggregate):
    """The reference's AffineTransformLayer pixel by pixel (NEAREST, zero fill), as an independent oracle."""
    features, theta, valid, masks = (t.numpy() for t in (features, theta, valid, masks))
    batch, channels, h, w = features.shape
    parts = theta.shape[1]
    out = np.zeros_like(features)
    for b in range(batch):
        for y in range(h):
            for x in range(w):
                values, count = [], 0.0
                for p in range(parts):
                    m = float(masks[b, p, y * stride, x * stride])  # TF 1.x nearest resize: i * H / h
                    count += m
                    a, t = theta[b, p].astype(np.float32), np.float32(stride)
                    xs = a[0, 0] * np.float32(x) + a[0, 1] * np.float32(y) + a[0, 2] / t
                    ys = a[1, 0] * np.float32(x) + a[1, 1] * np.float32(y) + a[1, 2] / t
                    ix, iy = tf_round(float(xs)), tf_round(float(ys))
                    read = np.zeros(channels, np.float32)
                    if valid[b, p] and 0 <= ix < w and 0 <= iy < h:
                        read = features[b, :, iy, ix]
                    values.append(read * m)
                values = np.stack(values)
                if aggregate == "max":
                    out[b, :, y, x] = values.max(0)
                else:
                    out[b, :, y, x] = values.sum(0) / count if count > 0 else 0.0
    return torch.from_numpy(out)


def random_problem(seed: int, batch=2, parts=4, channels=3, image=(24, 12), stride=2, dyadic=True):
    """Random features, affines, valid flags and masks. Dyadic affines (multiples of 1/8) make every
    coordinate exact in float32, so exact half-pixel ties occur and test the rounding rule."""
    g = torch.Generator().manual_seed(seed)
    h, w = image[0] // stride, image[1] // stride
    features = torch.randn(batch, channels, h, w, generator=g)
    if dyadic:
        linear = torch.randint(-12, 13, (batch, parts, 2, 2), generator=g) / 8
        shift = torch.randint(-40, 41, (batch, parts, 2, 1), generator=g) / 4
    else:
        linear = torch.randn(batch, parts, 2, 2, generator=g) * 0.6
        shift = torch.randn(batch, parts, 2, 1, generator=g) * 6
    theta = torch.cat([linear + torch.eye(2), shift], dim=-1).float()
    valid = torch.rand(batch, parts, generator=g) > 0.2
    masks = (torch.rand(batch, parts, *image, generator=g) > 0.5).float()
    return features, theta, valid, masks


# ----------------------------------------------------------------------------------------------
# Rounding, stride, masks


def test_round_half_away_from_zero_is_cpp_round():
    # std::round: ties away from zero; torch.round would give 0, 2, -2 for 0.5, 2.5, -2.5.
    values = [-2.5, -1.5, -0.5, -0.49999997, 0.0, 0.49999997, 0.5, 1.5, 2.5, 2.4999998, 3.7, -3.7, 1000.5]
    x = torch.tensor(values, dtype=torch.float32)
    expected = [tf_round(float(v)) for v in x]
    assert _round_half_away_from_zero(x).tolist() == expected
    assert expected[:7] == [-3, -2, -1, 0, 0, 0, 1]


def test_feature_stride_requires_one_integer_stride():
    assert feature_stride((128, 64), (16, 8)) == 8
    with pytest.raises(InputError, match="stride"):
        feature_stride((128, 64), (32, 32))  # 4 rows, 2 columns per pixel
    with pytest.raises(InputError, match="stride"):
        feature_stride((128, 64), (48, 24))  # not an integer factor


def test_downsample_masks_picks_i_times_stride():
    # TF 1.x resize_images NEAREST (no half-pixel centres): output i reads input floor(i * H / h) = i * s.
    masks = torch.arange(8 * 4, dtype=torch.float32).reshape(1, 1, 8, 4)
    small = downsample_masks(masks, 2)
    rows, cols = torch.meshgrid(torch.arange(4) * 2, torch.arange(2) * 2, indexing="ij")
    assert torch.equal(small[0, 0], masks[0, 0, rows, cols])
    # torch's own nearest interpolation computes the same indices (floor(i * scale)).
    assert torch.equal(small, F.interpolate(masks, size=(4, 2), mode="nearest"))


# ----------------------------------------------------------------------------------------------
# Exactness against an oracle


@pytest.mark.parametrize("aggregate", ["max", "avg"])
@pytest.mark.parametrize(("stride", "dyadic"), [(1, True), (2, True), (4, True), (2, False)])
def test_nearest_matches_per_pixel_oracle(aggregate, stride, dyadic):
    features, theta, valid, masks = random_problem(stride * 10 + dyadic, stride=stride, dyadic=dyadic)
    got = deform(features, theta, valid, masks, aggregate)
    expected = loop_deform(features, theta, valid, masks, stride, aggregate)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_half_pixel_ties_round_away_from_zero_unlike_grid_sample():
    # A 1 px translation at full resolution is 0.5 px at stride 2: every output column x reads x + 0.5,
    # which std::round sends to x + 1 (TF), so content moves left by one whole column.
    features = torch.randn(1, 2, 8, 6)
    out = single_part(features, affine(a2=1.0), (16, 12))
    expected = torch.zeros_like(features)
    expected[..., :-1] = features[..., 1:]
    assert torch.equal(out, expected)
    # grid_sample(nearest) rounds half to even (0.5 -> 0, 1.5 -> 2), so it cannot reproduce this exactly.
    xs = (torch.arange(6) + 0.5) * 2 / 5 - 1
    ys = torch.arange(8) * 2 / 7 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)[None].float()
    gs = F.grid_sample(features, grid, mode="nearest", padding_mode="zeros", align_corners=True)
    assert not torch.equal(gs, expected)


def test_bilinear_matches_grid_sample_on_non_square_maps():
    # TF's BILINEAR (floor neighbours, zero fill) equals grid_sample(bilinear, zeros, align_corners=True)
    # with x_norm = 2 x / (w - 1) - 1 on the WIDTH axis and y_norm = 2 y / (h - 1) - 1.
    features, theta, _, _ = random_problem(3, batch=2, parts=1, image=(32, 16), stride=2, dyadic=False)
    h, w = features.shape[-2:]
    out = deform(features, theta, None, None, mode="bilinear", image_size=(32, 16))
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    a = theta[:, 0]
    src_x = a[:, 0, 0, None, None] * xs + a[:, 0, 1, None, None] * ys + a[:, 0, 2, None, None] / 2
    src_y = a[:, 1, 0, None, None] * xs + a[:, 1, 1, None, None] * ys + a[:, 1, 2, None, None] / 2
    grid = torch.stack([2 * src_x / (w - 1) - 1, 2 * src_y / (h - 1) - 1], dim=-1)
    expected = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Geometry of the warp on non-square maps (the H/W swap of the earlier PyTorch port)


@pytest.mark.parametrize("stride", [1, 2, 8])
def test_translation_moves_columns_by_dx_and_rows_by_dy_at_128x64(stride):
    # theta maps target -> source: output (x, y) reads input (x + dx, y + dy), i.e. content moves by
    # (-dx, -dy) feature pixels. dx is a column shift, dy a row shift; at stride s they are divided by s.
    dx, dy = 5, -3
    features = torch.randn(2, 3, 128 // stride, 64 // stride)
    out = single_part(features, affine(a2=dx * stride, b2=dy * stride), (128, 64))
    h, w = features.shape[-2:]
    expected = torch.zeros_like(features)
    expected[..., max(0, -dy) : h - max(0, dy), 0 : w - dx] = features[..., max(0, dy) : h + min(0, dy), dx:]
    assert torch.equal(out, expected)


def test_x_scaling_scales_columns_not_rows_at_128x64():
    features = torch.randn(1, 2, 128, 64)
    out = single_part(features, affine(a0=2.0), (128, 64))  # output column x reads column 2x
    assert torch.equal(out[..., :32], features[..., ::2])
    assert torch.equal(out[..., 32:], torch.zeros_like(out[..., 32:]))
    out_y = single_part(features, affine(b1=2.0), (128, 64))  # output row y reads row 2y
    assert torch.equal(out_y[..., :64, :], features[..., ::2, :])
    assert torch.equal(out_y[..., 64:, :], torch.zeros_like(out_y[..., 64:, :]))


# ----------------------------------------------------------------------------------------------
# Aggregation and invalid parts


@pytest.mark.parametrize("aggregate", ["max", "avg"])
@pytest.mark.parametrize("stride", [1, 4])
def test_identity_parts_with_full_masks_return_the_input(aggregate, stride):
    # Every part reads the same pixel and every mask covers it: max / mean of ten equal values is the value,
    # negative ones included (no uncovered part adds a 0).
    features = torch.randn(2, 5, 64 // stride, 32 // stride)
    theta = affine().expand(2, 10, 2, 3)
    valid = torch.ones(2, 10, dtype=torch.bool)
    masks = torch.ones(2, 10, 64, 32)
    out = deform(features, theta, valid, masks, aggregate)
    if aggregate == "max":
        assert torch.equal(out, features)
    else:  # (10 x) / 10 in float32 is x up to rounding
        torch.testing.assert_close(out, features, rtol=1e-6, atol=0)


def test_max_over_parts_clamps_where_a_part_does_not_cover():
    # A consequence of the max over parts: an uncovered part contributes 0 to the max, so negatives become 0.
    features = torch.randn(1, 4, 16, 8)
    masks = torch.ones(1, 2, 16, 8)
    masks[:, 1] = 0
    out = deform(features, affine().expand(1, 2, 2, 3), torch.ones(1, 2, dtype=torch.bool), masks)
    assert torch.equal(out, features.clamp_min(0))


def test_invalid_part_contributes_nothing_like_the_reference_no_point_shift():
    features, theta, valid, masks = random_problem(7, parts=3, image=(32, 16), stride=2)
    valid[:] = True
    valid[0, 2] = False
    out = deform(features, theta, valid, masks)
    # The reference's "no-point" transform: identity + (1000, 1000) px reads zeros everywhere.
    no_point = theta.clone()
    no_point[0, 2] = affine(a2=1000.0, b2=1000.0)
    assert torch.equal(out, deform(features, no_point, torch.ones_like(valid), masks))
    # ... the same as a valid part whose mask is empty.
    empty = masks.clone()
    empty[0, 2] = 0
    assert torch.equal(out, deform(features, theta, torch.ones_like(valid), empty))


def test_avg_divides_by_the_number_of_covering_masks_like_the_reference():
    # Two parts over a 2x2 map (stride 1): part 0 covers everything, part 1 covers the left column.
    # Output = (sum of covering reads) / (number of covering masks); part 1 reads one column to the right.
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    theta = torch.stack([affine(), affine(a2=1.0)])[None]
    masks = torch.tensor([[[[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    out = deform(features, theta, valid, masks, "avg")
    assert torch.equal(out, torch.tensor([[[[(1 + 2) / 2, 2.0], [(3 + 4) / 2, 4.0]]]]))
    # An invalid part adds 0 to the sum but its mask still counts (the reference sums all resized masks).
    valid[0, 1] = False
    out = deform(features, theta, valid, masks, "avg")
    assert torch.equal(out, torch.tensor([[[[1 / 2, 2.0], [3 / 2, 4.0]]]]))
    # No covering mask at all: 0 (the reference's NaN -> 0).
    assert torch.equal(
        deform(features, theta, valid, torch.zeros_like(masks), "avg"), torch.zeros_like(features)
    )


# ----------------------------------------------------------------------------------------------
# Gradients


def test_max_gradient_equals_dense_autograd_reference():
    # The custom backward sends each output's gradient to the input element that won the max; with
    # continuous random features there are no ties, so it must equal autograd through gather + amax.
    features, theta, valid, masks = random_problem(11, parts=5, image=(32, 16), stride=2, dyadic=False)
    features.requires_grad_(True)
    weights = torch.randn(features.shape)
    (deform(features, theta, valid, masks) * weights).sum().backward()
    fast = features.grad.clone()
    features.grad = None
    oracle = loop_deform(features.detach(), theta, valid, masks, 2, "max")
    assert torch.equal(deform(features, theta, valid, masks).detach(), oracle)
    # Dense reference: per-part nearest reads through autograd, masked, max over parts.
    h, w = features.shape[-2:]
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    src_x = (
        theta[..., 0, 0, None, None] * xs
        + theta[..., 0, 1, None, None] * ys
        + theta[..., 0, 2, None, None] / 2
    )
    src_y = (
        theta[..., 1, 0, None, None] * xs
        + theta[..., 1, 1, None, None] * ys
        + theta[..., 1, 2, None, None] / 2
    )
    ix, iy = _round_half_away_from_zero(src_x).long(), _round_half_away_from_zero(src_y).long()
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & valid[..., None, None]
    flat = (iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)).flatten(2)  # (B, P, hw)
    reads = torch.stack([features.flatten(2)[b][:, flat[b]] for b in range(features.shape[0])])  # (B,C,P,hw)
    cover = (inside.flatten(2) & (masks[..., ::2, ::2].flatten(2) > 0)).float()[:, None]
    dense = (reads * cover).amax(dim=2).reshape(features.shape)
    (dense * weights).sum().backward()
    torch.testing.assert_close(fast, features.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("mode", "aggregate"), [("nearest", "avg"), ("bilinear", "max"), ("bilinear", "avg")]
)
def test_other_paths_are_differentiable(mode, aggregate):
    features, theta, valid, masks = random_problem(
        5, batch=1, parts=3, channels=2, image=(16, 8), dyadic=False
    )
    features = features.double().requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f: deform(f, theta, valid, masks, aggregate, mode), (features,), eps=1e-6, atol=1e-6
    )


def test_bilinear_is_differentiable_with_respect_to_theta():
    features, theta, valid, masks = random_problem(6, batch=1, parts=2, image=(16, 8), dyadic=False)
    theta.requires_grad_(True)
    deform(features, theta, valid, masks, mode="bilinear").sum().backward()
    assert theta.grad is not None and theta.grad.abs().sum() > 0


def test_real_market_pairs_warp_like_the_reference_transforms():
    # The reference's own affines (no-point = +1000 px) and masks for real Market pairs, against our
    # convention (identity + valid False), through deform at strides 1..8: identical outputs.
    data = np.load(shared_file("reference/geometry-market.npz"))
    n = 4
    affines8 = torch.from_numpy(data["affines8"][:n]).float()
    masks = torch.from_numpy(data["masks"][:n]).float()
    theta_ref = affines8[..., :6].reshape(n, 10, 2, 3)
    no_point = (affines8[..., 2] == 1000) & (affines8[..., 5] == 1000)
    theta = torch.where(no_point[..., None, None], affine(), theta_ref)
    g = torch.Generator().manual_seed(0)
    for stride in (1, 2, 4, 8):
        features = torch.randn(n, 4, 128 // stride, 64 // stride, generator=g)
        ours = deform(features, theta, ~no_point, masks)
        reference = deform(features, theta_ref, torch.ones_like(no_point), masks)
        assert torch.equal(ours, reference)


@pytest.mark.parametrize("aggregate", ["max", "avg"])
def test_keeping_every_part_gives_the_same_warp_and_gradient(monkeypatch, aggregate):
    """On accelerators deform keeps all P parts (no host sync to learn k); that must change nothing: the
    same output and the same gradient as the pruned CPU path, bit for bit."""
    import deformgan.warp as warp

    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 3, 16, 8, generator=g)
    theta = affine(a0=1.1, b1=0.9, a2=0.7, b2=-0.4).expand(2, 10, 2, 3).clone()
    valid = torch.rand(2, 10, generator=g) > 0.2
    masks = (torch.rand(2, 10, 32, 16, generator=g) > 0.6).float()
    results = []
    kept = []
    real = warp._parts_to_keep
    for keep_all in (False, True):
        monkeypatch.setattr(
            warp,
            "_parts_to_keep",
            lambda c, keep_all=keep_all: kept.append(c.shape[1] if keep_all else real(c)) or kept[-1],
        )
        x = features.clone().requires_grad_(True)
        out = deform(x, theta, valid, masks, aggregate)
        (grad,) = torch.autograd.grad((out * torch.arange(out.numel()).view_as(out)).sum(), x)
        results.append((out.detach(), grad))
    assert kept[0] < 10 and kept[-1] == 10  # the CPU path really pruned; the other kept every part
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])

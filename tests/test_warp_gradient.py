"""TF 1.x's backward of the deformable skip: ``deform(..., gradient="tf")``, ``Generator(warp_gradient=)``.

TF 1.x back-propagates through ``tf.contrib.image.transform`` by resampling the output gradient with the
inverse transform (its registered gradient of ``ImageProjectiveTransform``), not by the adjoint of the
gather. ``tests/fixtures/keras/warp_grad.npz`` holds TF 1.5's own gradients of the authors' layer
(``pose_transform.AffineTransformLayer``, max over 10 parts, nearest) at strides 1-8 (README there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deformgan.config import configs_dir, load_config
from deformgan.errors import InputError
from deformgan.warp import _round_half_away_from_zero, deform, tf_inverse_affines

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "keras" / "warp_grad.npz"
NO_POINT = 1000.0


def load_fixture() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as z:
        return {k: z[k] for k in z.files}


def fixture_geometry(io, deformgan_invalid: bool):
    """(theta, valid, masks) from the authors' affines8: as is (no-point parts = +1000 px, all "valid"), or
    deformgan's convention (identity theta, valid False)."""
    affines = io["affines8"]
    theta = affines[..., :6].reshape(2, 10, 2, 3).astype(np.float32)
    valid = np.ones((2, 10), dtype=bool)
    if deformgan_invalid:
        no_point = (affines[..., 2] == NO_POINT) & (affines[..., 5] == NO_POINT)
        assert no_point.any()
        theta[no_point] = np.eye(2, 3, dtype=np.float32)
        valid = ~no_point
    masks = torch.from_numpy(io["masks"].astype(np.float32))
    return torch.from_numpy(theta), torch.from_numpy(valid), masks


def gradient(features, theta, valid, masks, upstream, **kwargs):
    features = features.clone().requires_grad_(True)
    out = deform(features, theta, valid, masks, **kwargs)
    (grad,) = torch.autograd.grad(out, features, upstream)
    return out.detach(), grad


# ----------------------------------------------------------------------------------------------
# Against TensorFlow 1.5


@pytest.mark.parametrize("deformgan_invalid", [False, True], ids=["no-point-affines", "valid-flags"])
def test_tf_gradient_equals_tensorflow_bit_for_bit(deformgan_invalid):
    """Tolerance 0: the same float32 operations as TF -- the per-part share ``(indicator / ties) * grad``,
    the nearest read at the inverse-mapped point (the inverse itself reproduced bit for bit), the sum over
    the parts in part order -- so every element is equal, including the tie case's hundreds of exact
    half-pixel coordinates. The exact adjoint differs on thousands of elements (negative control)."""
    io = load_fixture()
    theta, valid, masks = fixture_geometry(io, deformgan_invalid)
    for stride in (1, 2, 4, 8):
        features = torch.from_numpy(io[f"features_s{stride}"])
        upstream = torch.from_numpy(io[f"upstream_s{stride}"])
        out, tf_grad = gradient(features, theta, valid, masks, upstream, gradient="tf")
        assert np.array_equal(out.numpy(), io[f"warped_s{stride}"]), stride
        assert np.array_equal(tf_grad.numpy(), io[f"grad_s{stride}"]), stride
        _, exact = gradient(features, theta, valid, masks, upstream, gradient="exact")
        differing = (exact.numpy() != io[f"grad_s{stride}"]).sum()
        assert differing > 0.05 * exact.numel(), (stride, differing)


def test_inverse_is_tensorflows_matrix_inverse_bit_for_bit():
    """``tf.matrix_inverse`` (Eigen's PartialPivLU in float32) of the 80 scaled transforms per stride,
    as TF's gradient used them (``inverse8``): equal in every bit. A float64 inverse rounded to float32 is
    not (it differs in the last bit of a few entries), which is why the LU is reproduced step by step."""
    io = load_fixture()
    rounded_differs = 0
    for stride in (1, 2, 4, 8):
        scaled = io[f"scaled8_s{stride}"][..., :6].reshape(2, 10, 2, 3)
        ours = tf_inverse_affines(torch.from_numpy(scaled)).reshape(2, 10, 6).numpy()
        assert np.array_equal(ours, io[f"inverse8_s{stride}"][..., :6]), stride
        assert np.array_equal(io[f"inverse8_s{stride}"][..., 6:], np.zeros((2, 10, 2), np.float32))
        full = np.concatenate([scaled.reshape(2, 10, 6), np.zeros((2, 10, 2)), np.ones((2, 10, 1))], -1)
        rounded = np.linalg.inv(full.reshape(2, 10, 3, 3).astype(np.float64)).astype(np.float32)
        rounded_differs += (rounded.reshape(2, 10, 9)[..., :6] != ours).sum()
    assert rounded_differs > 0


def test_inverse_of_a_row_swapping_affine_by_hand():
    # [[0, 2, 3], [4, 0, 5]]: |b0| > |a0|, so the LU swaps rows. x' = 2y + 3, y' = 4x + 5 inverts to
    # x = (y' - 5) / 4 = 0.25 y' - 1.25, y = (x' - 3) / 2 = 0.5 x' - 1.5 (all exact in float32).
    theta = torch.tensor([[0.0, 2.0, 3.0], [4.0, 0.0, 5.0]])
    expected = torch.tensor([[0.0, 0.25, -1.25], [0.5, 0.0, -1.5]])
    assert torch.equal(tf_inverse_affines(theta), expected)


# ----------------------------------------------------------------------------------------------
# Hand-computed cases


def test_magnifying_part_passes_one_gradient_not_the_sum():
    """One part, x' = x / 2 (magnifies 2x): outputs x = 0, 1, 2, 3 read inputs 0, 1, 1, 2 (rounding half
    away from zero). The adjoint gives input 1 the sum g1 + g2; TF resamples with x = 2 x': input u takes
    the output gradient at 2u -> [g0, g2, 0, 0] (inputs 2 and 3 map outside, although input 2 was read).
    TF 1.5 computes exactly these numbers for this input."""
    features = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
    theta = torch.tensor([[[[0.5, 0.0, 0.0], [0.0, 1.0, 0.0]]]])
    upstream = torch.tensor([[[[10.0, 20.0, 30.0, 40.0]]]])
    kwargs = {"image_size": (1, 4)}
    out, exact = gradient(features, theta, None, None, upstream, **kwargs)
    assert torch.equal(out, torch.tensor([[[[1.0, 2.0, 2.0, 3.0]]]]))
    assert torch.equal(exact, torch.tensor([[[[10.0, 50.0, 40.0, 0.0]]]]))
    _, tf = gradient(features, theta, None, None, upstream, gradient="tf", **kwargs)
    assert torch.equal(tf, torch.tensor([[[[10.0, 30.0, 0.0, 0.0]]]]))


def test_tied_parts_split_the_gradient_evenly():
    """Two parts reading a constant map (identity, and a shift x' = x - 1): wherever both read the map the
    max is tied and TF gives each part half of the gradient; at x = 0 the shifted part reads outside (0),
    so the identity part wins alone. Resampled back, input u reads part A's share at u and part B's at u + 1
    (B's inverse: x = x' + 1). TF 1.5 computes exactly these numbers for this input."""
    features = torch.full((1, 1, 1, 4), 3.0)
    theta = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]]]])
    g = torch.tensor([[[[8.0, 4.0, 2.0, 6.0]]]])
    kwargs = {"image_size": (1, 4)}
    _, tf = gradient(features, theta, None, None, g, gradient="tf", **kwargs)
    # part A's shares: [8, 2, 1, 3]; part B's: [0 (lost the max: reads 0), 2, 1, 3]; input u reads A at u
    # and B at u + 1: [8 + 2, 2 + 1, 1 + 3, 3 + 0].
    assert torch.equal(tf, torch.tensor([[[[10.0, 3.0, 4.0, 3.0]]]]))
    _, exact = gradient(features, theta, None, None, g, **kwargs)
    assert exact.sum() == g.sum()  # the adjoint conserves the gradient; TF's resampling need not


def test_a_zero_maximum_ties_with_the_uncovered_parts():
    """Uncovered parts are zeros in TF's max: a covering part reading a negative value loses to them (no
    gradient), and one reading exactly 0 ties with them (1/3 of the gradient with 3 parts). Identity parts,
    so the resampling returns each share to its own pixel. TF 1.5 computes exactly these numbers."""
    features = torch.tensor([[[[-1.0, 5.0]]]])
    theta = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]] * 3])  # 3 identity parts
    masks = torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])  # only part 0 covers
    g = torch.tensor([[[[6.0, 6.0]]]])
    out, tf = gradient(features, theta, None, masks, g, gradient="tf")
    assert torch.equal(out, torch.tensor([[[[0.0, 5.0]]]]))  # -1 loses to the uncovered zeros
    # pixel 0: part 0 reads -1 != max 0 -> no share; pixel 1: part 0 wins alone -> 6.
    assert torch.equal(tf, torch.tensor([[[[0.0, 6.0]]]]))
    zero = torch.tensor([[[[0.0, 5.0]]]])  # now part 0 reads exactly 0 at pixel 0: a 3-way tie
    _, tf = gradient(zero, theta, None, masks, g, gradient="tf")
    assert torch.equal(tf, torch.tensor([[[[2.0, 6.0]]]]))


def test_singular_part_passes_no_gradient_and_no_nan():
    """A valid part with a singular affine (TF's matrix_inverse refuses it) has no inverse: it passes no
    gradient; the other parts' gradients are unaffected."""
    gen = torch.Generator().manual_seed(3)
    features = torch.rand(1, 2, 8, 4, generator=gen)
    good = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    singular = torch.tensor([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]])
    masks = torch.ones(1, 2, 8, 4)
    masks[:, 1, :4] = 0  # part 1 covers only the lower half
    upstream = torch.randn(1, 2, 8, 4, generator=gen)
    theta = torch.stack([good, singular])[None]
    _, tf = gradient(features, theta, None, masks, upstream, gradient="tf")
    assert torch.isfinite(tf).all()
    _, alone = gradient(features, theta[:, :1], None, masks[:, :1], upstream, gradient="tf")
    # Where the singular part did not win, the gradient is the good part's alone.
    out = deform(features, theta, None, masks)
    good_only = deform(features, theta[:, :1], None, masks[:, :1])
    same = (out == good_only).all(dim=1, keepdim=True).expand_as(tf)
    assert torch.equal(tf[same], alone[same])


# ----------------------------------------------------------------------------------------------
# Every aggregate and interpolation against a per-part loop of TF's algorithm


def tf_reference(features, theta, valid, masks, aggregate, mode, upstream) -> np.ndarray:
    """TF 1.x's gradient of the authors' layer, written as TF computes it, one part at a time (numpy):
    forward per part (nearest / bilinear, zero fill), masked; the per-part gradient of the max (even split
    between all parts equal to the max) or of the average (grad / covering masks); then every part's
    gradient resampled with the inverted transform (same interpolation) and summed. The inverse is
    ``tf_inverse_affines`` (equal to TF's, test above)."""
    f = features.numpy().astype(np.float64)
    g = upstream.numpy().astype(np.float64)
    batch, channels, h, w = f.shape
    parts = theta.shape[1]
    stride = masks.shape[2] // h
    small = masks.numpy()[:, :, ::stride, ::stride] > 0.5
    cover = small & valid.numpy()[:, :, None, None]
    scaled = theta.numpy().astype(np.float32).copy()
    scaled[..., 2] = scaled[..., 2] / np.float32(stride)
    inverse = tf_inverse_affines(torch.from_numpy(scaled)).numpy()
    xs, ys = np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]

    def rnd(v):
        return _round_half_away_from_zero(torch.from_numpy(v)).numpy()

    def sample(image, t):  # image (C, h, w) float64, t (2, 3) float32 -> (C, h, w)
        sx = (t[0, 0] * xs + t[0, 1] * ys) + t[0, 2]
        sy = (t[1, 0] * xs + t[1, 1] * ys) + t[1, 2]

        def read(ix, iy):
            inside = (ix >= 0) & (ix <= w - 1) & (iy >= 0) & (iy <= h - 1)
            value = image[:, np.clip(iy, 0, h - 1).astype(int), np.clip(ix, 0, w - 1).astype(int)]
            return np.where(inside, value, 0.0)

        if mode == "nearest":
            return read(rnd(sx), rnd(sy))
        x0, y0 = np.floor(sx), np.floor(sy)
        fx, fy = (sx - x0).astype(np.float64), (sy - y0).astype(np.float64)
        return (1 - fy) * ((1 - fx) * read(x0, y0) + fx * read(x0 + 1, y0)) + fy * (
            (1 - fx) * read(x0, y0 + 1) + fx * read(x0 + 1, y0 + 1)
        )

    grad = np.zeros_like(f)
    for b in range(batch):
        per_part = np.stack([sample(f[b], scaled[b, p]) * cover[b, p] for p in range(parts)])  # (P,C,h,w)
        if aggregate == "max":
            y = per_part.max(axis=0)
            indicator = per_part == y
            part_grad = indicator / indicator.sum(axis=0) * g[b] * cover[b][:, None]
        else:
            count = small[b].sum(axis=0)
            part_grad = np.where(count > 0, g[b] / np.maximum(count, 1), 0.0) * cover[b][:, None]
        for p in range(parts):
            grad[b] += sample(part_grad[p], inverse[b, p])
    return grad


def random_problem(seed: int, dyadic: bool):
    """Batch 2, 4 parts, 3 channels, image 32x16 at stride 2. Dyadic affines (scales 1/2, 1, 2, flips,
    half-pixel translations) put exact ties everywhere: equal reads, exact half-pixel coordinates."""
    gen = torch.Generator().manual_seed(seed)
    batch, parts = 2, 4
    if dyadic:
        choice = torch.tensor([0.5, 1.0, 2.0, -1.0])
        lin = choice[torch.randint(0, 4, (batch, parts, 2), generator=gen)]
        theta = torch.zeros(batch, parts, 2, 3)
        theta[..., 0, 0], theta[..., 1, 1] = lin[..., 0], lin[..., 1]
        theta[..., 2] = torch.randint(-8, 24, (batch, parts, 2), generator=gen).float() / 2
        features = torch.randint(0, 4, (batch, 3, 16, 8), generator=gen).float() - 1  # many equal values
    else:
        theta = torch.eye(2, 3).repeat(batch, parts, 1, 1) + 0.3 * torch.randn(
            batch, parts, 2, 3, generator=gen
        )
        theta[..., 2] = 12 * torch.randn(batch, parts, 2, generator=gen) + 8
        features = torch.randn(batch, 3, 16, 8, generator=gen)
    masks = (torch.rand(batch, parts, 32, 16, generator=gen) > 0.4).float()
    valid = torch.rand(batch, parts, generator=gen) > 0.2
    upstream = torch.randn(batch, 3, 16, 8, generator=gen)
    return features, theta, valid, masks, upstream


@pytest.mark.parametrize("aggregate", ["max", "avg"])
@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("dyadic", [True, False], ids=["ties", "generic"])
def test_tf_gradient_matches_the_per_part_loop(aggregate, mode, dyadic):
    """1e-5: float32 (ours) against a float64 loop over the same per-part values; a wrong tie share, a
    missed uncovered part or a wrong inverse read changes elements by O(0.1). (Measured once against TF 1.5
    itself for all four combinations at strides 1-4: nearest-max 0, others <= 2.4e-7.)"""
    features, theta, valid, masks, upstream = random_problem(7, dyadic)
    out, ours = gradient(
        features, theta, valid, masks, upstream, aggregate=aggregate, mode=mode, gradient="tf"
    )
    expected = tf_reference(features, theta, valid, masks, aggregate, mode, upstream)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-5)
    assert np.abs(expected).max() > 0.5
    # The forward is the exact path's, bit for bit.
    assert torch.equal(out, deform(features, theta, valid, masks, aggregate, mode))


def test_forward_and_no_grad_paths_are_the_exact_ones():
    features, theta, valid, masks, _ = random_problem(2, dyadic=False)
    for mode in ("nearest", "bilinear"):
        for aggregate in ("max", "avg"):
            exact = deform(features, theta, valid, masks, aggregate, mode)
            assert torch.equal(deform(features, theta, valid, masks, aggregate, mode, gradient="tf"), exact)
            with torch.no_grad():
                leaf = features.clone().requires_grad_(True)
                assert torch.equal(deform(leaf, theta, valid, masks, aggregate, mode, gradient="tf"), exact)


def test_theta_gets_no_gradient_like_tf():
    features, theta, valid, masks, upstream = random_problem(4, dyadic=False)
    theta = theta.clone().requires_grad_(True)
    features = features.clone().requires_grad_(True)
    out = deform(features, theta, valid, masks, mode="bilinear", gradient="tf")
    (out * upstream).sum().backward()
    assert theta.grad is None and features.grad is not None


# ----------------------------------------------------------------------------------------------
# Generator and configs


def test_generator_warp_gradient_changes_only_the_backward():
    from deformgan.conditioning import PoseConditioning
    from deformgan.models import Generator

    gen = torch.Generator().manual_seed(0)
    batch, size = 2, (32, 16)
    features, theta, valid, _, _ = random_problem(9, dyadic=False)
    cond = PoseConditioning(
        source_heatmaps=torch.rand(batch, 18, *size, generator=gen),
        target_heatmaps=torch.rand(batch, 18, *size, generator=gen),
        theta=theta,
        valid=valid,
        masks=(torch.rand(batch, 4, *size, generator=gen) > 0.3).float(),
    )
    image = torch.rand(batch, 3, *size, generator=gen) * 2 - 1
    grads = {}
    for mode in ("exact", "tf"):
        torch.manual_seed(0)
        model = Generator(size, width=1 / 16, dropout=0.0, warp_gradient=mode)
        assert model.warp_gradient == mode
        out = model(image, cond)
        grads[mode] = torch.autograd.grad(out.square().sum(), list(model.appearance_encoder.parameters()))
        grads[mode + "-out"] = out.detach()
    assert torch.equal(grads["exact-out"], grads["tf-out"])
    assert any(not torch.equal(a, b) for a, b in zip(grads["exact"], grads["tf"], strict=True))
    with pytest.raises(InputError, match="warp_gradient"):
        Generator(size, warp_gradient="adjoint")


def test_paper_configs_train_with_tfs_warp_gradient():
    for path in sorted(configs_dir().glob("*.yaml")):
        paper = path.stem.split("-")[0] in ("market", "fashion")
        assert load_config(path).generator.warp_gradient == ("tf" if paper else "exact"), path.stem

"""Training losses: adversarial (arXiv v1 Eq. 5), L1, nearest-neighbour loss (Eq. 7).

All losses take batched tensors and return *unweighted* values; the loss weights (lambda = 100 for pixel L1,
0.01 for the NN loss on conv1_2, 0.5 for the PercLoss L1 on conv2_1) are applied by the training objective.

The nearest-neighbour loss (``nn_loss``) is the expensive one: the reference (``conditional_gan.nn_loss``)
stacks n^2 shifted copies of the target features. ``nn_loss`` gives the same values and (sub)gradients
without materialising them; ``nn_loss_reference`` keeps the literal algorithm for tests and benchmarks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from deformgan.errors import InputError

REDUCTIONS = ("mean", "sum", "none")

# ----------------------------------------------------------------------------------------------
# Adversarial losses (the authors' gan/gan.py)


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Discriminator loss terms ``(-mean log D(real), -mean log(1 - D(fake)))``, D = sigmoid(logits); the
    loss is their sum (the authors' ``gan`` submodule, standard GAN cross-entropy).

    ``real_logits`` and ``fake_logits`` are raw patch logits of any shape, e.g. (B,1,h',w'); each term is a
    mean over batch and patches, as in the authors' code. Deviation: they take sigmoid outputs and add
    1e-7 inside each log; we use the numerically stable softplus form (``binary_cross_entropy_with_logits``),
    which differs only by that epsilon: log(1 + 1e-7/p) <= 1e-7/p per element, p the probability inside the
    log -- negligible unless D is saturated, where the eps-free form keeps finite, non-vanishing gradients.
    """
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real, fake


def g_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -mean log D(G(.)) from raw logits (softplus form, no 1e-7)."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


# ----------------------------------------------------------------------------------------------
# Reconstruction losses (conditional_gan.CGAN._compile_generator_loss)


def l1_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mean |a - b| over all elements (batch, channels, H, W): the reference ``st_loss`` with area size 1."""
    _check_same_shape(a, b, "l1_loss")
    return F.l1_loss(a, b)


def _check_same_shape(generated: torch.Tensor, target: torch.Tensor, name: str) -> None:
    if generated.shape != target.shape:
        raise InputError(
            f"{name}: generated {tuple(generated.shape)} and target {tuple(target.shape)} "
            "must have the same shape"
        )


def _check_nn_arguments(
    generated: torch.Tensor, target: torch.Tensor, neighborhood: int, reduction: str
) -> None:
    _check_same_shape(generated, target, "nn_loss")
    if generated.dim() != 4:
        raise InputError(f"nn_loss: expected (B,C,H,W) tensors, got shape {tuple(generated.shape)}")
    if isinstance(neighborhood, bool) or not isinstance(neighborhood, int):
        raise InputError(f"nn_loss: neighborhood must be an odd int >= 1, got {neighborhood!r}")
    if neighborhood < 1 or neighborhood % 2 == 0:
        raise InputError(
            f"nn_loss: neighborhood must be an odd int >= 1 (window centred on p), got {neighborhood}"
        )
    if reduction not in REDUCTIONS:
        raise InputError(f"nn_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not generated.is_floating_point() or generated.dtype != target.dtype:
        raise InputError(
            f"nn_loss: expected two floating tensors of one dtype, got {generated.dtype} and {target.dtype}"
        )
    if generated.device != target.device:
        raise InputError(f"nn_loss: tensors on different devices ({generated.device}, {target.device})")


def _offsets(neighborhood: int) -> list[tuple[int, int]]:
    """Window offsets (dy, dx) in the fixed tie-breaking order: row-major, dy then dx, from -r to r.

    Both ``nn_loss`` and ``nn_loss_reference`` pick, among equal minima, the first offset in this order.
    """
    r = neighborhood // 2
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]


def _reduce(distance: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return distance.mean()
    if reduction == "sum":
        return distance.sum()
    return distance


def nn_loss_reference(
    generated: torch.Tensor, target: torch.Tensor, neighborhood: int = 3, reduction: str = "mean"
) -> torch.Tensor:
    """The literal nearest-neighbour loss of the reference (``conditional_gan.nn_loss``), for tests only.

    Pads ``target`` (B,C,H,W) by n//2 with the constant -10000, stacks all n^2 shifted crops on a new axis
    (n^2 times the input's memory), sums |generated - shifted target| over channels, takes the min over the
    shifts (first minimum in :func:`_offsets` order), then reduces like :func:`nn_loss`.
    """
    _check_nn_arguments(generated, target, neighborhood, reduction)
    r = neighborhood // 2
    _, _, height, width = target.shape
    padded = F.pad(target, (r, r, r, r), value=-10000.0)
    shifted = torch.stack(
        [
            padded[:, :, r + dy : r + dy + height, r + dx : r + dx + width]
            for dy, dx in _offsets(neighborhood)
        ],
        dim=-1,
    )  # (B, C, H, W, n^2)
    distance = (generated.unsqueeze(-1) - shifted).abs().sum(dim=1).min(dim=-1).values  # (B, H, W)
    return _reduce(distance, reduction)


# Elements of one input per work tile of the fast NN search (whole batch elements, at least one): two
# channels-last tiles of <= 4 MiB each in float32 stay in the last-level cache and bound the extra memory.
_TILE_ELEMENTS = 1 << 20


def _nn_search(
    generated: torch.Tensor, target: torch.Tensor, neighborhood: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest target position in the n x n window around every generated position (no autograd).

    Returns ``distance`` (B,H,W): min over in-image q of sum_c |generated(c,p) - target(c,q)|, and ``source``
    (B,H,W) int64: the chosen q as the flat index y*W + x into a target plane (first minimum in
    :func:`_offsets` order).

    Why not a library op: torch has no windowed L1 search, and the sub/abs/sum chain costs three passes over
    (B,C,H,W) per offset. Instead both tensors are copied, a few batch elements at a time, to channels-last
    (positions, C) layout (one 2-D transpose per element, which ``copy_`` does with a cache-blocked kernel);
    flattened over (batch, row, column) a window offset (dy, dx) is then a constant shift dy*W + dx of the
    flat index, so each offset is one pair of contiguous slices, and ``torch.cdist(p=1)`` on (M,1,C) x
    (M,1,C) computes the channel-summed |difference| in one fused, vectorised pass. Positions whose flat
    shift wraps across a row or a batch element are exactly those whose neighbour is outside the image; they
    are masked to +inf, so out-of-image neighbours are never chosen (the reference's -10000 padding has the
    same effect as long as |values| stay far below 5000).
    """
    batch, channels, height, width = generated.shape
    plane = height * width
    offsets = _offsets(neighborhood)
    device = generated.device
    # cdist computes in float32/float64 only; half-precision features are searched in float32.
    work_dtype = generated.dtype if generated.dtype in (torch.float32, torch.float64) else torch.float32
    rows = torch.arange(height, device=device).view(1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, width)
    dys = torch.tensor([dy for dy, _ in offsets], device=device).view(-1, 1, 1)
    dxs = torch.tensor([dx for _, dx in offsets], device=device).view(-1, 1, 1)
    # (n^2, 1, H, W): the neighbour at this offset lies outside the image.
    outside = (
        (rows + dys < 0) | (rows + dys >= height) | (cols + dxs < 0) | (cols + dxs >= width)
    ).unsqueeze(1)
    plane_shift = (dys * width + dxs).view(-1)  # (n^2,) flat-index shift of each offset within a plane

    distance = torch.empty((batch, height, width), dtype=work_dtype, device=device)
    choice = torch.empty((batch, height, width), dtype=torch.int64, device=device)
    per_tile = max(1, min(batch, _TILE_ELEMENTS // max(1, channels * plane)))
    g_buffer = torch.empty((per_tile, plane, channels), dtype=work_dtype, device=device)
    t_buffer = torch.empty_like(g_buffer)
    candidates_buffer = torch.empty((len(offsets), per_tile * plane), dtype=work_dtype, device=device)
    for first in range(0, batch, per_tile):
        count = min(per_tile, batch - first)
        for i in range(count):
            g_buffer[i].copy_(generated[first + i].reshape(channels, plane).t())
            t_buffer[i].copy_(target[first + i].reshape(channels, plane).t())
        g_tile = g_buffer[:count].view(-1, channels)
        t_tile = t_buffer[:count].view(-1, channels)
        positions = count * plane
        candidates = candidates_buffer[:, :positions]
        for k, (dy, dx) in enumerate(offsets):
            shift = dy * width + dx
            lo, hi = max(0, -shift), min(positions, positions - shift)
            if hi > lo:
                pair = torch.cdist(
                    g_tile[lo:hi].unsqueeze(1), t_tile[lo + shift : hi + shift].unsqueeze(1), p=1
                )
                candidates[k, lo:hi] = pair.view(-1)
        # Entries left unwritten above have their neighbour outside the image: masked here.
        candidates = candidates.view(len(offsets), count, height, width).masked_fill_(outside, math.inf)
        torch.min(candidates, dim=0, out=(distance[first : first + count], choice[first : first + count]))
    position = torch.arange(plane, device=device).view(1, height, width)
    source = position + plane_shift[choice]
    return distance.to(generated.dtype), source


class _NearestNeighbourDistance(torch.autograd.Function):
    """(generated, target, n) -> (B,H,W) NN distance map, with the literal formula's (sub)gradient.

    Backward: d/dg of sum_c |g(c,p) - t(c,q*)| is sign(g(c,p) - t(c,q*)); the target gets minus that,
    scatter-added at q* (one target position can be the nearest neighbour of several generated ones).
    Only the chosen neighbour is recomputed, with a gather: no per-offset work in the backward pass.
    """

    @staticmethod
    def forward(ctx, generated: torch.Tensor, target: torch.Tensor, neighborhood: int) -> torch.Tensor:
        distance, source = _nn_search(generated, target, neighborhood)
        ctx.save_for_backward(generated, target, source)
        return distance

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_distance: torch.Tensor):
        generated, target, source = ctx.saved_tensors
        batch, channels, height, width = generated.shape
        index = source.view(batch, 1, height * width).expand(batch, channels, height * width)
        chosen = target.reshape(batch, channels, height * width).gather(2, index)
        sign = torch.sub(generated.reshape(batch, channels, height * width), chosen, out=chosen).sign_()
        weighted = sign.mul_(grad_distance.reshape(batch, 1, height * width))
        grad_target = None
        if ctx.needs_input_grad[1]:
            grad_target = torch.zeros_like(weighted).scatter_add_(2, index, weighted).neg_()
            grad_target = grad_target.view(batch, channels, height, width)
        grad_generated = weighted.view(batch, channels, height, width) if ctx.needs_input_grad[0] else None
        return grad_generated, grad_target, None


def nn_loss(
    generated: torch.Tensor, target: torch.Tensor, neighborhood: int = 3, reduction: str = "mean"
) -> torch.Tensor:
    """Nearest-neighbour loss (paper, arXiv v1 Eq. 7; the authors' ``conditional_gan.nn_loss``).

    For every position p of ``generated`` (B,C,H,W), the minimum over the ``neighborhood`` x
    ``neighborhood`` window of ``target`` centred at p of sum_c |generated(c,p) - target(c,q)|; window
    positions outside the image are never chosen (the reference pads with -10000). In training ``target``
    holds the features of the real image and is searched around each generated location.

    ``reduction``: "mean" averages the (B,H,W) map over positions and batch (what the reference trains
    with; note the channel *sum*, unlike :func:`l1_loss`); "sum" is Eq. 5 summed over the batch; "none"
    returns the (B,H,W) map. Gradients reach both inputs as the literal formula's subgradient; among equal
    minima the first offset in row-major (dy, then dx, from -n//2) order is used, like
    :func:`nn_loss_reference`. Extra memory: two channels-last copies of a few batch elements (<= 2^20
    elements each, or one element if larger) plus n^2 distances per position of those, instead of the
    reference's n^2 copies of the target.
    """
    _check_nn_arguments(generated, target, neighborhood, reduction)
    distance = _NearestNeighbourDistance.apply(generated, target, neighborhood)
    return _reduce(distance, reduction)

"""The deformable skip connection: warp a feature map once per body part and aggregate.

Paper: "Deformable skip connections" (arXiv v1 Eqs. 3-4: F'_h = f_h(F . M_h), combined by a max over the
parts); the authors' ``pose_transform.AffineTransformLayer``.

Conventions (shared with :mod:`deformgan.parts`): ``theta`` (B, P, 2, 3) maps a TARGET pixel (x, y, 1)
to the SOURCE pixel (x, y), in pixel units at full image resolution, x = column, y = row. Masks (B, P, H, W)
are 0/1 part coverages of the target at full resolution.

What the reference's ``AffineTransformLayer`` does, and therefore what :func:`deform` does:

* the affine is brought to a feature map of stride ``s = H / h`` by dividing only its translation by ``s``
  (scaling about the origin, no half-pixel correction);
* each output pixel (x, y) reads the input at ``(x', y') = A (x, y, 1)`` with ``tf.contrib.image.transform``:
  NEAREST = the pixel at ``(std::round(y'), std::round(x'))`` (round half AWAY from zero), BILINEAR = the four
  neighbours ``floor``/``floor + 1`` weighted linearly; any neighbour outside the map reads 0;
* masks are resized with ``tf.image.resize_images(..., NEAREST_NEIGHBOR)`` (TF 1.x, no half-pixel centres),
  which for an integer downsampling ``s`` picks row ``i * s`` and column ``j * s``;
* max: max over parts of ``mask * warped``; avg: sum over parts divided by the number of covering masks
  (0 where none covers).

Why not ``F.grid_sample(mode="nearest")``: it rounds half to EVEN (``nearbyint``) and goes through a
normalise/unnormalise round trip in floating point, so exact half-pixel coordinates (common: an integer
translation divided by an even stride) land on a different pixel than TF's ``std::round``. Nearest is
therefore an exact integer gather here (tests compare it with a per-pixel loop). Gathering is also faster:
one index per (part, pixel), shared by all channels.

Two backward passes (``gradient``), one forward:

* "exact" (default): the true adjoint of the forward -- every output's gradient goes back to the input
  element it read (to the part that won the max).
* "tf": what TF 1.x back-propagates through ``tf.contrib.image.transform``, and therefore what trained the
  authors' released checkpoints. Its registered gradient of ``ImageProjectiveTransform`` does not
  scatter: it RESAMPLES each part's output gradient with the inverted transform, with the same
  interpolation (``grad_in(u) = sum_p part_grad_p(round(A_p^-1 u))`` for nearest). Each input pixel takes the
  output gradient at the one point its inverse maps to: a part that magnifies (several outputs read one
  input) passes one of their gradients instead of their sum, one that shrinks passes gradient to input
  pixels that no output read. The per-part gradient is TF's too: ``reduce_max`` splits an output's
  gradient evenly between all parts equal to the max (uncovered parts are 0 and tie with a 0 maximum),
  ``avg`` divides by the number of covering masks. The inverse is TF's: Eigen's partial-pivoting LU
  (``tf.matrix_inverse``) of the 3x3 matrix in float32, whose result this module reproduces bit for bit
  (same operations in the same order), so that half-pixel ties of the inverse map round as TF's did.
  No gradient reaches ``theta`` (TF's transform op has none for its transforms).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from deformgan.errors import InputError

AGGREGATES = ("max", "avg")
MODES = ("nearest", "bilinear")
GRADIENTS = ("exact", "tf")

# ----------------------------------------------------------------------------------------------
# Coordinates


def _round_half_away_from_zero(x: torch.Tensor) -> torch.Tensor:
    """``std::round`` exactly (torch.round rounds half to even). ``x - trunc(x)`` is exact in floating point,
    so the tie test needs no epsilon (``floor(x + 0.5)`` would misround 0.49999997 in float32)."""
    whole = torch.trunc(x)
    return torch.where((x - whole).abs() >= 0.5, whole + torch.sign(x), whole)


def feature_stride(image_size: tuple[int, int], feature_size: tuple[int, int]) -> int:
    """The integer stride ``s = H / h = W / w`` of a feature map of ``feature_size`` (h, w) in an image of
    ``image_size`` (H, W). Raises :class:`InputError` if the two axes are not downsampled by one integer."""
    (height, width), (h, w) = image_size, feature_size
    if h <= 0 or w <= 0 or height % h or width % w or height // h != width // w:
        raise InputError(
            f"deform: feature map {h}x{w} is not the image {height}x{width} downsampled by one integer "
            "stride on both axes"
        )
    return height // h


def source_coordinates(theta: torch.Tensor, stride: int, feature_size: tuple[int, int]) -> torch.Tensor:
    """Where each feature pixel samples its input: (B, P, h, w, 2) float32 (x', y') in feature pixels.

    theta (B, P, 2, 3) full-resolution pixel affines; only the translation is divided by ``stride``.
    The sum is evaluated in float32 in TF's order, ``(a0 x + a1 y) + a2 / s``.
    """
    h, w = feature_size
    theta = theta.to(torch.float32)
    linear, translation = theta[..., :2], theta[..., 2] / stride  # (B,P,2,2), (B,P,2)
    ys = torch.arange(h, device=theta.device, dtype=torch.float32).view(h, 1)
    xs = torch.arange(w, device=theta.device, dtype=torch.float32).view(1, w)
    lin = linear[..., None, None, :, :]  # (B,P,1,1,2,2)
    coords = lin[..., 0] * xs[..., None] + lin[..., 1] * ys[..., None]  # (B,P,h,w,2)
    return coords + translation[..., None, None, :]


def downsample_masks(masks: torch.Tensor, stride: int) -> torch.Tensor:
    """Nearest resize of (B, P, H, W) masks by an integer ``stride``, as TF 1.x ``resize_images``
    (NEAREST_NEIGHBOR, align_corners=False): output pixel i reads input ``floor(i * H / h) = i * stride``.
    ``F.interpolate(mode="nearest")`` computes the same index through a float scale; slicing is exact."""
    return masks[..., ::stride, ::stride]


# ----------------------------------------------------------------------------------------------
# Gather-based warping


class _GatherMax(torch.autograd.Function):
    """``max over parts of padded[index]`` with a backward that scatters each output's gradient to the one
    input element that won the max: (B, C, h*w) work instead of autograd's (B, P, C, h*w) dense max gradient
    followed by a (B, P, C, h*w) scatter. Ties between different input elements (measure zero for real
    features) send the whole gradient to the first part; TF splits it evenly. Ties between parts reading the
    same element, or an element and the zero slot, give the element the same gradient as TF."""

    @staticmethod
    def forward(ctx, padded: torch.Tensor, index: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # padded (B, C, n+1) with a zero last slot; index (B, P, q) into [0, n].
        batch, channels, slots = padded.shape
        parts, pixels = index.shape[1:]
        index_c = index.unsqueeze(2).expand(batch, parts, channels, pixels)
        gathered = torch.gather(padded.unsqueeze(1).expand(batch, parts, channels, slots), 3, index_c)
        if not ctx.needs_input_grad[0]:
            return gathered.amax(dim=1)
        values, winner_part = gathered.max(dim=1)  # (B, C, q)
        winner = torch.gather(index_c, 1, winner_part.unsqueeze(1)).squeeze(1)  # (B, C, q) input slot
        ctx.save_for_backward(winner)
        ctx.slots = slots
        return values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (winner,) = ctx.saved_tensors
        batch, channels, _ = grad.shape
        grad_padded = grad.new_zeros(batch, channels, ctx.slots).scatter_add_(2, winner, grad)
        return grad_padded, None


def _gather_parts(padded: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, C, n+1), (B, P, q) -> (B, P, C, q): every part's gather, through autograd (avg, bilinear)."""
    batch, channels, slots = padded.shape
    parts, pixels = index.shape[1:]
    return torch.gather(
        padded.unsqueeze(1).expand(batch, parts, channels, slots),
        3,
        index.unsqueeze(2).expand(batch, parts, channels, pixels),
    )


class _Geometry(NamedTuple):
    """What a warp reads where, shared by the forward and the TF-style backward (pixels q = y * w + x)."""

    stride: int
    size: tuple[int, int]  # (h, w) of the feature map
    covered: torch.Tensor  # (B, P, q) bool: the part is valid and its mask covers the output pixel
    count: torch.Tensor | None  # (B, 1, q) number of covering masks (avg only; invalid parts included)
    order: torch.Tensor  # (B, k, q) long: part indices, covering parts first (see deform)
    src_x: torch.Tensor  # (B, P, h, w) float32 source x' of every (part, output pixel)
    src_y: torch.Tensor

    def first_k(self, x: torch.Tensor) -> torch.Tensor:
        """(B, P, ...) per-part values at every output pixel -> (B, k, q) in ``order``."""
        batch, parts = x.shape[:2]
        return torch.gather(x.reshape(batch, parts, -1), 1, self.order)

    def slot_index(self, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
        """Integer-valued (B, P, h, w) source columns/rows -> (B, k, q) slots of the padded map; every
        out-of-range read and every uncovered pair reads the extra zero slot at index h*w."""
        (h, w), batch, parts = self.size, ix.shape[0], ix.shape[1]
        pixels = h * w
        ix, iy = ix.reshape(batch, parts, pixels), iy.reshape(batch, parts, pixels)
        inside = self.covered & (ix >= 0) & (ix <= w - 1) & (iy >= 0) & (iy <= h - 1)
        index = iy.clamp(0, h - 1).long() * w + ix.clamp(0, w - 1).long()
        return self.first_k(torch.where(inside, index, torch.full_like(index, pixels)))


def _geometry(
    features: torch.Tensor,
    theta: torch.Tensor,
    valid: torch.Tensor | None,
    masks: torch.Tensor | None,
    aggregate: str,
    image_size: tuple[int, int] | None,
) -> _Geometry:
    batch, _, h, w = features.shape
    parts = theta.shape[1]
    if masks is not None:
        image_size = (masks.shape[2], masks.shape[3])
    stride = feature_stride((int(image_size[0]), int(image_size[1])), (h, w))

    device = features.device
    pixels = h * w
    # Which (part, output pixel) pairs may read anything: the part is valid and its mask covers the pixel.
    covered = torch.ones(batch, parts, h, w, dtype=torch.bool, device=device)
    if masks is not None:
        covered = downsample_masks(masks.to(device), stride) > 0.5
    count = covered.sum(dim=1, dtype=features.dtype).reshape(batch, 1, pixels) if aggregate == "avg" else None
    if valid is not None:
        covered = covered & valid.to(device=device, dtype=torch.bool)[:, :, None, None]

    coords = source_coordinates(theta.to(device), stride, (h, w))

    # Only parts covering a pixel can win there; the others add a 0. Reorder the part axis so that every
    # pixel lists its covering parts first and keep k = (most covering parts anywhere) + 1 entries: the extra
    # uncovered entry (zero slot) stands for all uncovered parts. Limb and head masks are small, so k is
    # typically 3-5 instead of 10, and the gather and the reduction shrink by as much. Knowing k needs the
    # data on the host: on the CPU that is free; on an accelerator it would stall the step (and break CUDA
    # graphs and torch.compile), so there all parts are kept. The result is the same either way: the order
    # is stable, so the covering parts come first and the entries beyond them read the zero slot.
    covered = covered.reshape(batch, parts, pixels)
    k = _parts_to_keep(covered)
    order = torch.sort(covered.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :k]
    return _Geometry(stride, (h, w), covered, count, order, coords[..., 0], coords[..., 1])


def _padded(features: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, h*w + 1): the flattened map and one zero slot for every read of nothing."""
    batch, channels = features.shape[:2]
    flat = features.reshape(batch, channels, -1)
    return torch.cat([flat, features.new_zeros(batch, channels, 1)], 2)


def _bilinear_parts(padded: torch.Tensor, geo: _Geometry, dtype: torch.dtype) -> torch.Tensor:
    """(B, C, n+1) padded map -> (B, k, C, q) every kept part's bilinear read (TF's floor-based corners)."""
    batch, channels = padded.shape[:2]
    x0, y0 = torch.floor(geo.src_x), torch.floor(geo.src_y)
    fx, fy = (geo.src_x - x0).to(dtype), (geo.src_y - y0).to(dtype)
    warped = padded.new_zeros(batch, geo.order.shape[1], channels, geo.size[0] * geo.size[1])
    for dx, dy, weight in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        corner = _gather_parts(padded, geo.slot_index(x0 + dx, y0 + dy))
        warped = warped + corner * geo.first_k(weight).unsqueeze(2)
    return warped


def _warp(features: torch.Tensor, geo: _Geometry, aggregate: str, mode: str) -> torch.Tensor:
    """The forward of :func:`deform` (exact autograd: the ``gradient="exact"`` path)."""
    batch, channels, h, w = features.shape
    padded = _padded(features)
    if mode == "nearest":
        index = geo.slot_index(_round_half_away_from_zero(geo.src_x), _round_half_away_from_zero(geo.src_y))
        if aggregate == "max":
            out = _GatherMax.apply(padded, index)
        else:
            out = _gather_parts(padded, index).sum(dim=1)
    else:
        # A covered pair whose four neighbours are all outside reads 0, like the reference's zero fill.
        warped = _bilinear_parts(padded, geo, features.dtype)
        out = warped.amax(dim=1) if aggregate == "max" else warped.sum(dim=1)
    if aggregate == "avg":
        count = geo.count
        out = torch.where(count > 0, out / count.clamp_min(1), torch.zeros_like(out))
    return out.reshape(batch, channels, h, w)


# ----------------------------------------------------------------------------------------------
# TF 1.x's backward (gradient="tf")


def tf_inverse_affines(theta: torch.Tensor) -> torch.Tensor:
    """Inverses of (..., 2, 3) affines (x, y, 1) -> (x', y'), as TF 1.x computes them for the gradient of
    ``tf.contrib.image.transform``: ``tf.matrix_inverse`` of the 3x3 matrix ``[[a0, a1, a2], [b0, b1, b2],
    [0, 0, 1]]`` in float32 -- Eigen's ``PartialPivLU`` (row swap when ``|b0| > |a0|``, elimination
    without fused multiply-add, triangular solves that multiply by the reciprocal of each pivot) --
    reproduced operation by operation, so the result equals TF's bit for bit (tests: the 80 transforms of
    tests/fixtures/keras/warp_grad.npz). The third row of such an inverse is exactly (0, 0, 1), so TF's
    division by its last entry changes nothing. Returns (..., 2, 3) float32; a singular matrix (which TF
    refuses) gives non-finite entries.
    """
    theta = theta.to(torch.float32)
    a0, a1, a2 = theta[..., 0, 0], theta[..., 0, 1], theta[..., 0, 2]
    b0, b1, b2 = theta[..., 1, 0], theta[..., 1, 1], theta[..., 1, 2]
    swap = b0.abs() > a0.abs()  # partial pivoting on column 0 (the first maximum wins a tie)
    p0, p1, p2 = torch.where(swap, b0, a0), torch.where(swap, b1, a1), torch.where(swap, b2, a2)
    q0, q1, q2 = torch.where(swap, a0, b0), torch.where(swap, a1, b1), torch.where(swap, a2, b2)
    lower = q0 / p0
    u11, u12 = q1 - lower * p1, q2 - lower * p2
    inv_p0, inv_u11 = 1 / p0, 1 / u11
    one, zero = torch.ones_like(a0), torch.zeros_like(a0)
    columns = []
    for j in range(3):  # solve L U x = P e_j, one column of the identity at a time
        rhs0 = torch.where(swap, one if j == 1 else zero, one if j == 0 else zero)
        rhs1 = torch.where(swap, one if j == 0 else zero, one if j == 1 else zero)
        x2 = one if j == 2 else zero
        y1 = rhs1 - lower * rhs0  # forward substitution (unit lower triangle)
        r0, r1 = rhs0 - x2 * p2, y1 - x2 * u12  # back substitution, bottom row first
        x1 = r1 * inv_u11
        x0 = (r0 - x1 * p1) * inv_p0
        columns.append(torch.stack([x0, x1], dim=-1))
    return torch.stack(columns, dim=-1)


def _tf_backward(
    grad: torch.Tensor,
    features: torch.Tensor,
    theta: torch.Tensor,
    out: torch.Tensor,
    geo: _Geometry,
    aggregate: str,
    mode: str,
) -> torch.Tensor:
    """TF 1.x's gradient of the deformable skip w.r.t. ``features``: (B, C, h, w) from the upstream ``grad``.

    1. Per part p and output pixel q, the gradient of the part's masked copy (``part_grad``): max --
       ``(indicator / number of parts equal to the max) * grad`` (TF's ``reduce_max`` gradient, in that
       order), where every uncovered or invalid part is a 0 that ties with a 0 maximum; avg --
       ``grad / count`` for covering parts. Kept for the forward's k entries per pixel (covering parts
       first), channels last: (B, k, q, C).
    2. ``grad_in[u] = sum_p part_grad_p(A_p^-1 u)``: each input pixel u reads every part's gradient at its
       inverse-mapped position, nearest (rounded half away from zero) or bilinear, zero outside -- TF's
       registered gradient of ``ImageProjectiveTransform``. One ``embedding_bag`` sum over the parts (in
       part order, as TF adds them) reads whole channel rows: no (B, P, C, q) tensor is formed.
    Everything is batched over parts, with no device synchronisation.
    """
    batch, channels, h, w = features.shape
    parts, pixels, k = theta.shape[1], h * w, geo.order.shape[1]
    dtype = grad.dtype
    g = grad.reshape(batch, channels, pixels).transpose(1, 2)  # (B, q, C)
    cover = geo.first_k(geo.covered).unsqueeze(3)  # (B, k, q, 1): the kept entry is a valid covering part
    base = torch.arange(batch, device=g.device).view(batch, 1, 1)
    # Table of (B*k*q + 1, C) rows: row (b, r, q_out) = part_grad[b, r, q_out], the last row zero.
    table = grad.new_empty(batch * k * pixels + 1, channels)
    table[-1] = 0
    part_grad = table[:-1].view(batch, k, pixels, channels)
    if aggregate == "max":
        if mode == "nearest":
            # The forward's reads, as rows of a (B*q + 1, C) table whose last row is the zero slot.
            rows = features.new_empty(batch * pixels + 1, channels)
            rows[:-1].view(batch, pixels, channels).copy_(
                features.reshape(batch, channels, pixels).transpose(1, 2)
            )
            rows[-1] = 0
            rx, ry = _round_half_away_from_zero(geo.src_x), _round_half_away_from_zero(geo.src_y)
            slot = geo.slot_index(rx, ry)
            values = F.embedding(torch.where(slot == pixels, batch * pixels, base * pixels + slot), rows)
        else:
            values = _bilinear_parts(_padded(features), geo, features.dtype).transpose(2, 3)
        y = out.reshape(batch, channels, pixels).transpose(1, 2).contiguous()  # (B, q, C)
        winners = values == y.unsqueeze(1)  # (B, k, q, C)
        winners &= cover
        zeros = (parts - geo.covered.sum(dim=1)).unsqueeze(2) * (y == 0)  # tying 0s of the other parts
        ties = winners.sum(dim=1, dtype=dtype) + zeros.to(dtype)  # >= 1: the max is attained
        # TF: (indicator / ties) * grad, i.e. (1 / ties) * grad for the parts equal to the max, else 0.
        torch.where(winners, ((1 / ties) * g).unsqueeze(1), grad.new_zeros(()), out=part_grad)
    else:
        count = geo.count.reshape(batch, pixels, 1)
        share = torch.where(count > 0, g / count.clamp_min(1), torch.zeros_like(g))
        torch.where(cover, share.unsqueeze(1), grad.new_zeros(()), out=part_grad)
    nothing = batch * k * pixels
    # rank[b, p, q] = where part p sits in the kept entries at output pixel q (-1 if not kept: it is 0 there).
    rank = torch.full((batch, parts, pixels), -1, dtype=torch.long, device=g.device)
    positions = torch.arange(k, device=g.device).view(1, k, 1).expand(batch, k, pixels)
    rank.scatter_(1, geo.order, positions)

    def rows_at(ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
        """Integer-valued (B, P, h, w) output columns/rows -> (B*q, P) table rows (``nothing`` outside)."""
        ix, iy = ix.reshape(batch, parts, pixels), iy.reshape(batch, parts, pixels)
        inside = (ix >= 0) & (ix <= w - 1) & (iy >= 0) & (iy <= h - 1)
        target = torch.where(inside, iy * w + ix, torch.zeros_like(ix)).long()
        entry = torch.gather(rank, 2, target)
        row = (base * k + entry) * pixels + target
        row = torch.where(inside & (entry >= 0), row, torch.full_like(row, nothing))
        return row.transpose(1, 2).reshape(batch * pixels, parts)

    translation = theta.to(torch.float32)[..., 2:] / geo.stride  # the transform the forward sampled with
    inverse = tf_inverse_affines(torch.cat([theta.to(torch.float32)[..., :2], translation], dim=-1))
    coords = source_coordinates(inverse, 1, (h, w))  # (B, P, h, w, 2): where input pixel u maps to
    # A singular transform (TF refuses it) has no inverse: its part passes no gradient.
    coords = torch.where(torch.isfinite(coords), coords, torch.full_like(coords, -2.0))
    x, y = coords[..., 0], coords[..., 1]
    if mode == "nearest":
        index = rows_at(_round_half_away_from_zero(x), _round_half_away_from_zero(y))
        summed = F.embedding_bag(index, table, mode="sum")
    else:  # TF's bilinear_interpolation weights (x_ceil - x), (x - x_floor), ..., one bag of 4 P reads
        x0, y0 = torch.floor(x), torch.floor(y)
        x1, y1 = x0 + 1, y0 + 1
        corners = ((x0, y0, (x1 - x) * (y1 - y)), (x1, y0, (x - x0) * (y1 - y)))
        corners += ((x0, y1, (x1 - x) * (y - y0)), (x1, y1, (x - x0) * (y - y0)))
        index = torch.cat([rows_at(cx, cy) for cx, cy, _ in corners], dim=1)
        weight = torch.cat([wt.reshape(batch, parts, pixels).transpose(1, 2) for _, _, wt in corners], dim=2)
        summed = F.embedding_bag(
            index, table, mode="sum", per_sample_weights=weight.reshape(batch * pixels, -1).to(dtype)
        )
    return summed.reshape(batch, pixels, channels).transpose(1, 2).reshape(batch, channels, h, w)


class _TFStyleWarp(torch.autograd.Function):
    """:func:`deform`'s forward (bit for bit) with TF 1.x's backward (:func:`_tf_backward`)."""

    @staticmethod
    def forward(ctx, features, theta, geo, aggregate, mode):  # type: ignore[override]
        out = _warp(features.detach(), geo, aggregate, mode)
        ctx.save_for_backward(features, theta, out)
        ctx.geo, ctx.aggregate, ctx.mode = geo, aggregate, mode
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):  # type: ignore[override]
        features, theta, out = ctx.saved_tensors
        grad_features = _tf_backward(grad, features, theta, out, ctx.geo, ctx.aggregate, ctx.mode)
        return grad_features, None, None, None, None


def _parts_to_keep(covered: torch.Tensor) -> int:
    """How many entries of the part axis to keep for (B, P, pixels) coverage (see :func:`deform`)."""
    parts = covered.shape[1]
    return min(parts, int(covered.sum(dim=1).max()) + 1) if covered.device.type == "cpu" else parts


def deform(
    features: torch.Tensor,
    theta: torch.Tensor,
    valid: torch.Tensor | None,
    masks: torch.Tensor | None,
    aggregate: str = "max",
    mode: str = "nearest",
    *,
    image_size: tuple[int, int] | None = None,
    gradient: str = "exact",
) -> torch.Tensor:
    """Warp ``features`` once per part and aggregate the parts (``AffineTransformLayer``).

    features: (B, C, h, w), any float dtype, on any device; differentiable w.r.t. it.
    theta: (B, P, 2, 3) target->source pixel affines at FULL image resolution.
    valid: (B, P) bool; an invalid part contributes nothing (as the reference's +1000 px "no-point" shift).
        None = all valid.
    masks: (B, P, H, W) 0/1 target part masks at full resolution (a value > 0.5 counts as covered), or None
        for "no masks" (the ``warp_skip global`` variant; all ones), which then needs ``image_size`` (H, W).
    aggregate: "max" (paper) or "avg" (sum over covering parts / number of covering masks; as in the
        reference the count includes masks of invalid parts, which add 0 to the sum).
    mode: "nearest" (reference: round half away from zero) or "bilinear" (TF's floor-based bilinear).
    gradient: "exact" (the adjoint of the forward) or "tf" (TF 1.x's resampling backward, see the module
        docstring; no gradient to ``theta``). The forward is the same either way.
    Returns (B, C, h, w). All parts are warped in one batched gather (no loop over parts). Arguments are
    trusted (the generator checks its configuration once, at construction).
    """
    geo = _geometry(features, theta, valid, masks, aggregate, image_size)
    if gradient == "tf" and torch.is_grad_enabled() and features.requires_grad:
        return _TFStyleWarp.apply(features, theta.to(features.device), geo, aggregate, mode)
    return _warp(features, geo, aggregate, mode)

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
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from deformgan.errors import InputError

AGGREGATES = ("max", "avg")
MODES = ("nearest", "bilinear")

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


def deform(
    features: torch.Tensor,
    theta: torch.Tensor,
    valid: torch.Tensor | None,
    masks: torch.Tensor | None,
    aggregate: str = "max",
    mode: str = "nearest",
    *,
    image_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Warp ``features`` once per part and aggregate the parts (``AffineTransformLayer``).

    features: (B, C, h, w), any float dtype, on any device; differentiable w.r.t. it.
    theta: (B, P, 2, 3) target->source pixel affines at FULL image resolution.
    valid: (B, P) bool; an invalid part contributes nothing (as the reference's +1000 px "no-point" shift).
        None = all valid.
    masks: (B, P, H, W) 0/1 target part masks at full resolution (a value > 0.5 counts as covered), or None
        for "no masks" (the ``warp_skip full`` variant; all ones), which then needs ``image_size`` (H, W).
    aggregate: "max" (paper) or "avg" (sum over covering parts / number of covering masks; as in the
        reference the count includes masks of invalid parts, which add 0 to the sum).
    mode: "nearest" (reference: round half away from zero) or "bilinear" (TF's floor-based bilinear).
    Returns (B, C, h, w). All parts are warped in one batched gather (no loop over parts). Arguments are
    trusted (the generator checks its configuration once, at construction).
    """
    batch, channels, h, w = features.shape
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
    src_x, src_y = coords[..., 0], coords[..., 1]
    # Every out-of-range read and every uncovered pair reads the extra zero slot at index h*w.
    padded = torch.cat([features.reshape(batch, channels, pixels), features.new_zeros(batch, channels, 1)], 2)

    # Only parts covering a pixel can win there; the others add a 0. Reorder the part axis so that every
    # pixel lists its covering parts first and keep k = (most covering parts anywhere) + 1 entries: the extra
    # uncovered entry (zero slot) stands for all uncovered parts. Limb and head masks are small, so k is
    # typically 3-5 instead of 10, and the gather and the reduction shrink by as much.
    covered = covered.reshape(batch, parts, pixels)
    k = min(parts, int(covered.sum(dim=1).max()) + 1)
    order = torch.sort(covered.to(torch.uint8), dim=1, descending=True, stable=True).indices[:, :k]

    def first_k(x: torch.Tensor) -> torch.Tensor:
        return torch.gather(x.reshape(batch, parts, pixels), 1, order)

    def slot_index(ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
        ix, iy = ix.reshape(batch, parts, pixels), iy.reshape(batch, parts, pixels)
        inside = covered & (ix >= 0) & (ix <= w - 1) & (iy >= 0) & (iy <= h - 1)
        index = iy.clamp(0, h - 1).long() * w + ix.clamp(0, w - 1).long()
        return first_k(torch.where(inside, index, torch.full_like(index, pixels)))

    if mode == "nearest":
        index = slot_index(_round_half_away_from_zero(src_x), _round_half_away_from_zero(src_y))
        if aggregate == "max":
            out = _GatherMax.apply(padded, index)
        else:
            out = _gather_parts(padded, index).sum(dim=1)
    else:
        x0, y0 = torch.floor(src_x), torch.floor(src_y)
        fx, fy = (src_x - x0).to(features.dtype), (src_y - y0).to(features.dtype)
        warped = features.new_zeros(batch, k, channels, pixels)
        for dx, dy, weight in (
            (0, 0, (1 - fx) * (1 - fy)),
            (1, 0, fx * (1 - fy)),
            (0, 1, (1 - fx) * fy),
            (1, 1, fx * fy),
        ):
            corner = _gather_parts(padded, slot_index(x0 + dx, y0 + dy))
            warped = warped + corner * first_k(weight).unsqueeze(2)
        # A covered pair whose four neighbours are all outside reads 0, like the reference's zero fill.
        out = warped.amax(dim=1) if aggregate == "max" else warped.sum(dim=1)
    if aggregate == "avg":
        out = torch.where(count > 0, out / count.clamp_min(1), torch.zeros_like(out))
    return out.reshape(batch, channels, h, w)

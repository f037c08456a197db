"""The model side of the pose editor: the source-side work once per photo, then one cheap update per pose.

A generator forward (:class:`deformgan.models.generator.Generator`) is: appearance encoder on (source
image, source heatmaps) -> pose encoder on the target heatmaps -> deformable skips (each appearance skip of
stride <= 8 warped part by part, :func:`deformgan.warp.deform`) -> decoder. Only the first stage depends on
the source alone, so :meth:`EditorEngine.prepare` runs it once per (photo, source pose) and
:meth:`EditorEngine.render` runs the rest for each new target pose. The result is the generator's own
forward, bit for bit (``tests/test_editor_engine.py``).

The paper's Baseline (``warp_skip: none``) has one encoder on source and target channels together, so it
has no source-only work to reuse: :meth:`EditorEngine.render` runs its whole forward every time
(:attr:`EditorEngine.reuses_source` is False).

Explanatory overlays (:meth:`EditorEngine.render` with ``overlays=True``): the 10 target part masks
(:func:`deformgan.parts.part_masks`, what the skips are masked with) and the source image warped by the
same affines and masks as the skips (what the deformable skip connections see at full resolution), both
aggregated and part by part.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from deformgan.conditioning import PoseConditioning, conditioning_for
from deformgan.config import Config
from deformgan.errors import InputError
from deformgan.images import from_uint8, to_uint8
from deformgan.keypoints import NUM_JOINTS
from deformgan.models.generator import Generator
from deformgan.parts import PART_NAMES
from deformgan.transfer import PoseTransfer
from deformgan.warp import deform

#: One RGB colour per part in :data:`deformgan.parts.PART_NAMES` order (the torso, whose mask is the whole
#: frame in the authors' ``pose_masks``, is grey so that the limbs stand out over it).
PART_COLORS: tuple[tuple[int, int, int], ...] = (
    (128, 128, 128), (255, 215, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44),
    (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194), (23, 190, 207),
)  # fmt: skip
#: Weight of the part colours over the generated image in the masks overlay.
MASK_ALPHA = 0.6
#: Precisions of the updates while dragging (:class:`EditorEngine` ``preview``).
PRECISIONS = ("fp32", "bf16")


@dataclass
class Source:
    """The source side of one photo, computed once by :meth:`EditorEngine.prepare`.

    image: (1, 3, H, W) float in [-1, 1]; keypoints: (1, 18, 2) float (x, y) model-frame pixels, -1 =
    missing; appearance: the appearance encoder's skips (shallowest first), None for the Baseline.
    """

    image: torch.Tensor
    keypoints: torch.Tensor
    appearance: list[torch.Tensor] | None


@dataclass
class Rendering:
    """What one pose update returns.

    image: uint8 (H, W, 3) the generated person. masks: uint8 (H, W, 3) the target part masks coloured
    over the image (None unless asked for, or when the model has no part masks). warped: uint8 (H, W, 3)
    the source warped part by part and max/avg-aggregated as the skips are; parts: uint8 (10, H, W, 3) each
    part's warp alone, inside its mask (both None unless asked for, or for the Baseline).
    timings: milliseconds per stage (``conditioning``, ``pose_encoder``, ``warp_skips``, ``decoder``,
    ``overlays``, ``total``).
    """

    image: np.ndarray
    masks: np.ndarray | None = None
    warped: np.ndarray | None = None
    parts: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _keypoints(kp, name: str) -> torch.Tensor:
    array = np.asarray(kp, dtype=np.float32)
    if array.shape != (NUM_JOINTS, 2):
        raise InputError(f"{name}: expected (18, 2) keypoints in (x, y) pixels, got shape {array.shape}")
    return torch.from_numpy(array)[None]


class EditorEngine:
    """A generator (eval mode) split into its source-side and its per-pose work.

    generator: a :class:`Generator`; config: its run's config (image size, heatmaps, skip type).
    channels_last: keep the generator's weights and activations channels-last (NHWC): oneDNN then picks
    faster convolution kernels on a CPU (1.05-1.12x per update at full width,
    ``benchmarks/results/editor_latency.md``); the result equals the NCHW forward up to float rounding
    (at most one grey level). preview: the precision of :meth:`render` with ``final=False`` (the updates
    while a joint is being dragged): "fp32", or "bf16" (autocast; 1.3x per update, 1.6x in the decoder, at
    256x256 full width on a CPU with AVX-512 BF16; a few grey levels from fp32). Final renders are always
    fp32.
    """

    def __init__(
        self,
        generator: Generator,
        config: Config,
        device: str | torch.device = "cpu",
        channels_last: bool = True,
        preview: str = "fp32",
    ):
        if preview not in PRECISIONS:
            raise InputError(f"preview precision: expected one of {PRECISIONS}, got {preview!r}")
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = generator.to(self.device, memory_format=self.memory_format).eval()
        self.config = config
        self.image_size: tuple[int, int] = tuple(config.image_size)
        self.warp_skip: str = generator.warp_skip
        self.preview = preview

    @classmethod
    def from_transfer(cls, transfer: PoseTransfer, **options) -> EditorEngine:
        """The engine of a loaded :class:`PoseTransfer` (same generator object, same device); ``options``
        as :class:`EditorEngine` takes them."""
        return cls(transfer.generator, transfer.config, transfer.device, **options)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu", **options
    ) -> EditorEngine:
        """Load a run folder (its latest checkpoint) or a ``ckpt-*`` folder."""
        return cls.from_transfer(PoseTransfer.from_checkpoint(path, device), **options)

    @property
    def reuses_source(self) -> bool:
        """True when the source-side work is computed once per photo (every model but the Baseline)."""
        return self.warp_skip != "none"

    def _check_image(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        height, width = self.image_size
        if image.shape != (height, width, 3) or image.dtype != np.uint8:
            raise InputError(
                f"source image: expected uint8 ({height}, {width}, 3) (the model frame), "
                f"got {image.dtype} {image.shape}"
            )
        return image

    @torch.inference_mode()
    def prepare(self, image: np.ndarray, source_kp) -> Source:
        """The source side of a photo: uint8 (H, W, 3) image in the model frame, (18, 2) keypoints in its
        pixels (x, y), -1 = missing. Runs the appearance encoder on (image, source heatmaps) once."""
        tensor = from_uint8(self._check_image(image))[None].to(self.device)
        keypoints = _keypoints(source_kp, "source keypoints").to(self.device)
        appearance = None
        if self.reuses_source:
            heatmaps = conditioning_for(self.config, keypoints, keypoints, warp_skip="none").source_heatmaps
            inputs = torch.cat([tensor, heatmaps], dim=1).contiguous(memory_format=self.memory_format)
            # The warps gather from flat (C, H*W) views: NCHW skips need no copy per update.
            appearance = [skip.contiguous() for skip in self.generator.appearance_encoder(inputs)]
        return Source(tensor, keypoints, appearance)

    @torch.inference_mode()
    def render(self, source: Source, target_kp, overlays: bool = False, final: bool = True) -> Rendering:
        """The person of ``source`` in pose ``target_kp`` ((18, 2) (x, y) model-frame pixels, -1 = missing).

        Runs the conditioning (heatmaps, part affines and masks), the pose encoder, the deformable skips and
        the decoder; ``overlays`` also renders the part masks and the warped source (see :class:`Rendering`).
        ``final`` False: an update while dragging, in the engine's ``preview`` precision.
        """
        target = _keypoints(target_kp, "target keypoints").to(self.device)
        sync = self.device.type == "cuda"
        marks = [("start", time.perf_counter())]

        def mark(name: str) -> None:
            if sync:
                torch.cuda.synchronize(self.device)
            marks.append((name, time.perf_counter()))

        g = self.generator
        cond = conditioning_for(self.config, source.keypoints, target)
        mark("conditioning")
        low = not final and self.preview == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=low):
            if source.appearance is None:
                generated = g(source.image.contiguous(memory_format=self.memory_format), cond)
                mark("generator")
            else:
                heatmaps = cond.target_heatmaps.contiguous(memory_format=self.memory_format)
                pose = g.pose_encoder(heatmaps)
                mark("pose_encoder")
                appearance = [a.to(torch.bfloat16) for a in source.appearance] if low else source.appearance
                skips = [
                    s.contiguous(memory_format=self.memory_format)
                    for s in g.fuse_skips(appearance, pose, cond)
                ]
                mark("warp_skips")
                generated = g.decoder(skips)
                mark("decoder")
        image = to_uint8(generated)[0]
        rendering = Rendering(image)
        if overlays:
            self._overlays(rendering, source, cond)
            mark("overlays")
        rendering.timings = {
            name: 1000.0 * (t - marks[i][1]) for i, (name, t) in enumerate(marks[1:], start=0)
        } | {"total": 1000.0 * (marks[-1][1] - marks[0][1])}
        return rendering

    def _overlays(self, rendering: Rendering, source: Source, cond: PoseConditioning) -> None:
        """Target part masks over the output, and the source warped as the skips warp their features.

        The image is warped in [0, 1] (not [-1, 1]) so that "no part reads here" (0) shows black and the
        max over parts keeps the covering parts' colours, as it keeps the largest feature values.
        """
        if cond.masks is not None:
            rendering.masks = colour_masks(cond.masks[0].cpu().numpy() > 0.5, rendering.image)
        if cond.theta is None:
            return
        g = self.generator
        unit = (source.image + 1) / 2
        size = g.image_size

        def pixels(warped: torch.Tensor) -> np.ndarray:
            return to_uint8(warped * 2 - 1)

        warped = deform(unit, cond.theta, cond.valid, cond.masks, g.warp_agg, g.warp_mode, image_size=size)
        rendering.warped = pixels(warped)[0]
        if cond.masks is None:  # one global affine: the one "part" is the warp itself
            rendering.parts = rendering.warped[None]
            return
        # Part by part: a batch of P one-part warps (part p's affine, validity and mask alone).
        parts = cond.theta.shape[1]
        one = deform(
            unit.expand(parts, -1, -1, -1),
            cond.theta[0][:, None],
            cond.valid[0][:, None],
            cond.masks[0][:, None],
            g.warp_agg,
            g.warp_mode,
        )
        rendering.parts = pixels(one)


def colour_masks(masks: np.ndarray, image: np.ndarray, alpha: float = MASK_ALPHA) -> np.ndarray:
    """Part masks as colours over an image.

    masks: bool (P, H, W) in :data:`deformgan.parts.PART_NAMES` order; image: uint8 (H, W, 3). Each pixel
    takes the mean :data:`PART_COLORS` colour of the head and limb masks covering it, or the torso's
    colour where only the torso covers it (its mask is the whole frame in the authors' ``pose_masks``, so
    averaging it in would wash every other part out), blended over the image with weight ``alpha``; pixels
    no part covers keep the image. Returns uint8 (H, W, 3).
    """
    if masks.shape[0] != len(PART_NAMES):
        raise InputError(f"masks: expected {len(PART_NAMES)} parts, got {masks.shape[0]}")
    colours = np.asarray(PART_COLORS, dtype=np.float32)
    cover = masks.astype(np.float32)
    others = cover[1:].sum(0)
    mean = np.einsum("phw,pc->hwc", cover[1:], colours[1:]) / np.maximum(others, 1)[..., None]
    colour = np.where(others[..., None] > 0, mean, colours[0])
    pixels = image.astype(np.float32)
    out = np.where(cover.any(0)[..., None], alpha * colour + (1 - alpha) * pixels, pixels)
    return np.rint(out).clip(0, 255).astype(np.uint8)

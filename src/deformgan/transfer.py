"""Pose transfer for one image: re-render a person in new poses with a trained generator.

``PoseTransfer.from_checkpoint(run_or_ckpt).transfer(image, source_kp, target_kp)`` returns the person of
``image`` (keypoints ``source_kp``) in pose ``target_kp``; ``.animate(...)`` does it for a sequence of poses
and writes an animated GIF (motion transfer, as the reference ``demo.py`` does frame by frame).

Keypoints are (18, 2) in (x, y) pixels of the given image, -1 = missing (reference doc §1.1). An image of
another size than the model's is resized to it and its keypoints are scaled with it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deformgan.atomic import atomic_writer
from deformgan.conditioning import pose_conditioning
from deformgan.config import Config
from deformgan.errors import InputError
from deformgan.generate import images_to_uint8, load_generator, resolve_device
from deformgan.keypoints import MISSING, NUM_JOINTS, is_present
from deformgan.models import Generator

ImageLike = Image.Image | np.ndarray | str | os.PathLike


def _as_pil(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"{path}: image file not found")
        try:
            with Image.open(path) as opened:
                return opened.convert("RGB")
        except OSError as error:
            raise InputError(f"{path}: cannot read image ({error})") from None
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InputError(f"image: expected a uint8 (H, W, 3) RGB array, got {array.dtype} {array.shape}")
    return Image.fromarray(array)


def _as_keypoints(kp, name: str) -> torch.Tensor:
    array = np.asarray(kp, dtype=np.float32)
    if array.shape != (NUM_JOINTS, 2):
        raise InputError(f"{name}: expected (18, 2) keypoints in (x, y) pixels, got shape {array.shape}")
    return torch.from_numpy(array)


class PoseTransfer:
    """A trained generator ready to move a person into new poses (eval mode, dropout off)."""

    def __init__(self, generator: Generator, config: Config, device: str | torch.device = "cpu"):
        self.device = resolve_device(device)
        self.generator = generator.to(self.device).eval()
        self.config = config
        self.image_size: tuple[int, int] = tuple(config.model.image_size)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> PoseTransfer:
        """Load from a ``ckpt-*`` folder or a run folder (its latest checkpoint)."""
        generator, config = load_generator(path, device)
        return cls(generator, config, device)

    def _prepare(self, image: ImageLike, source_kp) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
        """(1, 3, H, W) image in [-1, 1], (18, 2) keypoints in the model frame, (x, y) scale factors."""
        pil = _as_pil(image)
        height, width = self.image_size
        scale = (width / pil.width, height / pil.height)
        if pil.size != (width, height):
            pil = pil.resize((width, height), Image.BICUBIC)
        pixels = torch.from_numpy(np.asarray(pil, dtype=np.float32)).permute(2, 0, 1)
        tensor = (pixels / 255.0 - 0.5) * 2  # the loader's mapping to [-1, 1] (reference doc §1.6)
        return tensor[None], self._scale(_as_keypoints(source_kp, "source_kp"), scale), scale

    @staticmethod
    def _scale(kp: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
        present = is_present(kp)
        scaled = (kp * torch.tensor(scale)).round()
        return torch.where(present[..., None], scaled, torch.full_like(kp, MISSING))

    @torch.no_grad()
    def _generate(self, image: torch.Tensor, source_kp: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
        """uint8 (T, H, W, 3): the image (1, 3, H, W) re-posed to each of ``targets`` (T, 18, 2)."""
        count = targets.shape[0]
        sources = source_kp[None].expand(count, -1, -1).to(self.device)
        cond = pose_conditioning(
            sources, targets.to(self.device), self.image_size, self.config.model.warp_skip
        )
        generated = self.generator(image.to(self.device).expand(count, -1, -1, -1), cond)
        return images_to_uint8(generated)

    def transfer(self, image: ImageLike, source_kp, target_kp) -> Image.Image:
        """The person of ``image`` (keypoints ``source_kp``) in pose ``target_kp``, at the model's size.

        image: PIL image, uint8 (H, W, 3) array or path. source_kp / target_kp: (18, 2) (x, y) pixels of
        the given image, -1 = missing.
        """
        tensor, source, scale = self._prepare(image, source_kp)
        target = self._scale(_as_keypoints(target_kp, "target_kp"), scale)
        return Image.fromarray(self._generate(tensor, source, target[None])[0])

    def animate(
        self,
        image: ImageLike,
        source_kp,
        target_kp_sequence: Sequence | np.ndarray,
        out_gif: str | os.PathLike,
        fps: float = 10.0,
        batch_size: int = 16,
    ) -> Path:
        """Motion transfer: write an animated GIF of the person following ``target_kp_sequence`` (T, 18, 2).

        Frames are generated in batches of ``batch_size``; the GIF loops forever. Returns the GIF path.
        """
        sequence = np.asarray(target_kp_sequence, dtype=np.float32)
        if sequence.ndim != 3 or sequence.shape[1:] != (NUM_JOINTS, 2) or len(sequence) == 0:
            raise InputError(
                f"target_kp_sequence: expected (T, 18, 2) keypoints with T >= 1, got {sequence.shape}"
            )
        if fps <= 0:
            raise InputError(f"fps: expected > 0, got {fps}")
        tensor, source, scale = self._prepare(image, source_kp)
        targets = self._scale(torch.from_numpy(sequence), scale)
        frames = [
            frame
            for start in range(0, len(targets), batch_size)
            for frame in self._generate(tensor, source, targets[start : start + batch_size])
        ]
        return save_gif(frames, out_gif, fps)


def save_gif(frames: Sequence[np.ndarray | Image.Image], path: str | os.PathLike, fps: float) -> Path:
    """Write RGB frames as a looping animated GIF, atomically (temp file + os.replace)."""
    path = Path(path)
    images = [f if isinstance(f, Image.Image) else Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    with atomic_writer(path) as handle:
        images[0].save(
            handle, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )
    return path

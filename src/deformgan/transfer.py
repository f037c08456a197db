"""Pose transfer for one image: re-render a person in new poses with a trained generator.

``PoseTransfer.from_checkpoint(run_or_ckpt).transfer(image, source_kp, target_kp)`` returns the person of
``image`` (keypoints ``source_kp``) in pose ``target_kp``; ``.animate(...)`` does it for a sequence of poses
and writes an animated GIF (motion transfer, as the reference ``demo.py`` does frame by frame).

Keypoints are (18, 2) in (x, y) pixels of the given image, -1 = missing. An image of
another size than the model's is resized to it and its keypoints are scaled with it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from deformgan.conditioning import conditioning_for
from deformgan.config import Config
from deformgan.errors import InputError
from deformgan.generate import load_generator
from deformgan.images import as_rgb_array, from_uint8, to_uint8, write_gif
from deformgan.keypoints import MISSING, NUM_JOINTS, is_present
from deformgan.models import Generator
from deformgan.runtime import resolve_device

ImageLike = Image.Image | np.ndarray | str | os.PathLike


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
        self.image_size: tuple[int, int] = config.image_size

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> PoseTransfer:
        """Load from a ``ckpt-*`` folder or a run folder (its latest checkpoint)."""
        generator, config = load_generator(path, device)
        return cls(generator, config, device)

    def _prepare(self, image: ImageLike, source_kp) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float]]:
        """(1, 3, H, W) image in [-1, 1], (18, 2) keypoints in the model frame, (x, y) scale factors."""
        pil = Image.fromarray(as_rgb_array(image))
        height, width = self.image_size
        scale = (width / pil.width, height / pil.height)
        if pil.size != (width, height):
            pil = pil.resize((width, height), Image.BICUBIC)
        tensor = from_uint8(np.asarray(pil))
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
        cond = conditioning_for(self.config, sources, targets.to(self.device))
        generated = self.generator(image.to(self.device).expand(count, -1, -1, -1), cond)
        return to_uint8(generated)

    def render(self, image: ImageLike, source_kp, targets, batch_size: int = 16) -> np.ndarray:
        """uint8 (T, H, W, 3): the person of ``image`` in each pose of ``targets`` (T, 18, 2) (x, y pixels of
        the given image, -1 = missing), generated in batches of ``batch_size``."""
        sequence = np.asarray(targets, dtype=np.float32)
        if sequence.ndim != 3 or sequence.shape[1:] != (NUM_JOINTS, 2) or len(sequence) == 0:
            raise InputError(f"targets: expected (T, 18, 2) keypoints with T >= 1, got {sequence.shape}")
        tensor, source, scale = self._prepare(image, source_kp)
        poses = self._scale(torch.from_numpy(sequence), scale)
        return np.concatenate(
            [
                self._generate(tensor, source, poses[i : i + batch_size])
                for i in range(0, len(poses), batch_size)
            ]
        )

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
        if fps <= 0:
            raise InputError(f"fps: expected > 0, got {fps}")
        return write_gif(list(self.render(image, source_kp, target_kp_sequence, batch_size)), out_gif, fps)


# ----------------------------------------------------------------------------------------------
# Users' own photos and videos (the pose estimator of deformgan.pose)


@dataclass
class Person:
    """A person framed for a model: the frame image uint8 (H, W, 3) at the model's size, its keypoints
    (18, 2) (x, y frame pixels, -1 = missing), and the photo framing (None when the image was used as is)."""

    image: np.ndarray
    keypoints: np.ndarray
    framing: object | None = None
    photo: np.ndarray | None = None


def person_from_photo(path: str | os.PathLike, size: tuple[int, int], model=None) -> Person:
    """Find and frame the person of a photo of any size (:func:`deformgan.pose.frame_person`); the pose
    model is ``deformgan.pose.BlazePose`` (fetched with ``deformgan weights pose``)."""
    from deformgan.images import read_image
    from deformgan.pose import frame_person

    photo = read_image(path)
    framed = frame_person(photo, size, model, where=str(path))
    return Person(framed.image, framed.keypoints, framed.framing, photo)


def poses_from_video(
    path: str | os.PathLike, size: tuple[int, int], fps: float | None = None, model=None
) -> tuple[np.ndarray, np.ndarray, float]:
    """The person of a video (or a folder of frames) followed frame by frame: (driving frames framed like
    the model's crops uint8 (T, H, W, 3), their keypoints (T, 18, 2) smoothed and gap-filled, fps)."""
    from deformgan.pose import frame_sequence, read_frames

    frames = read_frames(path)
    rate = fps or frames.fps
    if rate is None:
        raise InputError(f"{path}: a folder of frames has no frame rate; pass --fps")
    framed = frame_sequence(frames.images, size, rate, model)
    return np.stack(framed.images), np.asarray(framed.keypoints), rate


def side_by_side(*columns: np.ndarray, scale: int = 2) -> list[np.ndarray]:
    """Frames of several (T, H, W, 3) uint8 sequences placed side by side, enlarged ``scale`` times
    (nearest, so pixels stay visible)."""
    strips = np.concatenate(columns, axis=2)
    return [np.kron(frame, np.ones((scale, scale, 1), np.uint8)) for frame in strips]


def skeleton_frames(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, 18, 2) keypoints -> uint8 (T, H, W, 3) skeleton drawings on black."""
    from deformgan.keypoints import draw_skeleton

    return np.stack([draw_skeleton(kp, size, radius=2, thickness=2) for kp in keypoints])

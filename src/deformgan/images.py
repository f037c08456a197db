"""Images in and out: the one [-1, 1] <-> uint8 conversion, the one file reader, the one writer.

Conventions: network tensors are float (B, 3, H, W) RGB in [-1, 1] = (I / 255 - 0.5) * 2, the mapping of
the authors' data loader (``pose_dataset.py``); files and metrics use uint8 (H, W, 3) RGB arrays.

:func:`read_image` decodes every file completely (a truncated PNG or JPEG is an error here, not hours
into a run) and turns every image mode Pillow opens into 8-bit RGB, or refuses it in one line:

- EXIF orientation is applied (as OpenCV's ``imread``, which annotated the keypoints, does);
- 16-bit grey (``I;16*``) is scaled to 8 bits (Pillow's own ``convert("RGB")`` clips it: all white);
- palette, grey, CMYK, YCbCr, LAB, HSV are converted; transparent images (RGBA, LA, PA, palette with
  transparency) are composited over white;
- 32-bit integer and float images are refused (their range is not defined).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from deformgan.atomic import atomic_writer, default_mode
from deformgan.errors import InputError

#: Suffixes :func:`write_image` knows, with the format Pillow writes.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
#: Suffixes treated as image files when listing folders.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
#: Quantisation of :func:`to_uint8`: "round" (deformgan's default) or "truncate" (the authors' code wrote
#: images with ``((x + 1) * 127.5).astype(np.uint8)``, which truncates).
QUANTISATIONS = ("round", "truncate")


def to_uint8(images: torch.Tensor, quantisation: str = "round") -> np.ndarray:
    """(B, 3, H, W) float in [-1, 1] -> uint8 (B, H, W, 3) on the CPU; inverse of :func:`from_uint8`.

    ``quantisation`` "round" maps ``(x + 1) * 127.5`` to the nearest integer, "truncate" drops the
    fraction as the authors' ``test.py`` did (on average 0.5 grey levels darker).
    """
    pixels = (images.detach().float().clamp(-1, 1) + 1) * 127.5
    pixels = pixels.round() if quantisation == "round" else pixels.floor()
    return pixels.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1] = (I / 255 - 0.5) * 2 (the authors'
    loader mapping)."""
    array = np.ascontiguousarray(pixels)
    if not array.flags.writeable:  # e.g. np.asarray(PIL image): torch wants memory it may own
        array = array.copy()
    tensor = torch.from_numpy(array).movedim(-1, -3).to(torch.float32)
    return (tensor / 255.0 - 0.5) * 2.0


def _to_rgb(image: Image.Image, path: Path | str) -> np.ndarray:
    mode = image.mode
    if mode.startswith("I;16"):
        wide = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode in ("I", "F"):
        raise InputError(
            f"{path}: {'32-bit integer' if mode == 'I' else 'floating-point'} images are not supported "
            "(expected an 8- or 16-bit image)"
        )
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"))
    try:
        return np.array(image.convert("RGB"))
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: cannot convert a {mode} image to RGB ({error})") from None


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as uint8 (H, W, 3) RGB, fully decoded, EXIF orientation applied.

    size: expected (H, W), checked after decoding (no silent resizing: keypoints live in the file's
    pixel frame). Raises :class:`InputError` naming the file for a missing, unreadable, truncated or
    unsupported file, or a size mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    try:
        with Image.open(path) as opened:
            opened.load()  # decode everything now: a truncated file fails here
            image = ImageOps.exif_transpose(opened)
            pixels = _to_rgb(image, path)
    except InputError:
        raise
    except Image.DecompressionBombError as error:
        raise InputError(f"{path}: image too large to decode safely ({error})") from None
    except (OSError, ValueError, SyntaxError) as error:  # Pillow's decoders raise these for bad bytes
        raise InputError(f"{path}: cannot read image ({error})") from None
    if size is not None and pixels.shape[:2] != tuple(size):
        raise InputError(
            f"{path}: expected a {size[0]}x{size[1]} (HxW) image, got {pixels.shape[0]}x{pixels.shape[1]}"
        )
    return pixels


def as_rgb_array(image: Image.Image | np.ndarray | str | os.PathLike, name: str = "image") -> np.ndarray:
    """A PIL image, a uint8 (H, W, 3) array or a file path -> uint8 (H, W, 3) RGB (public-API boundary)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(image), name)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InputError(f"{name}: expected a uint8 (H, W, 3) RGB array, got {array.dtype} {array.shape}")
    return array


def write_image(pixels: np.ndarray | Image.Image, path: str | os.PathLike) -> Path:
    """Write an RGB uint8 (H, W, 3) array or PIL image atomically, in the format its suffix names
    (.png, .jpg, .jpeg); any other suffix is an :class:`InputError`."""
    path = Path(path)
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{path}: unknown image type {path.suffix!r} (expected one of {', '.join(IMAGE_FORMATS)})"
        )
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(np.ascontiguousarray(pixels))
    options = {"quality": 95} if fmt == "JPEG" else {}
    with atomic_writer(path) as handle:
        image.save(handle, format=fmt, **options)
    return path


def write_gif(frames: Sequence[np.ndarray | Image.Image], path: str | os.PathLike, fps: float) -> Path:
    """Write RGB frames as a looping animated GIF, atomically."""
    path = Path(path)
    images = [f if isinstance(f, Image.Image) else Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    with atomic_writer(path) as handle:
        images[0].save(
            handle, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
        )
    return path


VIDEO_FORMATS = (".gif", ".mp4")


def write_video(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float) -> Path:
    """Write RGB uint8 frames as an animated GIF (looping) or an MP4 (OpenCV's mp4v codec), atomically;
    the suffix chooses. Any other suffix is an :class:`InputError`."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return write_gif(frames, path, fps)
    if suffix != ".mp4":
        raise InputError(
            f"{path}: unknown video type {path.suffix!r} (expected one of {', '.join(VIDEO_FORMATS)})"
        )
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp.mp4")
    os.close(fd)
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
        if not writer.isOpened():
            raise InputError(f"{path}: OpenCV cannot write MP4 here (use .gif)")
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
        writer.release()
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder`` (by suffix, not recursive), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

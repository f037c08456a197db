"""Image I/O: the [-1, 1] <-> uint8 conversion, every image mode read correctly or refused, the writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deformgan.errors import InputError
from deformgan.images import as_rgb_array, from_uint8, read_image, to_uint8, write_gif, write_image


def test_to_uint8_rounds_or_truncates_and_inverts_from_uint8():
    images = torch.tensor([-1.0, 1.0, 0.0, -0.5, 0.999]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    # (x + 1) * 127.5 = 0, 255, 127.5, 63.75, 254.87: rounded (half to even) 0, 255, 128, 64, 255;
    # truncated as the authors' ``astype(np.uint8)`` 0, 255, 127, 63, 254.
    assert to_uint8(images)[0, 0, :, 0].tolist() == [0, 255, 128, 64, 255]
    assert to_uint8(images, "truncate")[0, 0, :, 0].tolist() == [0, 255, 127, 63, 254]
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)[..., None].repeat(3, -1)
    tensor = from_uint8(pixels)
    assert tensor.shape == (3, 16, 16) and tensor.min() == -1 and tensor.max() == 1
    assert np.array_equal(to_uint8(tensor[None])[0], pixels)  # exact inverse on every grey level


def _save(path: Path, image: Image.Image, **options) -> Path:
    image.save(path, **options)
    return path


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path: Path):
    """Pillow's own convert('RGB') clips 16-bit grey to white; 65535 / 257 = 255 and 257 * 100 -> 100."""
    wide = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    path = _save(tmp_path / "g16.png", Image.fromarray(wide))
    assert Image.open(path).mode.startswith("I;16")
    assert read_image(path)[0, :, 0].tolist() == [0, 100, 255]


def test_palette_grey_cmyk_and_transparency(tmp_path: Path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (200, 10, 30)
    palette = _save(tmp_path / "p.png", Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE))
    assert read_image(palette)[0, 0].tolist() == [200, 10, 30]
    grey = _save(tmp_path / "l.png", Image.fromarray(np.full((2, 2), 77, np.uint8)))
    assert read_image(grey)[1, 1].tolist() == [77, 77, 77]
    cmyk = _save(tmp_path / "c.jpg", Image.new("CMYK", (4, 4), (0, 0, 0, 0)))
    assert (np.abs(read_image(cmyk).astype(int) - 255) <= 1).all()  # no ink = white
    # Transparent pixels are composited over white; opaque ones keep their colour.
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 1] = (10, 20, 30, 255)
    path = _save(tmp_path / "a.png", Image.fromarray(rgba, "RGBA"))
    assert read_image(path)[0].tolist() == [[255, 255, 255], [10, 20, 30]]
    la = _save(tmp_path / "la.png", Image.fromarray(np.array([[[50, 0], [50, 255]]], np.uint8), "LA"))
    assert read_image(la)[0].tolist() == [[255, 255, 255], [50, 50, 50]]


def test_exif_orientation_is_applied(tmp_path: Path):
    """EXIF orientation 6 = 'rotate 90 CW to display': a 2x4 (HxW) file is shown 4x2 with the first
    row's pixels down the right-hand column."""
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path / "r.jpg", Image.fromarray(pixels), exif=exif, quality=100)
    shown = read_image(path)
    assert shown.shape == (4, 2, 3)
    assert shown[:, 1].mean() > 200 and shown[:, 0].mean() < 50


def test_unreadable_files_are_one_line_errors(tmp_path: Path):
    good = _save(tmp_path / "x.png", Image.fromarray(np.zeros((32, 32, 3), np.uint8) + 100))
    truncated = tmp_path / "t.png"
    truncated.write_bytes(good.read_bytes()[:-30])
    noise = tmp_path / "n.jpg"
    noise.write_bytes(b"\xff\xd8" + bytes(range(256)) * 4)
    floats = _save(tmp_path / "f.tif", Image.fromarray(np.zeros((2, 2), np.float32)))
    for path, fragment in (
        (truncated, "cannot read image"),
        (noise, "cannot read image"),
        (floats, "floating-point images are not supported"),
        (tmp_path / "absent.png", "image file not found"),
    ):
        with pytest.raises(InputError, match=fragment) as error:
            read_image(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(InputError, match="expected a 16x8 \\(HxW\\) image, got 32x32"):
        read_image(good, (16, 8))


def test_write_image_takes_the_format_from_the_suffix(tmp_path: Path):
    pixels = np.random.default_rng(0).integers(0, 256, (8, 4, 3), dtype=np.uint8)
    for name, fmt in (("a.png", "PNG"), ("b.jpg", "JPEG"), ("c.JPEG", "JPEG")):
        path = write_image(pixels, tmp_path / name)
        assert Image.open(path).format == fmt
    assert np.array_equal(read_image(tmp_path / "a.png"), pixels)  # PNG is lossless
    with pytest.raises(InputError, match="unknown image type '.gif'"):
        write_image(pixels, tmp_path / "d.gif")
    gif = write_gif([pixels, 255 - pixels], tmp_path / "m.gif", fps=5)
    assert Image.open(gif).n_frames == 2


def test_as_rgb_array_checks_arrays():
    assert as_rgb_array(np.zeros((2, 2, 3), np.uint8)).shape == (2, 2, 3)
    assert as_rgb_array(Image.new("L", (3, 2), 9))[0, 0].tolist() == [9, 9, 9]
    with pytest.raises(InputError, match="uint8 \\(H, W, 3\\)"):
        as_rgb_array(np.zeros((2, 2), np.float32))

"""Composing figures from uint8 (H, W, 3) RGB tiles: skeleton overlays, labelled grids, text.

Used by the comparison figures (rows of pairs; columns conditioning image, target with its pose, one per
method, as in the paper's supplementary material) and the failure pages. Text is drawn with Pillow's
bundled font (no system fonts needed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from deformgan.keypoints import draw_skeleton

WHITE = 255
GAP = 2


def skeleton_size(frame: tuple[int, int]) -> tuple[int, int]:
    """(thickness, joint radius) in pixels for a frame: 1/2 px at Market size, 2/3 px from 256 rows."""
    return (1, 2) if frame[0] < 256 else (2, 3)


def overlay_skeleton(image: np.ndarray, kp: np.ndarray | None, x_offset: int = 0) -> np.ndarray:
    """The image with the pose drawn over it (``draw_skeleton``'s anti-aliased colours, alpha-blended).

    image: uint8 (H, W, 3); kp: (18, 2) (x, y) pixels in the annotation frame, -1 = missing; ``x_offset``
    columns are subtracted from present joints first (256x176 crops). None returns the image unchanged.
    """
    if kp is None:
        return image
    kp = np.asarray(kp, dtype=np.float64).copy()
    present = (kp[:, 0] != -1) & (kp[:, 1] != -1)
    kp[present, 0] -= x_offset
    kp[~present] = -1
    thickness, radius = skeleton_size(image.shape[:2])
    skeleton = draw_skeleton(
        np.round(kp).astype(np.int64), image.shape[:2], radius=radius, thickness=thickness
    )
    alpha = skeleton.max(axis=-1, keepdims=True).astype(np.float32) / 255.0
    # draw_skeleton paints value * colour on black, so colour = skeleton / alpha: blend = (1-a) I + a colour.
    blended = image.astype(np.float32) * (1.0 - alpha) + skeleton.astype(np.float32)
    return blended.clip(0, 255).round().astype(np.uint8)


def skeleton_tile(kp: np.ndarray | None, frame: tuple[int, int], x_offset: int = 0) -> np.ndarray:
    """The pose alone, drawn on black (H, W, 3); a black tile for None."""
    return overlay_skeleton(np.zeros((*frame, 3), np.uint8), kp, x_offset)


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor (pixels stay visible, nothing is invented)."""
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def text_tile(
    text: str, width: int, height: int, size: int = 12, color: tuple[int, int, int] = (0, 0, 0)
) -> np.ndarray:
    """``text`` centred on white, shrunk (down to 7 px) or cut with an ellipsis until it fits ``width``."""
    canvas = Image.new("RGB", (width, height), (WHITE, WHITE, WHITE))
    draw = ImageDraw.Draw(canvas)
    shown = text
    font = _font(size)
    while size > 7 and draw.textlength(shown, font=font) > width - 4:
        size -= 1
        font = _font(size)
    while len(shown) > 1 and draw.textlength(shown, font=font) > width - 4:
        shown = shown[:-2] + "…"
    left, top, right, bottom = draw.textbbox((0, 0), shown, font=font)
    draw.text(
        ((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top),
        shown,
        fill=color,
        font=font,
    )
    return np.asarray(canvas)


def grid(
    rows: Sequence[Sequence[np.ndarray]],
    column_labels: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    cell_labels: Sequence[Sequence[str]] | None = None,
    scale: int = 1,
    gap: int = GAP,
    label_height: int = 18,
    label_size: int = 11,
) -> np.ndarray:
    """Tiles (all of one size) in rows and columns on white -> uint8 image, with optional labels.

    column_labels go above the first row; cell_labels (per row, per column; "" for none) under each
    tile; row_labels as one line across, under each row; ``label_size``: font size in px.
    """
    if not rows or not rows[0]:
        raise ValueError("grid: no tiles")
    tile_h, tile_w = rows[0][0].shape[:2]
    height, width = tile_h * scale, tile_w * scale
    ncols = max(len(r) for r in rows)
    total_w = ncols * width + (ncols + 1) * gap
    parts = []

    def label_band(labels: Sequence[str], size: int, color: tuple[int, int, int]) -> np.ndarray:
        band = np.full((label_height, total_w, 3), WHITE, np.uint8)
        for c, label in enumerate(labels):
            x = gap + c * (width + gap)
            band[:, x : x + width] = text_tile(label, width, label_height, size=size, color=color)
        return band

    if column_labels is not None:
        parts.append(label_band(column_labels, label_size + 1, (0, 0, 0)))
    for r, row in enumerate(rows):
        band = np.full((height + 2 * gap, total_w, 3), WHITE, np.uint8)
        for c, tile in enumerate(row):
            if tile.shape[:2] != (tile_h, tile_w):
                raise ValueError(f"grid: tile {r},{c} is {tile.shape[:2]}, expected {(tile_h, tile_w)}")
            x = gap + c * (width + gap)
            band[gap : gap + height, x : x + width] = upscale(tile, scale)
        parts.append(band)
        if cell_labels is not None:
            parts.append(label_band(cell_labels[r], label_size, (30, 30, 30)))
        if row_labels is not None:
            line = text_tile(
                row_labels[r], total_w, label_height - 2, size=label_size - 1, color=(90, 90, 90)
            )
            parts.append(line)
    return np.concatenate(parts, axis=0)


def hstack(tiles: Sequence[np.ndarray], gap: int = GAP) -> np.ndarray:
    """Tiles of one height side by side with white gaps."""
    height = tiles[0].shape[0]
    spacer = np.full((height, gap, 3), WHITE, np.uint8)
    parts = []
    for i, tile in enumerate(tiles):
        if i:
            parts.append(spacer)
        parts.append(tile)
    return np.concatenate(parts, axis=1)

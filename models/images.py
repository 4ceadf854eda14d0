"""Image conversion helpers shared by training and serving (numpy + pillow only)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_PNG_CHANNELS = (1, 3)  # PIL mode L and RGB
DEFAULT_PNG_LEVEL = 6  # zlib's default, which Pillow uses when given none


def to_uint8_nhwc(x: np.ndarray) -> np.ndarray:
    """Convert float NCHW images in [-1, 1] to uint8 NHWC (values outside are clipped)."""
    pixels = np.rint((np.asarray(x, dtype=np.float32) + 1.0) * 127.5)
    return np.clip(pixels, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)


def to_unit_nchw(images: np.ndarray) -> np.ndarray:
    """Convert uint8 NHWC images to float32 NCHW in [-1, 1] (inverse of `to_uint8_nhwc`)."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, H, W, C), got {images.dtype} {images.shape}")
    return (images.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)


def encode_png(img: np.ndarray, compress_level: int = DEFAULT_PNG_LEVEL) -> bytes:
    """Encode one uint8 (H, W, C) image, C in {1, 3}, as PNG; equal pixels give equal bytes.

    Args:
        compress_level: zlib level 0-9 (1 encodes several times faster than 6, a little larger).
    """
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] not in _PNG_CHANNELS:
        raise ValueError(f"expected uint8 (H, W, 1|3), got {img.dtype} {img.shape}")
    pixels = img[:, :, 0] if img.shape[2] == 1 else img  # 2-D uint8 becomes mode L
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(
        buf, format="PNG", compress_level=compress_level
    )
    return buf.getvalue()


def image_grid(images: np.ndarray, ncols: int, pad: int = 2) -> np.ndarray:
    """Tile uint8 (N, H, W, C) images row-major into one (H', W', C) image with black padding.

    Returns:
        uint8 array of height rows * (H + pad) + pad and width ncols * (W + pad) + pad,
        where rows = ceil(N / ncols).
    """
    n, h, w, c = images.shape
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    rows = -(-n // ncols)
    grid = np.zeros((rows * (h + pad) + pad, ncols * (w + pad) + pad, c), dtype=np.uint8)
    for i, image in enumerate(images):
        top = pad + (i // ncols) * (h + pad)
        left = pad + (i % ncols) * (w + pad)
        grid[top : top + h, left : left + w] = image
    return grid


def class_grid(
    images: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    ncols: int,
    *,
    scale: int = 1,
    captions: bool = False,
) -> np.ndarray:
    """A grid of uint8 (N, H, W, C) images, each class starting a new row (images grouped by
    class, in order), tiles enlarged `scale` times (nearest neighbour), and with `captions`
    each class's name left of its first row."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    blocks, starts = [], []  # one grid per class; the row each starts at
    for label in dict.fromkeys(labels.tolist()):
        starts.append((label, sum(block.shape[0] for block in blocks)))
        block = image_grid(images[labels == label], ncols)
        blocks.append(block[:-2] if len(blocks) < len(set(labels.tolist())) - 1 else block)
    grid = np.concatenate(blocks)
    if not captions:
        return grid
    font = ImageFont.load_default()
    width = 6 + max(int(font.getlength(names[label])) for label, _ in starts)
    page = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    canvas = Image.new(page.mode, (page.width + width, page.height))
    canvas.paste(page, (width, 0))
    draw, white = ImageDraw.Draw(canvas), 255 if page.mode == "L" else (255, 255, 255)
    tile = images.shape[1]
    for label, top in starts:
        draw.text((3, top + 2 + tile // 2), names[label], fill=white, font=font, anchor="lm")
    pixels = np.asarray(canvas)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels

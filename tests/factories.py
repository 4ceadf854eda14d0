"""Tiny datasets the tests build themselves: classes of simple shapes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from training.dataset import StoredDataset

SHAPES = ("circle", "square", "triangle")


def shape_image(shape: str, size: int, rng: np.random.Generator, mode: str = "L") -> Image.Image:
    """A filled shape on black, jittered in position and scale."""
    image = Image.new(mode, (size, size), 0)
    draw = ImageDraw.Draw(image)
    r = size * rng.uniform(0.25, 0.4)
    cx, cy = size / 2 + rng.uniform(-1.5, 1.5), size / 2 + rng.uniform(-1.5, 1.5)
    fill = 255 if mode == "L" else (255, int(rng.integers(100, 255)), 80)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return image


def shapes_arrays(
    per_class: int = 12, size: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = [
        np.asarray(shape_image(shape, size, rng)) for shape in SHAPES for _ in range(per_class)
    ]
    labels = np.repeat(np.arange(len(SHAPES)), per_class)
    return np.stack(images).astype(np.uint8), labels.astype(np.int64)


def store_dataset(
    directory: Path, x: np.ndarray, y: np.ndarray, classes: list[str] | tuple[str, ...] = SHAPES
) -> Path:
    """Store uint8 images (N, S, S) or (N, S, S, C) as ingestion would; returns directory."""
    x = x[..., None] if x.ndim == 3 else x
    StoredDataset.save(directory, x, y, classes=list(classes), source_format="npz")
    return directory


def shapes_zip_bytes(per_class: int = 12, size: int = 16, seed: int = 0, top: str = "") -> bytes:
    """A zip of `<class>/<n>.png` (optionally under one top folder)."""
    x, y = shapes_arrays(per_class, size, seed)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            archive.writestr(f"{top}{SHAPES[label]}/{i:03d}.png", png.getvalue())
    return buffer.getvalue()


def write_shapes_zip(path: Path, **kwargs: int) -> Path:
    path.write_bytes(shapes_zip_bytes(**kwargs))
    return path

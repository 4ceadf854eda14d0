"""Synthetic samples and augmented-dataset archives from an exported generator (no torch)."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from models.images import encode_png, image_grid
from models.sampler import GeneratorSampler
from models.truncation import sample_latents

CHUNK = 128  # images generated and zipped at a time: archive memory stays flat


@dataclass(frozen=True)
class SampleRequest:
    class_indices: list[int]  # classes to draw, each `n` times
    n: int
    truncation: float | None
    truncation_mode: str
    seed: int


@lru_cache(maxsize=4)
def load_sampler(model_dir: str) -> GeneratorSampler:
    """One ONNX Runtime session per model directory, kept for later requests."""
    return GeneratorSampler(Path(model_dir))


def generate(sampler: GeneratorSampler, req: SampleRequest) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 (N, H, W, C) and labels int64 (N,), deterministic for the request."""
    rng = np.random.default_rng(req.seed)
    z_dim = sampler.manifest.z_dim
    latents = [
        sample_latents(rng, req.n, z_dim, truncation=req.truncation, mode=req.truncation_mode)
        for _ in req.class_indices
    ]
    labels = np.repeat(np.asarray(req.class_indices, dtype=np.int64), req.n)
    images = sampler.generate(labels, np.concatenate(latents).astype(np.float32))
    return images, labels


def render(images: np.ndarray, labels: np.ndarray, names: list[str], fmt: str, n: int) -> bytes:
    """Encode generated images as one grid PNG, one PNG, a zip of PNGs or an npz."""
    if fmt == "grid":
        return encode_png(image_grid(images, ncols=min(n, 16)))
    if fmt == "png":
        return encode_png(images[0])
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, x=images, y=labels, classes=np.asarray(names))
        return buffer.getvalue()
    buffer = io.BytesIO()
    folders = folder_names(names)
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            archive.writestr(_entry(f"{folders[label]}/sample_{i:05d}.png"), encode_png(image))
    return buffer.getvalue()


def folder_names(names: list[str]) -> list[str]:
    """Safe, unique zip folder names for class names (no separators, no leading dots)."""
    folders: list[str] = []
    for index, name in enumerate(names):
        folder = re.sub(r"[^\w.\- ]", "_", name).strip(". ") or f"class_{index}"
        folders.append(folder if folder not in folders else f"{folder}_{index}")
    return folders


@dataclass(frozen=True)
class ArchiveRequest:
    per_class: int
    truncation: float | None
    truncation_mode: str
    seed: int
    include_real: bool


class _Spool(io.RawIOBase):
    """A write-only byte sink the zip writer fills and the response drains."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible bytes
    info.external_attr = 0o644 << 16
    return info


def stream_archive(
    sampler: GeneratorSampler, dataset_dir: Path, model_id: str, req: ArchiveRequest
) -> Iterator[bytes]:
    """Yield an ImageFolder zip: <class>/real_*.png, <class>/synthetic_*.png, manifest.json."""
    names = sampler.manifest.classes
    folders = folder_names(names)
    x = np.load(dataset_dir / "x.npy", mmap_mode="r") if req.include_real else None
    y = np.load(dataset_dir / "y.npy") if req.include_real else None
    spool = _Spool()
    counts: dict[str, dict[str, int]] = {}
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, folder in enumerate(folders):
            real = np.flatnonzero(y == index) if y is not None else np.empty(0, dtype=np.int64)
            for j, row in enumerate(real):
                archive.writestr(_entry(f"{folder}/real_{j:05d}.png"), encode_png(np.asarray(x[row])))
                if j % CHUNK == CHUNK - 1:
                    yield spool.drain()
            rng = np.random.default_rng([req.seed, index])
            for start in range(0, req.per_class, CHUNK):
                count = min(CHUNK, req.per_class - start)
                z = sample_latents(
                    rng, count, sampler.manifest.z_dim,
                    truncation=req.truncation, mode=req.truncation_mode,
                )
                images = sampler.generate(np.full(count, index, dtype=np.int64), z)
                for k, image in enumerate(images):
                    archive.writestr(_entry(f"{folder}/synthetic_{start + k:05d}.png"), encode_png(image))
                yield spool.drain()
            counts[names[index]] = {"real": int(real.size), "synthetic": req.per_class}
        manifest = {
            "model_id": model_id,
            "truncation": req.truncation,
            "truncation_mode": req.truncation_mode,
            "seed": req.seed,
            "include_real": req.include_real,
            "classes": [{"index": i, "name": n, "folder": f} for i, (n, f) in enumerate(zip(names, folders, strict=True))],
            "counts": counts,
        }
        archive.writestr(_entry("manifest.json"), json.dumps(manifest, indent=2))
    yield spool.drain()

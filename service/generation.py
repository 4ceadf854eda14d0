"""Synthetic samples and augmented-dataset archives from an exported generator (no torch)."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from models.artifact import ARCHIVE_LABELS_FILE, SOFT_LABELS_FILE, Manifest, Recipe
from models.drawing import CHUNK, DrawSpec, FilterExhausted, draw_class
from models.evaluator import EVALUATOR_FILE, EvaluatorScorer
from models.image_classifier import ImageClassifier
from models.images import class_grid, encode_png
from models.manifold import ClassManifold
from models.sampler import GeneratorSampler
from training.dataset import StoredDataset


@lru_cache(maxsize=8)
def _sampler(model_dir: str, _manifest_version: int) -> GeneratorSampler:
    return GeneratorSampler(Path(model_dir))


def load_sampler(model_dir: Path) -> GeneratorSampler:
    """One ONNX Runtime session per model, reloaded when its manifest changes (the report)."""
    return _sampler(str(model_dir), Manifest.path(model_dir).stat().st_mtime_ns)


@lru_cache(maxsize=8)
def _scorer(model_dir: str, _versions: tuple[int, int]) -> EvaluatorScorer:
    return EvaluatorScorer(Path(model_dir))


def load_scorer(model_dir: Path) -> EvaluatorScorer | None:
    """The model's evaluator (written by the quality report), or None before the report;
    reloaded when the report rewrites the evaluator or its class manifold."""
    path, manifold = model_dir / EVALUATOR_FILE, ClassManifold.path(model_dir)
    if not path.exists():
        return None
    versions = (path.stat().st_mtime_ns, manifold.stat().st_mtime_ns if manifold.exists() else 0)
    return _scorer(str(model_dir), versions)


@lru_cache(maxsize=16)
def _classifier(path: str, _version: int) -> ImageClassifier:
    return ImageClassifier(Path(path))


def load_classifier(path: Path) -> ImageClassifier:
    """One ONNX Runtime session per image-classifier graph (classifier.onnx, evaluator.onnx,
    soft_labels.onnx), reloaded when the file changes (a new report)."""
    return _classifier(str(path), path.stat().st_mtime_ns)


def load_soft_labeller(model_dir: Path) -> ImageClassifier | None:
    """The report's soft labeller (soft_labels.onnx), or None: no report yet, or one made
    before soft labels existed."""
    path = model_dir / SOFT_LABELS_FILE
    return load_classifier(path) if path.is_file() else None


def soft_labels(
    labeller: ImageClassifier | None, images: np.ndarray, labels: np.ndarray, num_classes: int
) -> np.ndarray:
    """float32 (N, K) targets of synthetic images: the labeller's probabilities, or the
    one-hot labels they were drawn for when there is no labeller."""
    if labeller is None:
        return one_hot(labels, num_classes)
    return labeller.probs(images)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """float32 (N, K) one-hot rows of int labels (N,)."""
    return np.eye(num_classes, dtype=np.float32)[labels]


def generate(
    sampler: GeneratorSampler,
    scorer: EvaluatorScorer | None,
    class_indices: list[int],
    n: int,
    seed: int,
    draw: DrawSpec,
) -> tuple[np.ndarray, np.ndarray]:
    """`n` images of each class: uint8 (N, H, W, C) and labels int64 (N,), deterministic."""
    images = [
        batch
        for index in class_indices
        for batch in draw_class(sampler, index, n, seed, draw, scorer)
    ]
    labels = np.repeat(np.asarray(class_indices, dtype=np.int64), n)
    return np.concatenate(images), labels


def render(
    images: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    fmt: str,
    n: int,
    labeller: ImageClassifier | None = None,
    *,
    scale: int = 1,
    captions: bool = False,
) -> bytes:
    """Encode generated images as one grid PNG (each class from a new row; tiles enlarged
    `scale` times, class names at the left with `captions`), one PNG, a zip of PNGs or an
    npz (x, y, classes, and p: the soft labels, one-hot without a labeller)."""
    if fmt == "grid":
        grid = class_grid(images, labels, names, min(n, 16), scale=scale, captions=captions)
        return encode_png(grid)
    if fmt == "png":
        return encode_png(images[0])
    if fmt == "npz":
        p = soft_labels(labeller, images, labels, len(names))
        buffer = io.BytesIO()
        np.savez(buffer, x=images, y=labels, classes=np.asarray(names), p=p)
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
    synthetic_counts: list[int]  # per class
    draw: DrawSpec
    seed: int
    include_real: bool
    recipe: Recipe | None = None  # the recommended recipe, when it chose the counts


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


class _LabelRows:
    """labels.csv, filled as images are written: one row per image, in archive order."""

    def __init__(self, names: list[str]):
        self.names = names
        self._text = io.StringIO()
        self._writer = csv.writer(self._text, lineterminator="\n")
        self._writer.writerow(["file", "class", "kind", *(f"p_{name}" for name in names)])

    def add(self, file: str, class_index: int, kind: str, probs: np.ndarray) -> None:
        p = [format(float(v), ".7g") for v in probs]  # float32 precision
        self._writer.writerow([file, self.names[class_index], kind, *p])

    def encode(self) -> bytes:
        return self._text.getvalue().encode()


def stream_archive(
    sampler: GeneratorSampler,
    scorer: EvaluatorScorer | None,
    dataset_dir: Path,
    model_id: str,
    req: ArchiveRequest,
    labeller: ImageClassifier | None = None,
) -> Iterator[bytes]:
    """Yield an ImageFolder zip: <class>/real_*.png, <class>/synthetic_*.png, labels.csv
    (real rows one-hot, synthetic rows the labeller's probabilities, one-hot without one)
    and manifest.json."""
    names = sampler.manifest.classes
    folders = folder_names(names)
    real_targets = one_hot(np.arange(len(names)), len(names))  # row c: class c's target
    if req.include_real:
        stored = StoredDataset.load(dataset_dir)
        x, y = stored.x, stored.labels_of_model(sampler.model_dir)
    else:
        x, y = np.empty((0, 1, 1, 1), np.uint8), np.empty(0, np.int64)
    spool, rows = _Spool(), _LabelRows(names)
    counts: dict[str, dict[str, int]] = {}
    error: str | None = None
    with zipfile.ZipFile(spool, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, folder in enumerate(folders):
            real = np.flatnonzero(y == index)
            for j, row in enumerate(real):
                name = f"{folder}/real_{j:05d}.png"
                archive.writestr(_entry(name), encode_png(np.asarray(x[row])))
                rows.add(name, index, "real", real_targets[index])
                if j % CHUNK == CHUNK - 1:
                    yield spool.drain()
            written = 0
            chunks = draw_class(
                sampler, index, req.synthetic_counts[index], req.seed, req.draw, scorer
            )
            try:
                for images in chunks:
                    labels = np.full(len(images), index)
                    probs = soft_labels(labeller, images, labels, len(names))
                    for image, p in zip(images, probs, strict=True):
                        name = f"{folder}/synthetic_{written:05d}.png"
                        archive.writestr(_entry(name), encode_png(image))
                        rows.add(name, index, "synthetic", p)
                        written += 1
                    yield spool.drain()
            except FilterExhausted as exc:  # headers are sent: say so in the manifest instead
                error = f"class {names[index]}: {exc}"
            counts[names[index]] = {"real": int(real.size), "synthetic": written}
            if error:
                break
        manifest = {
            "model_id": model_id,
            "seed": req.seed,
            "include_real": req.include_real,
            **req.draw.describe(),
            "recipe": req.recipe.model_dump(mode="json") if req.recipe else None,
            "classes": [
                {"index": i, "name": n, "folder": f}
                for i, (n, f) in enumerate(zip(names, folders, strict=True))
            ],
            "counts": counts,
            "labels_file": ARCHIVE_LABELS_FILE,
            "soft_labels": labeller is not None,
            "complete": error is None,
            "error": error,
        }
        archive.writestr(_entry(ARCHIVE_LABELS_FILE), rows.encode())
        archive.writestr(_entry("manifest.json"), json.dumps(manifest, indent=2))
    yield spool.drain()

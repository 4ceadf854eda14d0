"""Synthetic samples and augmented-dataset archives from an exported generator (no torch)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from models.artifact import ARCHIVE_LABELS_FILE, SOFT_LABELS_FILE, Manifest, Recipe
from models.drawing import CHUNK, DrawSpec, FilterExhausted, class_latents, draw_class
from models.evaluator import EVALUATOR_FILE, EvaluatorScorer
from models.image_classifier import ImageClassifier
from models.images import DEFAULT_PNG_LEVEL, class_grid, encode_png
from models.manifold import ClassManifold
from models.sampler import GeneratorSampler
from service.telemetry import record_provider
from service.zipstream import ZipStream
from training.dataset import StoredDataset


@lru_cache(maxsize=8)
def _sampler(
    model_dir: str, _manifest_version: int, threads: int, spinning: bool
) -> GeneratorSampler:
    sampler = GeneratorSampler(Path(model_dir), threads=threads or None, spinning=spinning)
    record_provider("generator", sampler.providers)
    return sampler


def load_sampler(model_dir: Path, threads: int = 0, spinning: bool = False) -> GeneratorSampler:
    """One ONNX Runtime session per model, reloaded when its manifest changes (the report).

    Args:
        threads, spinning: the session's intra-op threads (0: the sampler's default) and
            spinning (settings ort_threads, ort_spinning).
    """
    version = Manifest.path(model_dir).stat().st_mtime_ns
    return _sampler(str(model_dir), version, threads, spinning)


@lru_cache(maxsize=8)
def _scorer(model_dir: str, _versions: tuple[int, int]) -> EvaluatorScorer:
    scorer = EvaluatorScorer(Path(model_dir))
    record_provider("evaluator", scorer.providers)
    return scorer


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
    classifier = ImageClassifier(Path(path))
    record_provider(Path(path).stem, classifier.providers)  # classifier, evaluator, soft_labels
    return classifier


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


def sample_latents(
    z_dim: int, class_indices: list[int], n: int, seed: int, draw: DrawSpec
) -> tuple[np.ndarray, np.ndarray]:
    """The labels int64 (N,) and latents float32 (N, z_dim) `generate` would generate for a
    draw without a filter, to be generated elsewhere (dynamic batching) with equal bytes."""
    latents = [class_latents(z_dim, index, n, seed, draw) for index in class_indices]
    labels = np.repeat(np.asarray(class_indices, dtype=np.int64), n)
    return labels, np.concatenate(latents)


def render(
    images: np.ndarray,
    labels: np.ndarray,
    names: list[str],
    fmt: str,
    n: int,
    labeller: ImageClassifier | None = None,
    png_level: int = DEFAULT_PNG_LEVEL,
    *,
    scale: int = 1,
    captions: bool = False,
) -> Iterator[bytes]:
    """Encode generated images as one grid PNG (each class from a new row; tiles enlarged
    `scale` times, class names at the left with `captions`), one PNG, a zip of PNGs or an
    npz (x, y, classes, and p: the soft labels, one-hot without a labeller), a part at a
    time (an image of the zip, an array of the npz)."""
    if fmt == "grid":
        grid = class_grid(images, labels, names, min(n, 16), scale=scale, captions=captions)
        yield encode_png(grid, png_level)
        return
    if fmt == "png":
        yield encode_png(images[0], png_level)
        return
    archive = ZipStream()
    if fmt == "npz":
        p = soft_labels(labeller, images, labels, len(names))
        for key, array in (("x", images), ("y", labels), ("classes", np.asarray(names)), ("p", p)):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            yield archive.add(f"{key}.npy", buffer.getvalue())
    else:
        folders = folder_names(names)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield archive.add(f"{folders[label]}/sample_{i:05d}.png", encode_png(image, png_level))
    yield from archive.finish()


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
    png_level: int = DEFAULT_PNG_LEVEL,
) -> Iterator[bytes]:
    """Yield an ImageFolder zip: <class>/real_*.png, <class>/synthetic_*.png, labels.csv
    (real rows one-hot, synthetic rows the labeller's probabilities, one-hot without one)
    and manifest.json, about CHUNK images at a time. Memory stays flat: ZipStream keeps ~50
    bytes per member, labels.csv a row."""
    names = sampler.manifest.classes
    folders = folder_names(names)
    real_targets = one_hot(np.arange(len(names)), len(names))  # row c: class c's target
    if req.include_real:
        stored = StoredDataset.load(dataset_dir)
        x, y = stored.x, stored.labels_of_model(sampler.model_dir)
    else:
        x, y = np.empty((0, 1, 1, 1), np.uint8), np.empty(0, np.int64)
    archive, rows = ZipStream(), _LabelRows(names)
    counts: dict[str, dict[str, int]] = {}
    error: str | None = None
    for index, folder in enumerate(folders):
        real = np.flatnonzero(y == index)
        for start in range(0, real.size, CHUNK):
            parts = []
            for j, row in enumerate(real[start : start + CHUNK], start):
                name = f"{folder}/real_{j:05d}.png"
                parts.append(archive.add(name, encode_png(np.asarray(x[row]), png_level)))
                rows.add(name, index, "real", real_targets[index])
            yield b"".join(parts)
        written = 0
        chunks = draw_class(sampler, index, req.synthetic_counts[index], req.seed, req.draw, scorer)
        try:
            for images in chunks:
                labels = np.full(len(images), index)
                probs = soft_labels(labeller, images, labels, len(names))
                parts = []
                for image, p in zip(images, probs, strict=True):
                    name = f"{folder}/synthetic_{written:05d}.png"
                    parts.append(archive.add(name, encode_png(image, png_level)))
                    rows.add(name, index, "synthetic", p)
                    written += 1
                yield b"".join(parts)
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
    yield archive.add(ARCHIVE_LABELS_FILE, rows.encode())
    yield archive.add("manifest.json", json.dumps(manifest, indent=2).encode())
    yield from archive.finish()

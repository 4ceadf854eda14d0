"""The stored dataset: one directory per dataset, written and read only by `StoredDataset`.

- ``x.npy``  uint8 (N, S, S, C), C in {1, 3}, S the square training size
- ``y.npy``  int64 (N,), class indices into the class names (sorted at ingestion; a rename
  keeps their order); absent from an unlabelled dataset
- ``dataset.json``  `DatasetInfo`: classes, per-class counts, image shape, N, source
  format, labelled (false: no y.npy, no classes; only vcagan trains on it)

numpy only (the gateway imports it); uploads become stored datasets in `service.ingest`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from models.artifact import Manifest, atomic_write_bytes

X_FILE = "x.npy"  # uint8 (N, S, S, C), C in {1, 3}
Y_FILE = "y.npy"  # int64 (N,), indices into the sorted class names
INFO_FILE = "dataset.json"  # DatasetInfo


@dataclass(frozen=True)
class DatasetInfo:
    num_images: int
    classes: list[str]
    counts: list[int]
    height: int
    width: int
    channels: int
    source_format: str  # "zip", "tar", "npz", or "model" (labelled by a vcagan model)
    labelled: bool = True  # False: no labels (y.npy absent, no classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        return self.height, self.width, self.channels

    def to_json(self) -> dict:
        """The content of dataset.json."""
        return {
            "classes": self.classes,
            "counts": self.counts,
            "image": {"height": self.height, "width": self.width, "channels": self.channels},
            "num_images": self.num_images,
            "source_format": self.source_format,
            "labelled": self.labelled,
        }

    @classmethod
    def from_json(cls, data: dict) -> DatasetInfo:
        image = data["image"]
        return cls(
            num_images=data["num_images"],
            classes=list(data["classes"]),
            counts=list(data["counts"]),
            height=image["height"],
            width=image["width"],
            channels=image["channels"],
            source_format=data["source_format"],
            labelled=data.get("labelled", True),
        )


class StoredDataset:
    """A dataset directory (x.npy, y.npy, dataset.json): the one reader and writer of it.

    `StoredDataset.save(directory, x, y, ...)` writes one whole; `StoredDataset.writing`
    lets ingestion fill x row by row; `StoredDataset.load(directory)` opens one with x
    memory-mapped and checks that its files agree; `rename_classes` renames in place.
    """

    def __init__(self, directory: Path, info: DatasetInfo, x: np.ndarray, y: np.ndarray | None):
        self.directory = Path(directory)
        self.info = info
        self.x = x  # uint8 (N, S, S, C), memory-mapped when loaded
        self.y = y  # int64 (N,); None when the dataset is unlabelled

    @property
    def labelled(self) -> bool:
        return self.info.labelled

    def labels_of_model(self, model_dir: Path) -> np.ndarray:
        """int64 (N,) indices into the classes of a model trained on this dataset: the
        clusters its vcagan classifier assigned (clusters.npy), else the dataset's labels."""
        clusters = Manifest.load(model_dir).clusters
        if clusters is not None:
            labels = np.load(Path(model_dir) / clusters.assignments_file).astype(np.int64)
            if labels.shape != (len(self),):
                raise ValueError(f"{clusters.assignments_file} does not cover the dataset")
            return labels
        if self.y is None:
            raise ValueError("an unlabelled dataset has no labels; only vcagan models assign them")
        return self.y

    @property
    def classes(self) -> list[str]:
        return self.info.classes

    @property
    def counts(self) -> list[int]:
        return self.info.counts

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(S, S, C)."""
        return self.info.image_shape

    def __len__(self) -> int:
        return self.info.num_images

    @classmethod
    def load(cls, directory: Path) -> StoredDataset:
        """Open a stored dataset; ValueError when x, y and dataset.json disagree."""
        directory = Path(directory)
        info = DatasetInfo.from_json(json.loads((directory / INFO_FILE).read_text()))
        x = np.load(directory / X_FILE, mmap_mode="r")
        y = np.load(directory / Y_FILE).astype(np.int64, copy=False) if info.labelled else None
        _check_stored(info, x, y)
        return cls(directory, info, x, y)

    @classmethod
    def save(
        cls,
        directory: Path,
        x: np.ndarray,
        y: np.ndarray | None,
        *,
        classes: list[str],
        source_format: str,
    ) -> StoredDataset:
        """Store uint8 images x (N, S, S, C) with labels y indexing classes (y None and no
        classes: an unlabelled dataset)."""
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"x has shape {x.shape}; expected (N, S, S, C)")
        shape = (x.shape[1], x.shape[2], x.shape[3])
        with cls.writing(
            directory,
            y,
            classes=classes,
            image_shape=shape,
            source_format=source_format,
            num_images=len(x),
        ) as out:
            out[:] = x
        return cls.load(directory)

    @classmethod
    def rename_classes(cls, directory: Path, names: list[str]) -> StoredDataset:
        """Give a labelled dataset's classes new names, in the same order (y is unchanged)."""
        dataset = cls.load(directory)
        if not dataset.labelled or len(names) != len(dataset.classes):
            raise ValueError(f"expected {len(dataset.classes)} class names, got {len(names)}")
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"class names {names} must be distinct and non-empty")
        info = replace(dataset.info, classes=list(names))
        text = json.dumps(info.to_json(), indent=2) + "\n"
        atomic_write_bytes(Path(directory) / INFO_FILE, text.encode())
        return cls.load(directory)

    @classmethod
    @contextmanager
    def writing(
        cls,
        directory: Path,
        y: np.ndarray | None,
        *,
        classes: list[str],
        image_shape: tuple[int, int, int],
        source_format: str,
        num_images: int | None = None,
    ) -> Iterator[np.ndarray]:
        """Yield x (N, *image_shape) uint8, memory-mapped, to fill; directory (which must not
        exist) appears with all its files when the block succeeds, or not at all.

        y None (with `num_images` and no classes) writes an unlabelled dataset."""
        if y is None:
            if num_images is None or classes:
                raise ValueError("an unlabelled dataset needs num_images and no classes")
            n, counts = num_images, []
        else:
            y = np.asarray(y, dtype=np.int64)
            n = len(y)
            _check_labels(y, n, len(classes))
            counts = np.bincount(y, minlength=len(classes)).tolist()
        height, width, channels = image_shape
        info = DatasetInfo(
            n, list(classes), counts, height, width, channels, source_format, y is not None
        )
        with _staging_dir(Path(directory)) as staging:
            x = npy_format.open_memmap(
                staging / X_FILE, mode="w+", dtype=np.uint8, shape=(n, *image_shape)
            )
            yield x
            x.flush()
            del x  # unmap before the directory is renamed
            if y is not None:
                np.save(staging / Y_FILE, y)
            (staging / INFO_FILE).write_text(json.dumps(info.to_json(), indent=2) + "\n")


def _check_stored(info: DatasetInfo, x: np.ndarray, y: np.ndarray | None) -> None:
    expected = info.image_shape
    if x.ndim != 4 or x.shape[1:] != expected or info.height != info.width or x.dtype != np.uint8:
        raise ValueError(
            f"{X_FILE} has dtype {x.dtype} and shape {x.shape}; "
            f"expected uint8 (N, S, S, C) = (N, *{expected})"
        )
    if len(x) != info.num_images or len(info.counts) != len(info.classes):
        raise ValueError(f"{INFO_FILE} does not describe the {len(x)} images of {X_FILE}")
    if y is not None:
        _check_labels(y, len(x), len(info.classes))
    elif info.classes:
        raise ValueError(f"{INFO_FILE} names classes of an unlabelled dataset")


def _check_labels(y: np.ndarray, num_images: int, num_classes: int) -> None:
    if y.shape != (num_images,) or (y.size and (y.min() < 0 or y.max() >= num_classes)):
        raise ValueError(f"{Y_FILE} must hold {num_images} labels in 0..{num_classes - 1}")


@contextmanager
def _staging_dir(dest_dir: Path) -> Iterator[Path]:
    """Yield a directory beside dest_dir that becomes dest_dir only if the block succeeds."""
    if dest_dir.exists():
        raise FileExistsError(f"dataset directory {dest_dir} already exists")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.", dir=dest_dir.parent))
    try:
        yield staging
        os.rename(staging, dest_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

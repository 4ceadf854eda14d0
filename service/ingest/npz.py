"""The .npz readers: arrays checked before any data is read, never unpickled."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format
from PIL import Image

from service.ingest.archives import checked_zip_entries
from service.ingest.errors import (
    ErrorKind,
    IngestError,
    IngestLimits,
    image_too_large,
    too_many_images,
)
from service.ingest.images import to_training_image
from service.ingest.upload import Source, UploadedImages, reading, rewound, upload_size


def _npz_invalid(message: str) -> IngestError:
    return IngestError(ErrorKind.NPZ_INVALID, message)


def _npz_array(archive: zipfile.ZipFile, key: str) -> np.ndarray | None:
    """Load one array, refusing object arrays (they need pickle) before reading any data."""
    if f"{key}.npy" not in archive.namelist():
        return None
    with archive.open(f"{key}.npy") as stream:
        try:
            version = npy_format.read_magic(stream)
            if version == (1, 0):
                _, _, dtype = npy_format.read_array_header_1_0(stream)
            else:
                _, _, dtype = npy_format.read_array_header_2_0(stream)
            if dtype.hasobject:
                message = (
                    f"array '{key}' holds Python objects, which need pickle and are refused; "
                    "save numbers or fixed-width strings (e.g. np.array(names, dtype=str))"
                )
                raise IngestError(ErrorKind.NPZ_PICKLE, message)
            stream.seek(0)
            return npy_format.read_array(stream, allow_pickle=False)
        except IngestError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise _npz_invalid(f"array '{key}' could not be read ({exc}); save it again") from exc


def _npz_arrays(
    upload: BinaryIO, filename: str, limits: IngestLimits, keys: tuple[str, ...]
) -> list[np.ndarray | None]:
    compressed = upload_size(upload)
    with reading(filename), zipfile.ZipFile(rewound(upload)) as archive:
        checked_zip_entries(archive, compressed, limits)
        return [_npz_array(archive, key) for key in keys]


def _load_npz(
    upload: BinaryIO, filename: str, limits: IngestLimits
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    x, y, names = _npz_arrays(upload, filename, limits, ("x", "y", "classes"))
    if x is None:
        raise _npz_invalid(
            f"'{filename}' needs an array 'x' (images) and, for labelled data, 'y' (labels); "
            "save it with np.savez(path, x=images[, y=labels[, classes=names]])"
        )
    if y is None and names is not None:
        raise _npz_invalid(f"'{filename}' names classes but has no labels 'y'; add y")
    return x, y, names


def _check_npz_images(x: np.ndarray, limits: IngestLimits) -> None:
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3)):
        raise _npz_invalid(
            f"x has dtype {x.dtype} and shape {x.shape}; expected uint8 with shape "
            "(N, H, W) or (N, H, W, C) where C is 1 (gray) or 3 (RGB)"
        )
    if x.shape[1] * x.shape[2] > limits.max_image_pixels:
        raise image_too_large("x", f"{x.shape[2]}x{x.shape[1]} pixels per image")


def _check_npz_arrays(x: np.ndarray, y: np.ndarray, limits: IngestLimits) -> None:
    _check_npz_images(x, limits)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise _npz_invalid(f"y has dtype {y.dtype} and shape {y.shape}; expected integers (N,)")
    if len(x) != len(y):
        message = f"x has {len(x)} images but y has {len(y)} labels; give one label per image"
        raise IngestError(ErrorKind.NPZ_LENGTH_MISMATCH, message)
    if len(x) == 0:
        raise IngestError(
            ErrorKind.EMPTY_DATASET, "x and y are empty; add at least two classes of images"
        )


def _npz_labels(y: np.ndarray, names: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
    """Class names sorted and y remapped to index them."""
    if names is None:
        values = np.unique(y)
        return np.searchsorted(values, y).astype(np.int64), [str(v) for v in values.tolist()]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise _npz_invalid(f"classes has dtype {names.dtype}; expected a 1-D array of strings")
    given = [n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist()]
    if len(set(given)) != len(given) or not all(given):
        raise _npz_invalid(f"classes {given} has duplicate or empty names; name each class once")
    if y.min() < 0 or y.max() >= len(given):
        raise _npz_invalid(
            f"y holds values from {y.min()} to {y.max()} but classes has {len(given)} names; "
            f"y must index into classes (0 to {len(given) - 1})"
        )
    counts = np.bincount(y, minlength=len(given))
    unused = [name for name, count in zip(given, counts, strict=True) if count == 0]
    if unused:
        raise _npz_invalid(f"classes {unused} have no images; drop them or add images")
    classes = sorted(given)
    new_index = np.array([classes.index(name) for name in given], dtype=np.int64)
    return new_index[y], classes


def read_npz(upload: BinaryIO, filename: str, limits: IngestLimits) -> Source:
    """An npz with x and y (labelled), or x alone (unlabelled)."""
    x, y, names = _load_npz(upload, filename, limits)
    labels: np.ndarray | None = None
    classes: list[str] = []
    if y is None:
        _check_npz_images(x, limits)
        if len(x) == 0:
            raise IngestError(ErrorKind.EMPTY_DATASET, "x is empty; add images")
    else:
        _check_npz_arrays(x, y, limits)
        labels, classes = _npz_labels(y, names)
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]  # (N, H, W): the shape Pillow takes for gray

    def images(size: int, channels: int) -> Iterator[tuple[int | slice, np.ndarray]]:
        return _npz_training_images(x, size, channels)

    return Source(labels, classes, [max(x.shape[1:3])], x.ndim == 3, images, len(x))


def _npz_training_images(
    x: np.ndarray, size: int, channels: int
) -> Iterator[tuple[int | slice, np.ndarray]]:
    """(rows, pixels) of checked npz images at (size, size, channels); gray x is (N, H, W)."""
    if x.shape[1:3] == (size, size) and x.ndim == (3 if channels == 1 else 4):
        yield slice(None), x.reshape(len(x), size, size, channels)  # already training shape
        return
    for row, image in enumerate(x):
        yield row, to_training_image(Image.fromarray(image), size, channels)


def npz_images(
    upload: BinaryIO,
    filename: str,
    size: int,
    channels: int,
    max_images: int,
    limits: IngestLimits,
) -> UploadedImages:
    (x,) = _npz_arrays(upload, filename, limits, ("x",))
    if x is None:
        raise _npz_invalid(f"'{filename}' needs an array 'x' of images; save it with x=images")
    _check_npz_images(x, limits)
    if len(x) == 0:
        raise IngestError(ErrorKind.EMPTY_DATASET, "x holds no images")
    if len(x) > max_images:
        raise too_many_images(max_images)
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    out = np.empty((len(x), size, size, channels), np.uint8)
    for rows, images in _npz_training_images(x, size, channels):
        out[rows] = images
    return UploadedImages([f"x[{i}]" for i in range(len(x))], out)

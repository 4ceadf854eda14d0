"""Dataset ingestion: an uploaded archive or .npz, read in place, becomes a StoredDataset.

Uploads (recognised by content; the filename is only used in messages):
- zip, tar or tar.gz of ``<class>/<image>`` or ``<top>/<class>/<image>``; png, jpg, jpeg, bmp,
  webp images. OS junk (``__MACOSX/``, hidden ``.*``, ``Thumbs.db``) is skipped; any other
  file is an error.
- .npz with ``x`` uint8 (N, H, W) or (N, H, W, C), C in {1, 3}, ``y`` integers (N,) and an
  optional ``classes`` string array that ``y`` indexes into.

Every image becomes S x S x C uint8. S is ``image_size``, else the most common longest side
when it lies in [min_size, max_size], else ``default_size``. Non-square images lose the ends
of their longer side (centre crop to a square, then resize: the same as scaling the shorter
side to S); LANCZOS shrinks, BICUBIC enlarges. C is ``channels``, else 1 when every image is
grayscale (palette images count as colour), else 3. Transparent pixels are composited onto
black, since the colour stored under them is arbitrary; 16-bit gray keeps its top 8 bits.

Class names are sorted and ``y`` indexes them (npz labels without ``classes`` are named after
their values, in numeric order). Archives are read in memory one member at a time, never
extracted; member count, sizes and compression ratios are checked from the headers, the byte
total again while reading. dest_dir appears complete or not at all.

`read_images` reads images to classify the same way (one image, a zip or tar of images in
any folders, or an .npz with ``x``) at a model's size and channels.

Errors carry an `ErrorKind` (the stable code users see), never an HTTP status: the
gateway maps kinds to statuses (`service.errors.INGEST_STATUS`). No torch here.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format
from PIL import Image, ImageOps

from training.dataset import DatasetInfo, StoredDataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")  # the only decoders untrusted bytes may reach
_JUNK_DIRS = frozenset({"__macosx"})
_JUNK_FILES = frozenset({"thumbs.db", "desktop.ini"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # first entry, or an empty archive
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM")  # png, jpeg, bmp (webp: RIFF)
_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")
_READ_CHUNK = 1 << 20
_LAYOUT_HELP = (
    "expected one folder per class, <class>/<image> or <top>/<class>/<image>, "
    "e.g. cats/001.png and dogs/001.png"
)
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)


@dataclass(frozen=True)
class IngestLimits:
    max_members: int = 50_000  # archive entries, folders and junk included
    max_uncompressed_bytes: int = 2 * 1024**3
    max_compression_ratio: float = 200.0  # per zip member and for the whole archive
    ratio_floor_bytes: int = 1 << 20  # ratios are judged once this much expands
    max_image_pixels: int = 4096 * 4096  # per image, checked from its header
    min_size: int = 8  # native size kept when in [min_size, max_size]
    max_size: int = 128
    default_size: int = 64  # otherwise images are resized to this


class ErrorKind(StrEnum):
    """What is wrong with an upload; the value is the error code users see."""

    INVALID_OPTION = "invalid_option"
    UNSUPPORTED_FORMAT = "unsupported_format"
    CORRUPT_ARCHIVE = "corrupt_archive"
    UNSAFE_PATH = "unsafe_path"
    UNSAFE_MEMBER = "unsafe_member"
    TOO_MANY_MEMBERS = "too_many_members"
    ARCHIVE_TOO_LARGE = "archive_too_large"
    COMPRESSION_RATIO = "compression_ratio"
    CORRUPT_IMAGE = "corrupt_image"
    IMAGE_TOO_LARGE = "image_too_large"
    EMPTY_DATASET = "empty_dataset"
    BAD_LAYOUT = "bad_layout"
    SINGLE_CLASS = "single_class"
    NPZ_INVALID = "npz_invalid"
    NPZ_PICKLE = "npz_pickle"
    NPZ_LENGTH_MISMATCH = "npz_length_mismatch"
    TOO_MANY_IMAGES = "too_many_images"


class IngestError(Exception):
    """A problem with the uploaded dataset that its owner can fix."""

    def __init__(self, kind: ErrorKind, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def ingest(
    upload: BinaryIO,
    filename: str,
    dest_dir: Path,
    *,
    limits: IngestLimits = IngestLimits(),
    image_size: int | None = None,  # square training size; None picks the native size
    channels: int | None = None,  # 1 or 3; None picks 1 only when every image is gray
) -> DatasetInfo:
    """Validate an uploaded dataset and store it in dest_dir (which must not exist).

    upload is a seekable binary file (the request's spooled file, read in place, never copied).
    Raises IngestError (kind, message) for anything wrong with the upload;
    on any error neither dest_dir nor a temporary directory is left behind.
    """
    dest_dir = Path(dest_dir)
    _check_options(image_size, channels, limits)
    source_format = _detect_format(upload, filename)
    if source_format == "npz":
        source = _read_npz(upload, filename, limits)
    else:
        source = _read_archive(upload, filename, source_format, limits)
    _check_class_count(source.classes)
    size = image_size or _native_size(source.longest_sides, limits)
    channels = channels or (1 if source.gray else 3)
    with StoredDataset.writing(
        dest_dir,
        source.labels,
        classes=source.classes,
        image_shape=(size, size, channels),
        source_format=source_format,
    ) as x:
        for rows, images in source.images(size, channels):
            x[rows] = images
    return StoredDataset.load(dest_dir).info


@dataclass(frozen=True)
class _Source:
    """What a format reader found; ``images`` yields (rows, pixels) at a chosen size."""

    labels: np.ndarray  # int64 (N,), indices into classes
    classes: list[str]  # sorted
    longest_sides: list[int]
    gray: bool  # every image is grayscale
    images: Callable[[int, int], Iterator[tuple[int | slice, np.ndarray]]]


def _check_options(image_size: int | None, channels: int | None, limits: IngestLimits) -> None:
    low, high = limits.min_size, limits.max_size
    if image_size is not None and not low <= image_size <= high:
        message = (
            f"image_size {image_size} is out of range; choose {low} to {high} or leave it unset"
        )
        raise IngestError(ErrorKind.INVALID_OPTION, message)
    if channels not in (None, 1, 3):
        message = f"channels {channels} is not supported; choose 1 (gray) or 3 (RGB)"
        raise IngestError(ErrorKind.INVALID_OPTION, message)


def _rewound(upload: BinaryIO) -> BinaryIO:
    """The upload at its start: each reader and each pass reads it from the beginning."""
    upload.seek(0)
    return upload


def _size(upload: BinaryIO) -> int:
    return upload.seek(0, os.SEEK_END)


def _detect_format(upload: BinaryIO, filename: str) -> str:
    magic = _rewound(upload).read(4)
    if magic in _ZIP_MAGIC:
        with _reading(filename), zipfile.ZipFile(_rewound(upload)) as archive:
            names = archive.namelist()
        is_npz = names and all(n.endswith(".npy") and "/" not in n for n in names)
        return "npz" if is_npz else "zip"
    try:
        with tarfile.open(
            fileobj=_rewound(upload), mode="r:*"
        ):  # plain, gzip, bz2 or xz; tar has no magic at offset 0
            return "tar"
    except _ARCHIVE_ERRORS:
        message = (
            f"'{filename}' is not a zip, tar, tar.gz or .npz file; upload a zip or tar(.gz) "
            "of class folders, or an .npz with arrays x and y"
        )
        raise IngestError(ErrorKind.UNSUPPORTED_FORMAT, message) from None


@contextmanager
def _reading(filename: str) -> Iterator[None]:
    """Report damage found while reading the archive as corrupt_archive."""
    try:
        yield
    except _ARCHIVE_ERRORS as exc:
        message = f"'{filename}' is damaged or truncated ({exc}); create it again"
        raise IngestError(ErrorKind.CORRUPT_ARCHIVE, message) from exc


# --- archive members -------------------------------------------------------------------

_Members = Iterator[tuple[str, bytes]]  # (normalised path, content) of regular, non-junk files


def _safe_path(name: str) -> str:
    """The member's path, normalised; names that could escape a folder are refused."""
    unified = name.replace("\\", "/")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if unified.startswith("/") or _DRIVE_LETTER.match(unified) or ".." in parts:
        raise IngestError(
            ErrorKind.UNSAFE_PATH,
            f"member '{name}' has an absolute path, a drive letter or '..'; "
            "archive paths must be relative, like cats/001.png",
        )
    return "/".join(parts)


def _is_junk(path: str) -> bool:
    parts = path.split("/")
    return (
        any(p.startswith(".") or p.lower() in _JUNK_DIRS for p in parts)
        or parts[-1].lower() in _JUNK_FILES
    )


def _unsafe_member(name: str, kind: str) -> IngestError:
    message = f"member '{name}' is a {kind}; archives may hold only folders and regular files"
    return IngestError(ErrorKind.UNSAFE_MEMBER, message)


def _check_totals(declared: int, compressed: int, limits: IngestLimits) -> None:
    if declared > limits.max_uncompressed_bytes:
        raise _too_large(limits)
    if _ratio_exceeded(declared, compressed, limits):
        raise IngestError(
            ErrorKind.COMPRESSION_RATIO,
            f"the archive expands more than {limits.max_compression_ratio:g} times its size, "
            "which looks like a zip bomb; upload ordinary image files",
        )


def _ratio_exceeded(expanded: int, compressed: int, limits: IngestLimits) -> bool:
    big_enough = expanded > limits.ratio_floor_bytes  # tiny members cannot be bombs
    return big_enough and expanded > limits.max_compression_ratio * max(compressed, 1)


def _read_bounded(stream, budget: int, limits: IngestLimits) -> bytes:
    """Read a member whole, failing as soon as it passes the remaining byte budget."""
    data = bytearray()
    while chunk := stream.read(min(_READ_CHUNK, budget - len(data) + 1)):
        data += chunk
        if len(data) > budget:
            raise _too_large(limits)
    return bytes(data)


def _checked_zip_entries(
    archive: zipfile.ZipFile, compressed: int, limits: IngestLimits
) -> list[tuple[zipfile.ZipInfo, str]]:
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise _too_many_members(limits)
    entries = []
    for info in infos:
        path = _safe_path(info.filename)
        file_type = stat.S_IFMT(info.external_attr >> 16)  # 0: no Unix mode recorded
        if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
            kind = "symbolic link" if file_type == stat.S_IFLNK else "special file"
            raise _unsafe_member(info.filename, kind)
        if info.flag_bits & 0x1:
            raise IngestError(
                ErrorKind.UNSUPPORTED_FORMAT,
                f"member '{info.filename}' is encrypted; upload an archive without a password",
            )
        if _ratio_exceeded(info.file_size, info.compress_size, limits):
            raise IngestError(
                ErrorKind.COMPRESSION_RATIO,
                f"member '{info.filename}' expands more than "
                f"{limits.max_compression_ratio:g} times, which looks like a zip bomb",
            )
        entries.append((info, path))
    _check_totals(sum(info.file_size for info in infos), compressed, limits)
    return entries


def _too_many_members(limits: IngestLimits) -> IngestError:
    message = f"the archive has more than {limits.max_members} entries; upload fewer files"
    return IngestError(ErrorKind.TOO_MANY_MEMBERS, message)


def _too_large(limits: IngestLimits) -> IngestError:
    limit = limits.max_uncompressed_bytes
    message = f"the archive expands to more than {limit} bytes; upload fewer or smaller images"
    return IngestError(ErrorKind.ARCHIVE_TOO_LARGE, message)


def _zip_members(upload: BinaryIO, filename: str, limits: IngestLimits) -> _Members:
    compressed = _size(upload)
    with _reading(filename), zipfile.ZipFile(_rewound(upload)) as archive:
        budget = limits.max_uncompressed_bytes
        for info, path in _checked_zip_entries(archive, compressed, limits):
            if info.is_dir() or not path or _is_junk(path):
                continue
            with archive.open(info) as stream:
                data = _read_bounded(stream, budget, limits)
            budget -= len(data)
            yield path, data


def _tar_members(upload: BinaryIO, filename: str, limits: IngestLimits) -> _Members:
    compressed, declared = _size(upload), 0
    budget = limits.max_uncompressed_bytes
    with _reading(filename), tarfile.open(fileobj=_rewound(upload), mode="r:*") as archive:
        for count, member in enumerate(archive, start=1):
            if count > limits.max_members:
                raise _too_many_members(limits)
            path = _safe_path(member.name)
            if not (member.isfile() or member.isdir()):
                kind = "link" if member.issym() or member.islnk() else "device or special file"
                raise _unsafe_member(member.name, kind)
            if member.isdir():
                continue
            declared += member.size
            _check_totals(declared, compressed, limits)
            if not path or _is_junk(path):
                continue
            data = _read_bounded(archive.extractfile(member), budget, limits)
            budget -= len(data)
            yield path, data


# --- images ------------------------------------------------------------------------------


@contextmanager
def _decoding(path: str) -> Iterator[None]:
    """Turn decoder failures on untrusted bytes into IngestErrors naming the member."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except IngestError:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise _image_too_large(path, str(exc)) from exc
        except Exception as exc:  # decoders raise many types on malformed input
            raise IngestError(
                ErrorKind.CORRUPT_IMAGE,
                f"'{path}' could not be decoded as an image ({exc}); "
                "replace it with a valid png, jpg, bmp or webp file or remove it",
            ) from exc


def _image_too_large(path: str, detail: str) -> IngestError:
    message = f"'{path}' is too large ({detail}); downscale it before uploading"
    return IngestError(ErrorKind.IMAGE_TOO_LARGE, message)


def _open_image(path: str, data: bytes, limits: IngestLimits) -> Image.Image:
    """Open (not decode) an image, refusing ones over the pixel cap from the header."""
    image = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    if image.width * image.height > limits.max_image_pixels:
        detail = f"{image.width}x{image.height} pixels, limit {limits.max_image_pixels}"
        raise _image_too_large(path, detail)
    return image


def _require_image_name(path: str) -> None:
    if not path.lower().endswith(IMAGE_EXTENSIONS):
        raise IngestError(
            ErrorKind.CORRUPT_IMAGE,
            f"'{path}' is not an image; only {', '.join(IMAGE_EXTENSIONS)} files are "
            "accepted, remove it from the archive",
        )


def _probe(path: str, data: bytes, limits: IngestLimits) -> tuple[int, bool]:
    """(longest side, is grayscale) of an image member, from its header."""
    _require_image_name(path)
    with _decoding(path), _open_image(path, data, limits) as image:
        return max(image.size), image.mode in _GRAY_MODES


def _decode(path: str, data: bytes, size: int, channels: int, limits: IngestLimits) -> np.ndarray:
    with _decoding(path), _open_image(path, data, limits) as image:
        image.draft(image.mode, (size, size))  # JPEG: decode at a reduced scale when possible
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # phone photos are stored rotated
        return _to_training_image(image, size, channels)


def _to_training_image(image: Image.Image, size: int, channels: int) -> np.ndarray:
    """Convert and resize one image to (size, size, channels) uint8."""
    if image.mode in _WIDE_GRAY_MODES:
        wide = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        image = Image.fromarray((wide >> 8).astype(np.uint8))
    if image.has_transparency_data:
        black = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(black, image.convert("RGBA"))
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        method = Image.Resampling.LANCZOS if min(image.size) > size else Image.Resampling.BICUBIC
        image = ImageOps.fit(image, (size, size), method=method)
    return np.asarray(image, dtype=np.uint8).reshape(size, size, channels)


# --- archives ----------------------------------------------------------------------------


def _class_of_each(paths: list[str], filename: str) -> dict[str, str]:
    """Map each image path to its class folder, dropping one shared top folder if present."""
    if not paths:
        raise IngestError(ErrorKind.EMPTY_DATASET, f"'{filename}' holds no images; {_LAYOUT_HELP}")
    parts = {path: path.split("/") for path in paths}
    if len({p[0] for p in parts.values()}) == 1 and any(len(p) > 2 for p in parts.values()):
        parts = {path: p[1:] for path, p in parts.items()}
    for path, p in parts.items():
        if len(p) != 2:
            where = "is not inside a class folder" if len(p) < 2 else "is nested too deeply"
            raise IngestError(ErrorKind.BAD_LAYOUT, f"'{path}' {where}; {_LAYOUT_HELP}")
    return {path: p[0] for path, p in parts.items()}


def _check_class_count(classes: list[str]) -> None:
    if len(classes) < 2:
        found = f"only class '{classes[0]}'" if classes else "no class"
        help_ = "conditional training needs two or more classes, each with its own folder or label"
        raise IngestError(ErrorKind.SINGLE_CLASS, f"found {found}; {help_}")


def _native_size(longest_sides: list[int], limits: IngestLimits) -> int:
    counts = Counter(longest_sides)
    side = max(counts, key=lambda s: (counts[s], s))  # most common; ties go to the larger
    return side if limits.min_size <= side <= limits.max_size else limits.default_size


def _read_archive(
    upload: BinaryIO, filename: str, source_format: str, limits: IngestLimits
) -> _Source:
    members = _zip_members if source_format == "zip" else _tar_members
    probes: dict[str, tuple[int, bool]] = {}  # path -> (longest side, gray)
    for path, data in members(upload, filename, limits):
        if path in probes:
            raise IngestError(ErrorKind.BAD_LAYOUT, f"'{path}' appears twice in the archive")
        probes[path] = _probe(path, data, limits)
    class_of = _class_of_each(list(probes), filename)
    classes = sorted(set(class_of.values()))
    class_index = {name: i for i, name in enumerate(classes)}
    order = sorted(probes, key=lambda path: (class_index[class_of[path]], path))
    row_of = {path: row for row, path in enumerate(order)}
    labels = np.array([class_index[class_of[path]] for path in order], dtype=np.int64)

    def images(size: int, channels: int) -> Iterator[tuple[int, np.ndarray]]:
        # A second pass: holding every decoded image until the size is known could take GBs.
        for path, data in members(upload, filename, limits):
            yield row_of[path], _decode(path, data, size, channels, limits)

    sides = [side for side, _ in probes.values()]
    return _Source(labels, classes, sides, all(gray for _, gray in probes.values()), images)


# --- npz ---------------------------------------------------------------------------------


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
    compressed = _size(upload)
    with _reading(filename), zipfile.ZipFile(_rewound(upload)) as archive:
        _checked_zip_entries(archive, compressed, limits)
        return [_npz_array(archive, key) for key in keys]


def _load_npz(upload: BinaryIO, filename: str, limits: IngestLimits) -> tuple[np.ndarray, ...]:
    x, y, names = _npz_arrays(upload, filename, limits, ("x", "y", "classes"))
    if x is None or y is None:
        raise _npz_invalid(
            f"'{filename}' needs arrays 'x' (images) and 'y' (labels); "
            "save it with np.savez(path, x=images, y=labels[, classes=names])"
        )
    return x, y, names


def _check_npz_images(x: np.ndarray, limits: IngestLimits) -> None:
    if x.dtype != np.uint8 or x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[3] not in (1, 3)):
        raise _npz_invalid(
            f"x has dtype {x.dtype} and shape {x.shape}; expected uint8 with shape "
            "(N, H, W) or (N, H, W, C) where C is 1 (gray) or 3 (RGB)"
        )
    if x.shape[1] * x.shape[2] > limits.max_image_pixels:
        raise _image_too_large("x", f"{x.shape[2]}x{x.shape[1]} pixels per image")


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


def _read_npz(upload: BinaryIO, filename: str, limits: IngestLimits) -> _Source:
    x, y, names = _load_npz(upload, filename, limits)
    _check_npz_arrays(x, y, limits)
    labels, classes = _npz_labels(y, names)
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]  # (N, H, W): the shape Pillow takes for gray

    def images(size: int, channels: int) -> Iterator[tuple[int | slice, np.ndarray]]:
        return _npz_training_images(x, size, channels)

    return _Source(labels, classes, [max(x.shape[1:3])], x.ndim == 3, images)


def _npz_training_images(
    x: np.ndarray, size: int, channels: int
) -> Iterator[tuple[int | slice, np.ndarray]]:
    """(rows, pixels) of checked npz images at (size, size, channels); gray x is (N, H, W)."""
    if x.shape[1:3] == (size, size) and x.ndim == (3 if channels == 1 else 4):
        yield slice(None), x.reshape(len(x), size, size, channels)  # already training shape
        return
    for row, image in enumerate(x):
        yield row, _to_training_image(Image.fromarray(image), size, channels)


# --- images to classify --------------------------------------------------------------------


@dataclass(frozen=True)
class UploadedImages:
    names: list[str]  # file name, archive member path, or x[i] for npz rows
    images: np.ndarray  # uint8 (N, size, size, channels)


def read_images(
    upload: BinaryIO,
    filename: str,
    *,
    size: int,
    channels: int,
    max_images: int,
    limits: IngestLimits = IngestLimits(),
) -> UploadedImages:
    """Images to classify, converted and resized as training ingestion does.

    upload is one image (png, jpg, bmp, webp, recognised by content), a zip or tar of images
    (any folders; junk skipped, any other file is an error) or an .npz with ``x`` uint8
    (N, H, W) or (N, H, W, C), C in {1, 3} (other arrays are ignored). Any image mode becomes
    ``channels``, as in training. Raises IngestError; TOO_MANY_IMAGES past max_images.
    """
    if _is_image(upload):
        data = _rewound(upload).read()
        return UploadedImages([filename], _decode(filename, data, size, channels, limits)[None])
    try:
        source_format = _detect_format(upload, filename)
    except IngestError as exc:
        if exc.kind is not ErrorKind.UNSUPPORTED_FORMAT:
            raise
        message = (
            f"'{filename}' is not an image (png, jpg, bmp, webp), a zip or tar of images, "
            "or an .npz with an array x"
        )
        raise IngestError(ErrorKind.UNSUPPORTED_FORMAT, message) from None
    if source_format == "npz":
        return _npz_images(upload, filename, size, channels, max_images, limits)
    members = _zip_members if source_format == "zip" else _tar_members
    names, images = [], []
    for path, data in members(upload, filename, limits):
        _require_image_name(path)
        if len(names) == max_images:
            raise _too_many_images(max_images)
        names.append(path)
        images.append(_decode(path, data, size, channels, limits))
    if not images:
        raise IngestError(ErrorKind.EMPTY_DATASET, f"'{filename}' holds no images")
    return UploadedImages(names, np.stack(images))


def _is_image(upload: BinaryIO) -> bool:
    """Whether the upload starts like one of the image formats we decode (a damaged one
    included: decoding then says what is wrong)."""
    head = _rewound(upload).read(12)
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def _too_many_images(max_images: int) -> IngestError:
    message = f"more than {max_images} images in one request; send them in several requests"
    return IngestError(ErrorKind.TOO_MANY_IMAGES, message)


def _npz_images(
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
        raise _too_many_images(max_images)
    if x.ndim == 4 and x.shape[3] == 1:
        x = x[..., 0]
    out = np.empty((len(x), size, size, channels), np.uint8)
    for rows, images in _npz_training_images(x, size, channels):
        out[rows] = images
    return UploadedImages([f"x[{i}]" for i in range(len(x))], out)

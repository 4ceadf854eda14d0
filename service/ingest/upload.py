"""The uploaded file: read from its start, its format recognised, and what readers return."""

from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from service.ingest.errors import ErrorKind, IngestError

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # first entry, or an empty archive
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM")  # png, jpeg, bmp (webp: RIFF)
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)


@dataclass(frozen=True)
class Source:
    """What a format reader found; ``images`` yields (rows, pixels) at a chosen size."""

    labels: np.ndarray | None  # int64 (N,), indices into classes; None: unlabelled
    classes: list[str]  # sorted; empty when unlabelled
    longest_sides: list[int]
    gray: bool  # every image is grayscale
    images: Callable[[int, int], Iterator[tuple[int | slice, np.ndarray]]]
    num_images: int


@dataclass(frozen=True)
class UploadedImages:
    names: list[str]  # file name, archive member path, or x[i] for npz rows
    images: np.ndarray  # uint8 (N, size, size, channels)


def rewound(upload: BinaryIO) -> BinaryIO:
    """The upload at its start: each reader and each pass reads it from the beginning."""
    upload.seek(0)
    return upload


def upload_size(upload: BinaryIO) -> int:
    return upload.seek(0, os.SEEK_END)


def detect_format(upload: BinaryIO, filename: str) -> str:
    magic = rewound(upload).read(4)
    if magic in _ZIP_MAGIC:
        with reading(filename), zipfile.ZipFile(rewound(upload)) as archive:
            names = archive.namelist()
        is_npz = names and all(n.endswith(".npy") and "/" not in n for n in names)
        return "npz" if is_npz else "zip"
    try:
        with tarfile.open(
            fileobj=rewound(upload), mode="r:*"
        ):  # plain, gzip, bz2 or xz; tar has no magic at offset 0
            return "tar"
    except _ARCHIVE_ERRORS:
        message = (
            f"'{filename}' is not a zip, tar, tar.gz or .npz file; upload a zip or tar(.gz) "
            "of class folders (or of images alone, unlabelled), or an .npz with arrays x and y "
            "(or x alone)"
        )
        raise IngestError(ErrorKind.UNSUPPORTED_FORMAT, message) from None


@contextmanager
def reading(filename: str) -> Iterator[None]:
    """Report damage found while reading the archive as corrupt_archive."""
    try:
        yield
    except _ARCHIVE_ERRORS as exc:
        message = f"'{filename}' is damaged or truncated ({exc}); create it again"
        raise IngestError(ErrorKind.CORRUPT_ARCHIVE, message) from exc


def is_image(upload: BinaryIO) -> bool:
    """Whether the upload starts like one of the image formats we decode (a damaged one
    included: decoding then says what is wrong)."""
    head = rewound(upload).read(12)
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")

"""The uploaded file: read from its start, its format recognised, and what readers return."""

from __future__ import annotations

import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from service.ingest.errors import ErrorKind, IngestError, too_many_members

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # first entry, or an empty archive
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM")  # png, jpeg, bmp (webp: RIFF)
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)
# Zip end records (APPNOTE 4.3.14-16): the end of central directory (22 bytes + a comment of
# up to 64 KiB), the zip64 locator just before it, and the zip64 end record it points at.
_EOCD, _EOCD_SIZE, _MAX_COMMENT = b"PK\x05\x06", 22, 0xFFFF
_ZIP64_LOCATOR, _ZIP64_LOCATOR_SIZE, _ZIP64_EOCD = b"PK\x06\x07", 20, b"PK\x06\x06"
_CENTRAL_HEADER, _CENTRAL_HEADER_SIZE = b"PK\x01\x02", 46


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


def _zip_directory(upload: BinaryIO) -> tuple[int, int, int] | None:
    """(declared entries, central directory start, its size) from the zip's end records;
    None when there are none (zipfile then reports the archive as damaged)."""
    size = upload_size(upload)
    tail_start = max(0, size - _EOCD_SIZE - _MAX_COMMENT)
    upload.seek(tail_start)
    tail = upload.read()
    at = tail.rfind(_EOCD)
    if at < 0 or at + _EOCD_SIZE > len(tail):
        return None
    entries, directory_size = struct.unpack_from("<HI", tail, at + 10)
    end = tail_start + at  # where the central directory stops
    locator = at - _ZIP64_LOCATOR_SIZE
    if locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR:
        (record_at,) = struct.unpack_from("<Q", tail, locator + 8)
        upload.seek(record_at)
        record = upload.read(56)
        if len(record) < 56 or record[:4] != _ZIP64_EOCD:
            return None
        entries, directory_size = struct.unpack_from("<QQ", record, 32)
        end = record_at
    return entries, end - directory_size, directory_size


def check_zip_entry_count(upload: BinaryIO, max_members: int) -> None:
    """Refuse a zip of more than `max_members` entries before zipfile parses its directory.

    The count the end record declares is checked first; then the central directory's
    headers are counted, stopping at the limit, since a declared count can lie. Either way
    the work is bounded by the limit, not by the archive (zipfile builds an object per entry,
    seconds for 300k empty ones).
    """
    found = _zip_directory(upload)
    if found is None:
        return
    declared, start, directory_size = found
    if declared > max_members:
        raise too_many_members(max_members, f"it declares {declared:,}")
    if start < 0:
        return
    position, end, counted = start, start + directory_size, 0
    while position + _CENTRAL_HEADER_SIZE <= end:
        upload.seek(position)
        header = upload.read(_CENTRAL_HEADER_SIZE)
        if header[:4] != _CENTRAL_HEADER:
            break  # not where the end record says (data before the zip): zipfile handles it
        counted += 1
        if counted > max_members:
            raise too_many_members(max_members, "its central directory holds more")
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", header, 28)
        position += _CENTRAL_HEADER_SIZE + name_length + extra_length + comment_length


def detect_format(upload: BinaryIO, filename: str, max_members: int) -> str:
    """zip, npz or tar, from the content; a zip of too many entries is refused first."""
    magic = rewound(upload).read(4)
    if magic in _ZIP_MAGIC:
        check_zip_entry_count(upload, max_members)
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

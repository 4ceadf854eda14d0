"""Ingestion limits, error kinds and the IngestError users see, with the shared builders."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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


def image_too_large(path: str, detail: str) -> IngestError:
    message = f"'{path}' is too large ({detail}); downscale it before uploading"
    return IngestError(ErrorKind.IMAGE_TOO_LARGE, message)


def too_many_images(max_images: int) -> IngestError:
    message = f"more than {max_images} images in one request; send them in several requests"
    return IngestError(ErrorKind.TOO_MANY_IMAGES, message)


def too_many_members(max_members: int, found: str = "") -> IngestError:
    detail = f" ({found})" if found else ""
    message = f"the archive has more than {max_members} entries{detail}; upload fewer files"
    return IngestError(ErrorKind.TOO_MANY_MEMBERS, message)

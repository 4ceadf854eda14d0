"""Dataset ingestion: an uploaded archive or .npz, read in place, becomes a StoredDataset.

Uploads (recognised by content; the filename is only used in messages):
- zip, tar or tar.gz of ``<class>/<image>`` or ``<top>/<class>/<image>``; png, jpg, jpeg, bmp,
  webp images. OS junk (``__MACOSX/``, hidden ``.*``, ``Thumbs.db``) is skipped; any other
  file is an error.
- .npz with ``x`` uint8 (N, H, W) or (N, H, W, C), C in {1, 3}, ``y`` integers (N,) and an
  optional ``classes`` string array that ``y`` indexes into.
- Unlabelled: a zip or tar of images with no class folders (all at the top, or all in one
  folder), or an .npz without ``y``; stored with ``labelled: false`` and no classes (only
  vcagan trains on it). Labels naming a single class are refused (single_class).

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

from collections import Counter
from pathlib import Path
from typing import BinaryIO

import numpy as np

from service.ingest.archives import read_archive, tar_members, zip_members
from service.ingest.errors import ErrorKind, IngestError, IngestLimits, too_many_images
from service.ingest.images import IMAGE_EXTENSIONS, decode, require_image_name
from service.ingest.npz import npz_images, read_npz
from service.ingest.upload import UploadedImages, detect_format, is_image, rewound
from training.dataset import DatasetInfo, StoredDataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "ErrorKind",
    "IngestError",
    "IngestLimits",
    "UploadedImages",
    "ingest",
    "read_images",
]


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
    source_format = detect_format(upload, filename, limits.max_members)
    if source_format == "npz":
        source = read_npz(upload, filename, limits)
    else:
        source = read_archive(upload, filename, source_format, limits)
    if source.labels is not None:
        _check_class_count(source.classes)
    size = image_size or _native_size(source.longest_sides, limits)
    channels = channels or (1 if source.gray else 3)
    with StoredDataset.writing(
        dest_dir,
        source.labels,
        classes=source.classes,
        image_shape=(size, size, channels),
        source_format=source_format,
        num_images=source.num_images,
    ) as x:
        for rows, images in source.images(size, channels):
            x[rows] = images
    return StoredDataset.load(dest_dir).info


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


def _check_class_count(classes: list[str]) -> None:
    if len(classes) < 2:
        found = f"only class '{classes[0]}'" if classes else "no class"
        help_ = (
            "conditional training needs two or more classes, each with its own folder or "
            "label; leave the labels out (no y) to upload the images unlabelled for vcagan"
        )
        raise IngestError(ErrorKind.SINGLE_CLASS, f"found {found}; {help_}")


def _native_size(longest_sides: list[int], limits: IngestLimits) -> int:
    counts = Counter(longest_sides)
    side = max(counts, key=lambda s: (counts[s], s))  # most common; ties go to the larger
    return side if limits.min_size <= side <= limits.max_size else limits.default_size


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
    if is_image(upload):
        data = rewound(upload).read()
        return UploadedImages([filename], decode(filename, data, size, channels, limits)[None])
    try:
        source_format = detect_format(upload, filename, limits.max_members)
    except IngestError as exc:
        if exc.kind is not ErrorKind.UNSUPPORTED_FORMAT:
            raise
        message = (
            f"'{filename}' is not an image (png, jpg, bmp, webp), a zip or tar of images, "
            "or an .npz with an array x"
        )
        raise IngestError(ErrorKind.UNSUPPORTED_FORMAT, message) from None
    if source_format == "npz":
        return npz_images(upload, filename, size, channels, max_images, limits)
    members = zip_members if source_format == "zip" else tar_members
    names, images = [], []
    for path, data in members(upload, filename, limits):
        require_image_name(path)
        if len(names) == max_images:
            raise too_many_images(max_images)
        names.append(path)
        images.append(decode(path, data, size, channels, limits))
    if not images:
        raise IngestError(ErrorKind.EMPTY_DATASET, f"'{filename}' holds no images")
    return UploadedImages(names, np.stack(images))

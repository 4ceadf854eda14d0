"""Images from untrusted bytes: probed from their headers, decoded, converted to training size."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from PIL import Image, ImageOps

from service.ingest.errors import ErrorKind, IngestError, IngestLimits, image_too_large

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "WEBP")  # the only decoders untrusted bytes may reach
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


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
            raise image_too_large(path, str(exc)) from exc
        except Exception as exc:  # decoders raise many types on malformed input
            raise IngestError(
                ErrorKind.CORRUPT_IMAGE,
                f"'{path}' could not be decoded as an image ({exc}); "
                "replace it with a valid png, jpg, bmp or webp file or remove it",
            ) from exc


def _open_image(path: str, data: bytes, limits: IngestLimits) -> Image.Image:
    """Open (not decode) an image, refusing ones over the pixel cap from the header."""
    image = Image.open(io.BytesIO(data), formats=_PIL_FORMATS)
    if image.width * image.height > limits.max_image_pixels:
        detail = f"{image.width}x{image.height} pixels, limit {limits.max_image_pixels}"
        raise image_too_large(path, detail)
    return image


def require_image_name(path: str) -> None:
    if not path.lower().endswith(IMAGE_EXTENSIONS):
        raise IngestError(
            ErrorKind.CORRUPT_IMAGE,
            f"'{path}' is not an image; only {', '.join(IMAGE_EXTENSIONS)} files are "
            "accepted, remove it from the archive",
        )


def probe(path: str, data: bytes, limits: IngestLimits) -> tuple[int, bool]:
    """(longest side, is grayscale) of an image member, from its header."""
    require_image_name(path)
    with _decoding(path), _open_image(path, data, limits) as image:
        return max(image.size), image.mode in _GRAY_MODES


def decode(path: str, data: bytes, size: int, channels: int, limits: IngestLimits) -> np.ndarray:
    with _decoding(path), _open_image(path, data, limits) as image:
        image.draft(image.mode, (size, size))  # JPEG: decode at a reduced scale when possible
        image.load()
        ImageOps.exif_transpose(image, in_place=True)  # phone photos are stored rotated
        return to_training_image(image, size, channels)


def to_training_image(image: Image.Image, size: int, channels: int) -> np.ndarray:
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

"""Example datasets to try the service with, built from data already on the machine:
Fashion-MNIST from the Debian package `dataset-fashion-mnist`, or scikit-learn's 8x8 digits.

`ganaug example fashion-mnist --per-class 50 --out fashion500.zip` writes the README's
quick-start dataset: a zip with one folder of PNGs per class.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Label order of Fashion-MNIST (label i is FASHION_CLASSES[i]).
FASHION_CLASSES = [
    "tshirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
]
DIGIT_CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
EXAMPLES = ("fashion-mnist", "digits")


class ExampleUnavailable(RuntimeError):
    """The data an example is built from is not installed; the message says how to get it."""


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (big-endian header: magic, then one uint32 per dimension)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = np.frombuffer(data, ">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """`train` or `t10k`: images uint8 (N, 28, 28, 1) and labels int64 (N,)."""
    if not FASHION_MNIST.exists():
        raise ExampleUnavailable(
            f"{FASHION_MNIST} not found: apt-get install -y dataset-fashion-mnist"
        )
    x = read_idx(FASHION_MNIST / f"{split}-images-idx3-ubyte.gz")[:, :, :, None]
    y = read_idx(FASHION_MNIST / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits: images uint8 (N, 8, 8, 1) and labels int64 (N,)."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ExampleUnavailable(
            "the digits example needs scikit-learn: pip install scikit-learn"
        ) from None
    digits = sklearn_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)[..., None]  # values 0-16
    return x, digits.target.astype(np.int64)


def balanced_subset(
    x: np.ndarray, y: np.ndarray, per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` images of every class, drawn without replacement."""
    idx = balanced_indices(y, per_class, seed)
    return x[idx], y[idx]


def balanced_indices(y: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """The row indices `balanced_subset` takes: `per_class` of every class, class by class."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    )


def write_class_folders_zip(out: Path, x: np.ndarray, y: np.ndarray, classes: list[str]) -> None:
    """A zip of `<class>/<nnnn>.png`, the layout POST /v1/datasets reads."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            buffer = io.BytesIO()
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "PNG")
            archive.writestr(f"{classes[label]}/{i:05d}.png", buffer.getvalue())


def build_example(name: str, out: Path, *, per_class: int = 50, seed: int = 0) -> dict[str, int]:
    """Write example `name` (fashion-mnist or digits) with `per_class` images of each class
    to the zip `out`; returns the images per class."""
    if name == "fashion-mnist":
        (x, y), classes = load_fashion_mnist("train"), FASHION_CLASSES
    elif name == "digits":
        (x, y), classes = load_digits(), DIGIT_CLASSES
    else:
        raise ValueError(f"unknown example '{name}'; choose one of {', '.join(EXAMPLES)}")
    available = int(np.bincount(y).min())
    if not 1 <= per_class <= available:
        raise ValueError(f"per_class must be 1-{available} for {name}, not {per_class}")
    x, y = balanced_subset(x, y, per_class, seed)
    write_class_folders_zip(Path(out), x, y, classes)
    return {classes[c]: int((y == c).sum()) for c in np.unique(y)}

"""Fashion-MNIST from the Debian package dataset-fashion-mnist (IDX .gz), for benchmarks."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Index-prefixed so that sorting the names (the dataset contract) keeps the label order.
CLASSES = [
    "0-tshirt",
    "1-trouser",
    "2-pullover",
    "3-dress",
    "4-coat",
    "5-sandal",
    "6-shirt",
    "7-sneaker",
    "8-bag",
    "9-ankle-boot",
]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (big-endian header: magic, then one uint32 per dimension)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = np.frombuffer(data, ">u4", count=ndim, offset=4).astype(int)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """`train` or `t10k`: images uint8 (N, 28, 28, 1) and labels int64 (N,)."""
    if not FASHION_MNIST.exists():
        raise SystemExit(f"{FASHION_MNIST} not found: apt-get install -y dataset-fashion-mnist")
    x = read_idx(FASHION_MNIST / f"{split}-images-idx3-ubyte.gz")[:, :, :, None]
    y = read_idx(FASHION_MNIST / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return x, y


def balanced_subset(
    x: np.ndarray, y: np.ndarray, per_class: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`per_class` images of every class, drawn without replacement."""
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [rng.choice(np.flatnonzero(y == c), per_class, replace=False) for c in np.unique(y)]
    )
    return x[idx], y[idx]

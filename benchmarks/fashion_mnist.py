"""Fashion-MNIST from the Debian package dataset-fashion-mnist (IDX .gz), for benchmarks.

The reading lives in ganaug.examples (which also builds the README's quick-start zip); the
benchmarks name classes with their label index in front.
"""

from __future__ import annotations

import numpy as np

from ganaug.examples import FASHION_CLASSES, ExampleUnavailable, balanced_subset, load_fashion_mnist

# Index-prefixed so that sorting the names (the dataset contract) keeps the label order.
CLASSES = [f"{i}-{name}" for i, name in enumerate(FASHION_CLASSES)]
__all__ = ["CLASSES", "balanced_subset", "load"]


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """`train` or `t10k`: images uint8 (N, 28, 28, 1) and labels int64 (N,)."""
    try:
        return load_fashion_mnist(split)
    except ExampleUnavailable as exc:
        raise SystemExit(str(exc)) from None

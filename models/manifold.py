"""Real class manifolds in evaluator feature space (numpy only): k-NN balls around real images.

The union of balls (real feature, its k-NN radius) is the manifold of Kynkaanniemi et al.
(2019) that k-NN precision measures against; `training.metrics` computes precision from the
same radii, and `filter=manifold` keeps the samples inside their own class's manifold.
"""

from __future__ import annotations

import io
from typing import ClassVar

import numpy as np

from models.artifact import ArtifactFile

MANIFOLD_FILE = "manifold.npz"  # real train features per class and their k-NN radii


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)); memory is O(len(a) * len(b))."""
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(squared, 0, None))


def knn_radii(feats: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row of the same set."""
    distances = pairwise_distances(feats, feats)
    return np.partition(distances, k, axis=1)[:, k]  # column 0 is the row itself


class ClassManifold(ArtifactFile):
    """Per-class k-NN balls around real images' features; `contains` tests samples."""

    file_name: ClassVar[str] = MANIFOLD_FILE

    def __init__(self, features: np.ndarray, labels: np.ndarray, radii: np.ndarray, k: int):
        self.features = np.asarray(features, np.float32)  # (N, D)
        self.labels = np.asarray(labels, np.int64)  # (N,)
        self.radii = np.asarray(radii, np.float32)  # (N,)
        self.k = int(k)

    @classmethod
    def build(cls, features: np.ndarray, labels: np.ndarray, k: int) -> ClassManifold:
        """Radii within each class; k shrinks to the class size - 1, a one-image class gets
        radius 0 (only its own feature is inside)."""
        features, labels = np.asarray(features, np.float32), np.asarray(labels, np.int64)
        radii = np.zeros(len(labels), np.float32)
        for c in np.unique(labels):
            rows = np.flatnonzero(labels == c)
            kc = min(k, len(rows) - 1)
            if kc >= 1:
                radii[rows] = knn_radii(features[rows].astype(np.float64), kc)
        return cls(features, labels, radii, k)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, features=self.features, labels=self.labels, radii=self.radii, k=self.k)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClassManifold:
        with np.load(io.BytesIO(data)) as arrays:
            return cls(arrays["features"], arrays["labels"], arrays["radii"], int(arrays["k"]))

    def contains(self, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """bool (N,): whether each feature row lies in a ball of a real image of its label."""
        labels = np.asarray(labels, np.int64)
        inside = np.zeros(len(labels), bool)
        for c in np.unique(labels):
            rows, ref = labels == c, self.labels == c
            distances = pairwise_distances(
                np.asarray(features[rows], np.float64), self.features[ref].astype(np.float64)
            )
            inside[rows] = (distances <= self.radii[ref][None, :]).any(axis=1)
        return inside

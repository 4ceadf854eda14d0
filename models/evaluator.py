"""Score images with the exported evaluator classifier (numpy + onnxruntime only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.images import to_unit_nchw
from models.manifold import MANIFOLD_FILE, ClassManifold
from models.sampler import open_session

EVALUATOR_FILE = "evaluator.onnx"


class EvaluatorScorer:
    """Loads `model_dir/evaluator.onnx` and returns class probabilities and features; with
    the report's `manifold.npz` beside it, also whether images lie in their class manifold."""

    def __init__(self, model_dir: Path, providers: list[str] | None = None):
        """Args:
        model_dir: a model directory holding evaluator.onnx (written by the report).
        providers: ONNX Runtime providers in order of preference; by default CUDA when
            it works on this machine, else CPU.
        """
        model_path = Path(model_dir) / EVALUATOR_FILE
        if not model_path.is_file():
            raise FileNotFoundError(f"no {EVALUATOR_FILE} in {model_dir}; build the report first")
        self._session = open_session(model_path, providers)
        _, channels, height, width = self._session.get_inputs()[0].shape
        self.image_shape: tuple[int, int, int] = (height, width, channels)  # (H, W, C)
        probs, features = self._session.get_outputs()
        self.num_classes: int = probs.shape[1]
        self._feature_dim: int = features.shape[1]
        has_manifold = ClassManifold.path(model_dir).is_file()
        self.manifold = ClassManifold.load(model_dir) if has_manifold else None

    @property
    def providers(self) -> list[str]:
        """The providers the session actually runs on."""
        return self._session.get_providers()

    def score(self, images: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and penultimate features of uint8 (N, H, W, C) images.

        Args:
            batch_size: rows per ONNX Runtime call (bounds memory).

        Returns:
            float32 probs (N, K) and features (N, 128).
        """
        if images.shape[1:] != self.image_shape:
            h, w, c = self.image_shape
            raise ValueError(f"expected images (N, {h}, {w}, {c}), got {images.shape}")
        x = to_unit_nchw(images)
        probs, features = [], []
        for start in range(0, len(x), batch_size):
            batch = np.ascontiguousarray(x[start : start + batch_size])
            p, f = self._session.run(["probs", "features"], {"image": batch})
            probs.append(p)
            features.append(f)
        if not probs:
            empty = np.zeros((0, self.num_classes), np.float32)
            return empty, np.zeros((0, self._feature_dim), np.float32)
        return np.concatenate(probs), np.concatenate(features)

    def confidence(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Probability the evaluator gives each image's own label; float32 (N,)."""
        labels = self._check_labels(images, labels)
        probs, _ = self.score(images)
        return probs[np.arange(len(labels)), labels]

    def in_manifold(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Whether each image lies within the k-NN radius of a real train image of its own
        class, in evaluator features (per-sample k-NN precision); bool (N,)."""
        if self.manifold is None:
            raise FileNotFoundError(f"no {MANIFOLD_FILE} beside the evaluator; rebuild the report")
        labels = self._check_labels(images, labels)
        return self.manifold.contains(self.score(images)[1], labels)

    def _check_labels(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(images),):
            raise ValueError(f"expected labels ({len(images)},), got {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be in 0..{self.num_classes - 1}")
        return labels

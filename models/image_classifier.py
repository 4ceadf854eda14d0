"""Class probabilities of images from an exported classifier graph (numpy + onnxruntime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.images import to_unit_nchw
from models.sampler import open_session


class ImageClassifier:
    """Runs an ONNX graph with input `image` float32 (B, C, H, W) in [-1, 1] and output
    `probs` (B, K): the critic's classifier.onnx or the report's evaluator.onnx."""

    def __init__(self, model_path: Path, providers: list[str] | None = None):
        """Args:
        model_path: the .onnx file.
        providers: ONNX Runtime providers in order of preference; by default CUDA when
            it works on this machine, else CPU.
        """
        self._session = open_session(Path(model_path), providers)
        _, channels, height, width = self._session.get_inputs()[0].shape
        self.image_shape: tuple[int, int, int] = (height, width, channels)  # (H, W, C)

    @property
    def providers(self) -> list[str]:
        """The providers the session actually runs on."""
        return self._session.get_providers()

    def probs(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Class probabilities float32 (N, K) of uint8 (N, H, W, C) images.

        Args:
            batch_size: rows per ONNX Runtime call (bounds memory).
        """
        if images.shape[1:] != self.image_shape:
            h, w, c = self.image_shape
            raise ValueError(f"expected images (N, {h}, {w}, {c}), got {images.shape}")
        x = to_unit_nchw(images)
        batches = [
            self._session.run(["probs"], {"image": np.ascontiguousarray(x[i : i + batch_size])})[0]
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(batches)

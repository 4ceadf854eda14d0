"""Export a generator to ONNX and check the graph against torch with ONNX Runtime."""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from models.artifact import atomic_write_bytes
from models.networks import Generator

OPSET = 17
MAX_ABS_DIFF = 1e-4  # float32 kernels differ between torch and ORT by ~1e-6 on tanh outputs


def export_generator_onnx(generator: Generator, path: Path, *, z_dim: int) -> None:
    """Write `generator` (in eval mode) to path as ONNX with a dynamic batch axis.

    Inputs `latent` float32 (B, z_dim) and `class` int64 (B,); output `image` float32
    (B, C, H, W). Raises RuntimeError if ONNX Runtime disagrees with torch.
    """
    generator = copy.deepcopy(generator).cpu().eval()
    rng = torch.Generator().manual_seed(0)  # leave the global RNG of the caller alone
    latent = torch.randn(3, z_dim, generator=rng)
    labels = torch.arange(3) % generator.config()["num_classes"]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deliberate (verified with ORT below); its deprecation
        # notices would repeat in every worker log.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            _TwoInputs(generator).eval(),
            (latent, labels),
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=["latent", "class"],
            output_names=["image"],
            dynamic_axes={"latent": {0: "B"}, "class": {0: "B"}, "image": {0: "B"}},
        )
    _check_against_torch(generator, buf.getvalue(), z_dim, rng)
    atomic_write_bytes(path, buf.getvalue())


class _TwoInputs(torch.nn.Module):
    """The generator with only (latent, class) as inputs: its optional arguments keep their
    defaults (a fully conditional generator) instead of becoming graph inputs."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    def forward(self, latent: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.generator(latent, labels)  # (B, C, H, W)


def _check_against_torch(
    generator: Generator, model: bytes, z_dim: int, rng: torch.Generator
) -> None:
    batch = 5  # differs from the export batch, so the dynamic axis is exercised
    latent = torch.randn(batch, z_dim, generator=rng)
    labels = torch.arange(batch) % generator.config()["num_classes"]
    with torch.no_grad():
        expected = generator(latent, labels).numpy()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    (actual,) = session.run(["image"], {"latent": latent.numpy(), "class": labels.numpy()})
    diff = float(np.abs(actual - expected).max())
    if actual.shape != expected.shape or diff > MAX_ABS_DIFF:
        raise RuntimeError(
            f"ONNX export mismatch: shape {actual.shape} vs {expected.shape}, "
            f"max abs diff {diff:.2e}"
        )

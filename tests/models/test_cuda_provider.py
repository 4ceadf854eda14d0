"""ONNX Runtime on its CUDA execution provider (make test-gpu), checked against CPU."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from models.evaluator import EvaluatorScorer
from models.sampler import CUDA, GeneratorSampler
from models.truncation import sample_latents

CPU = ["CPUExecutionProvider"]

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False"),
    pytest.mark.skipif(
        CUDA not in ort.get_available_providers(),
        reason=f"onnxruntime has no {CUDA}: {ort.get_available_providers()}",
    ),
]


def test_cuda_provider_samples_what_cpu_samples(tiny_model):
    cuda = GeneratorSampler(tiny_model.model_dir, providers=[CUDA])
    assert cuda.providers[0] == CUDA, f"ORT fell back to {cuda.providers}: CUDA libraries?"
    cpu = GeneratorSampler(tiny_model.model_dir, providers=CPU)
    labels = np.arange(64) % 3
    latents = sample_latents(np.random.default_rng(0), 64, cpu.manifest.z_dim)
    on_cuda, on_cpu = cuda.generate(labels, latents), cpu.generate(labels, latents)
    assert on_cuda.shape == on_cpu.shape and on_cuda.dtype == np.uint8
    difference = np.abs(on_cuda.astype(int) - on_cpu.astype(int))
    assert difference.max() <= 2 and difference.mean() < 0.05, "rounding only, not other images"


def test_cuda_provider_scores_what_cpu_scores(tiny_model):
    cuda = EvaluatorScorer(tiny_model.model_dir, providers=[CUDA])
    assert cuda.providers[0] == CUDA, f"ORT fell back to {cuda.providers}: CUDA libraries?"
    cpu = EvaluatorScorer(tiny_model.model_dir, providers=CPU)
    images, labels = tiny_model.x[::3, ..., None], tiny_model.y[::3]  # every class
    # TF32 convolutions on the GPU move the last digits only
    np.testing.assert_allclose(
        cuda.confidence(images, labels), cpu.confidence(images, labels), atol=1e-2
    )
    agree = cuda.in_manifold(images, labels) == cpu.in_manifold(images, labels)
    assert agree.mean() >= 0.95, "only images on the manifold's edge may differ"

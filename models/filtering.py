"""Keep only generated images that pass an evaluator test (no torch): `confident`, the
evaluator assigns them to their class with at least `min_confidence`; `manifold`, their
evaluator features lie inside the real images' k-NN class manifold (as k-NN precision counts).

Rejection sampling: latents are drawn chunk by chunk from one rng, so a given rng state
and the same options always give the same accepted images, in draw order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from models.evaluator import EvaluatorScorer
from models.sampler import GeneratorSampler
from models.truncation import TruncationMode, sample_latents


class FilterExhausted(Exception):
    """Too few generated images passed the filter within the draw budget."""


@dataclass(frozen=True)
class SampleFilter:
    """Which generated images to keep."""

    kind: Literal["confident", "manifold"] = "confident"
    min_confidence: float = 0.9  # confident only

    def keep(self, scorer: EvaluatorScorer, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """bool (N,): the images this filter keeps."""
        if self.kind == "manifold":
            return scorer.in_manifold(images, labels)
        return scorer.confidence(images, labels) >= self.min_confidence

    def failure(self, passed: int, drawn: int, class_index: int) -> str:
        """What went wrong when too few passed, and what to change."""
        if self.kind == "manifold":
            return (
                f"only {passed} of {drawn} images drawn for class {class_index} fell inside the "
                "real class manifold; lower the truncation threshold or use filter=confident"
            )
        return (
            f"only {passed} of {drawn} images drawn for class {class_index} reached confidence "
            f"{self.min_confidence}; lower min_confidence or the truncation threshold"
        )


def iter_filtered(
    sampler: GeneratorSampler,
    scorer: EvaluatorScorer,
    class_index: int,
    rng: np.random.Generator,
    *,
    truncation: float | None = None,
    mode: TruncationMode = "clamp",
    keep: SampleFilter = SampleFilter(),
    chunk: int = 128,
    max_draws: int | None = None,
) -> Iterator[np.ndarray]:
    """Iterate over uint8 (n, H, W, C) batches of accepted images of one class, n >= 1.

    Options are checked now, not at the first batch, so a stream can fail before it starts.

    Args:
        truncation, mode: latent truncation, as in `models.truncation.sample_latents`.
        keep: the filter; `manifold` needs the report's manifold.npz beside the evaluator.
        chunk: latents generated and scored per step.
        max_draws: raise FilterExhausted after drawing this many latents; None = never stop.
    """
    _check_compatible(sampler, scorer, class_index, chunk)
    if keep.kind == "manifold" and scorer.manifold is None:
        raise ValueError("filter manifold needs the report's manifold.npz; rebuild the report")
    return _accepted_batches(
        sampler, scorer, class_index, rng, truncation, mode, keep, chunk, max_draws
    )


def _accepted_batches(
    sampler: GeneratorSampler,
    scorer: EvaluatorScorer,
    class_index: int,
    rng: np.random.Generator,
    truncation: float | None,
    mode: TruncationMode,
    keep: SampleFilter,
    chunk: int,
    max_draws: int | None,
) -> Iterator[np.ndarray]:
    drawn = passed = 0
    while max_draws is None or drawn < max_draws:
        n = chunk if max_draws is None else min(chunk, max_draws - drawn)
        latents = sample_latents(rng, n, sampler.manifest.z_dim, truncation=truncation, mode=mode)
        labels = np.full(n, class_index, dtype=np.int64)
        images = sampler.generate(labels, latents)
        kept = images[keep.keep(scorer, images, labels)]
        drawn, passed = drawn + n, passed + len(kept)
        if len(kept):
            yield kept
    raise FilterExhausted(keep.failure(passed, drawn, class_index))


def generate_filtered(
    sampler: GeneratorSampler,
    scorer: EvaluatorScorer,
    class_index: int,
    count: int,
    rng: np.random.Generator,
    *,
    truncation: float | None = None,
    mode: TruncationMode = "clamp",
    keep: SampleFilter = SampleFilter(),
    chunk: int = 128,
    max_draw_factor: int = 20,
) -> np.ndarray:
    """The first `count` generated images of class_index that pass the filter.

    Raises FilterExhausted when `max_draw_factor * count` draws give fewer than count.

    Returns:
        uint8 (count, H, W, C), in draw order.
    """
    if count < 0 or max_draw_factor < 1:
        raise ValueError(
            f"need count >= 0 and max_draw_factor >= 1, got {count} and {max_draw_factor}"
        )
    image = sampler.manifest.image
    accepted = [np.zeros((0, image.height, image.width, image.channels), np.uint8)]
    have = 0
    batches = iter_filtered(
        sampler,
        scorer,
        class_index,
        rng,
        truncation=truncation,
        mode=mode,
        keep=keep,
        chunk=chunk,
        max_draws=max_draw_factor * count,
    )
    while have < count:
        accepted.append(next(batches))
        have += len(accepted[-1])
    return np.concatenate(accepted)[:count]


def _check_compatible(
    sampler: GeneratorSampler, scorer: EvaluatorScorer, class_index: int, chunk: int
) -> None:
    image = sampler.manifest.image
    num_classes = len(sampler.manifest.classes)
    if scorer.image_shape != (image.height, image.width, image.channels):
        raise ValueError(f"evaluator takes {scorer.image_shape} images, generator makes {image}")
    if scorer.num_classes != num_classes:
        raise ValueError(f"evaluator has {scorer.num_classes} classes, generator {num_classes}")
    if not 0 <= class_index < num_classes:
        raise ValueError(f"class_index must be in 0..{num_classes - 1}, got {class_index}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")

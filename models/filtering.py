"""Keep only generated images the evaluator confidently assigns to their class (no torch).

Rejection sampling: latents are drawn chunk by chunk from one rng, so a given rng state
and the same options always give the same accepted images, in draw order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from models.evaluator import EvaluatorScorer
from models.sampler import GeneratorSampler
from models.truncation import TruncationMode, sample_latents


class FilterExhausted(Exception):
    """Too few generated images passed the confidence threshold within the draw budget."""


def iter_filtered(
    sampler: GeneratorSampler,
    scorer: EvaluatorScorer,
    class_index: int,
    rng: np.random.Generator,
    *,
    truncation: float | None = None,
    mode: TruncationMode = "clamp",
    min_confidence: float = 0.9,
    chunk: int = 128,
    max_draws: int | None = None,
) -> Iterator[np.ndarray]:
    """Iterate over uint8 (n, H, W, C) batches of accepted images of one class, n >= 1.

    Options are checked now, not at the first batch, so a stream can fail before it starts.

    Args:
        truncation, mode: latent truncation, as in `models.truncation.sample_latents`.
        min_confidence: keep images whose evaluator probability of class_index is at least this.
        chunk: latents generated and scored per step.
        max_draws: raise FilterExhausted after drawing this many latents; None = never stop.
    """
    _check_compatible(sampler, scorer, class_index, chunk)
    return _accepted_batches(
        sampler, scorer, class_index, rng, truncation, mode, min_confidence, chunk, max_draws
    )


def _accepted_batches(
    sampler: GeneratorSampler,
    scorer: EvaluatorScorer,
    class_index: int,
    rng: np.random.Generator,
    truncation: float | None,
    mode: TruncationMode,
    min_confidence: float,
    chunk: int,
    max_draws: int | None,
) -> Iterator[np.ndarray]:
    drawn = passed = 0
    while max_draws is None or drawn < max_draws:
        n = chunk if max_draws is None else min(chunk, max_draws - drawn)
        latents = sample_latents(rng, n, sampler.manifest.z_dim, truncation=truncation, mode=mode)
        labels = np.full(n, class_index, dtype=np.int64)
        images = sampler.generate(labels, latents)
        kept = images[scorer.confidence(images, labels) >= min_confidence]
        drawn, passed = drawn + n, passed + len(kept)
        if len(kept):
            yield kept
    raise FilterExhausted(
        f"only {passed} of {drawn} images drawn for class {class_index} reached confidence "
        f"{min_confidence}; lower min_confidence or the truncation threshold"
    )


def generate_filtered(
    sampler: GeneratorSampler,
    scorer: EvaluatorScorer,
    class_index: int,
    count: int,
    rng: np.random.Generator,
    *,
    truncation: float | None = None,
    mode: TruncationMode = "clamp",
    min_confidence: float = 0.9,
    chunk: int = 128,
    max_draw_factor: int = 20,
) -> np.ndarray:
    """The first `count` generated images of class_index whose evaluator confidence passes.

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
        min_confidence=min_confidence,
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

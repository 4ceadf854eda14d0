"""How a class's synthetic images are drawn (numpy + onnxruntime, no torch): one spec and
one function, used by the samples route, the archive and the quality report.

The seeding rule: the images of class c for seed s come from `class_rng(s, c)`, latents
drawn in blocks of CHUNK, so they are the same wherever they are asked for (one class, all
classes, an archive, the report) and a longer request starts with a shorter one's images.

With a filter (`confident`: the evaluator gives the image's class at least min_confidence;
`manifold`: its evaluator features lie inside the real images' k-NN class manifold, as
k-NN precision counts) the kept images are the passing draws in draw order: rejection
sampling with a bounded number of draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from models.artifact import Recipe
from models.evaluator import EvaluatorScorer
from models.sampler import GeneratorSampler
from models.truncation import TruncationMode, check_truncation, sample_latents

FilterKind = Literal["none", "confident", "manifold"]
FILTERS: tuple[FilterKind, ...] = ("none", "confident", "manifold")
CHUNK = 128  # latents drawn (and, with a filter, generated and scored) at a time
MAX_DRAW_FACTOR = 20  # a filter gives up after drawing 20x the images asked for
DEFAULT_MIN_CONFIDENCE = 0.9


class FilterExhausted(Exception):
    """Too few generated images passed the filter within the draw budget."""


@dataclass(frozen=True)
class DrawSpec:
    """How latents are drawn and which generated images are kept."""

    truncation: float | None = None  # |z| bound; None = untruncated
    truncation_mode: TruncationMode = "clamp"  # clamp: sign(z) min(|z|, t); resample: redraw
    filter: FilterKind = "none"
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # the threshold of filter=confident only

    def __post_init__(self) -> None:
        check_truncation(self.truncation, self.truncation_mode)
        if self.filter not in FILTERS:
            raise ValueError(f"filter must be one of {', '.join(FILTERS)}: {self.filter}")
        if self.filter != "confident":  # one spelling of "does not apply": equal specs are equal
            object.__setattr__(self, "min_confidence", DEFAULT_MIN_CONFIDENCE)
        elif not 0 < self.min_confidence <= 1:
            raise ValueError(f"min_confidence must be in (0, 1], got {self.min_confidence}")

    @classmethod
    def of_recipe(cls, recipe: Recipe) -> DrawSpec:
        """The draw of a recommended recipe (the manifest stores its fields flat)."""
        return cls(recipe.truncation, filter=recipe.filter, min_confidence=recipe.min_confidence)

    @property
    def whole_blocks(self) -> bool:
        """Whether latents must be drawn CHUNK at a time to keep the seeding rule: with
        resampling (redraws interleave with the block's draws) or a filter (every draw of
        the block is generated and scored)."""
        resampled = self.truncation is not None and self.truncation_mode == "resample"
        return resampled or self.needs_scorer

    @property
    def needs_scorer(self) -> bool:
        """Whether drawing needs the report's evaluator (any filter)."""
        return self.filter != "none"

    def describe(self) -> dict:
        """The spec as a manifest records it (min_confidence only where it applies)."""
        return {
            "truncation": self.truncation,
            "truncation_mode": self.truncation_mode,
            "filter": self.filter,
            "min_confidence": self.min_confidence if self.filter == "confident" else None,
        }

    def keep(self, scorer: EvaluatorScorer, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """bool (N,): the images this spec's filter keeps."""
        if self.filter == "manifold":
            return scorer.in_manifold(images, labels)
        if self.filter == "confident":
            return scorer.confidence(images, labels) >= self.min_confidence
        return np.ones(len(images), bool)

    def failure(self, passed: int, drawn: int, class_index: int) -> str:
        """What went wrong when too few passed, and what to change."""
        if self.filter == "manifold":
            return (
                f"only {passed} of {drawn} images drawn for class {class_index} fell inside the "
                "real class manifold; lower the truncation threshold or use filter=confident"
            )
        return (
            f"only {passed} of {drawn} images drawn for class {class_index} reached confidence "
            f"{self.min_confidence}; lower min_confidence or the truncation threshold"
        )


def class_rng(seed: int, class_index: int) -> np.random.Generator:
    """The random stream of class `class_index`'s images for `seed` (the seeding rule)."""
    return np.random.default_rng([seed, class_index])


def draw_class(
    sampler: GeneratorSampler,
    class_index: int,
    count: int,
    seed: int,
    spec: DrawSpec = DrawSpec(),
    scorer: EvaluatorScorer | None = None,
    *,
    max_draw_factor: int = MAX_DRAW_FACTOR,
) -> Iterator[np.ndarray]:
    """Yield `count` images of one class in uint8 (n, H, W, C) batches of at most CHUNK.

    Options are checked now, not at the first batch, so a stream can fail before it starts.

    Args:
        spec: truncation and filter; a filter needs `scorer` (`manifold` with its manifold).
        max_draw_factor: with a filter, raise FilterExhausted (while iterating) once
            max_draw_factor * count latents gave fewer than count passing images.
    """
    _check(sampler, class_index, count, spec, scorer, max_draw_factor)
    return _batches(sampler, class_index, count, seed, spec, scorer, max_draw_factor * count)


def draw_class_images(
    sampler: GeneratorSampler,
    class_index: int,
    count: int,
    seed: int,
    spec: DrawSpec = DrawSpec(),
    scorer: EvaluatorScorer | None = None,
    *,
    max_draw_factor: int = MAX_DRAW_FACTOR,
) -> np.ndarray:
    """All of `draw_class`'s images as one uint8 (count, H, W, C) array."""
    image = sampler.manifest.image
    batches = draw_class(
        sampler, class_index, count, seed, spec, scorer, max_draw_factor=max_draw_factor
    )
    empty = np.zeros((0, image.height, image.width, image.channels), np.uint8)
    return np.concatenate([empty, *batches])


def class_latents(
    z_dim: int, class_index: int, count: int, seed: int, spec: DrawSpec
) -> np.ndarray:
    """float32 (count, z_dim): the latents `draw_class` generates for a spec without a filter,
    so a caller can generate them elsewhere (the gateway's dynamic batching) and get the
    same images."""
    return np.concatenate(
        [np.zeros((0, z_dim), np.float32), *_latent_blocks(z_dim, class_index, count, seed, spec)]
    )


def _latent_blocks(
    z_dim: int, class_index: int, count: int, seed: int, spec: DrawSpec
) -> Iterator[np.ndarray]:
    if spec.needs_scorer:
        raise ValueError("a filter decides which latents are kept only once they are generated")
    rng = class_rng(seed, class_index)
    for start in range(0, count, CHUNK):
        yield _draw_block(rng, min(CHUNK, count - start), z_dim, spec)


def _draw_block(rng: np.random.Generator, wanted: int, z_dim: int, spec: DrawSpec) -> np.ndarray:
    # Redraws (resample) consume the stream within a block, so those draw whole blocks and
    # the stream does not depend on `count`; plain normal draws are sequential, so a shorter
    # draw already is the prefix of a longer one.
    size = CHUNK if spec.whole_blocks else wanted
    latents = sample_latents(
        rng, size, z_dim, truncation=spec.truncation, mode=spec.truncation_mode
    )
    return latents[:wanted]


def _batches(
    sampler: GeneratorSampler,
    class_index: int,
    count: int,
    seed: int,
    spec: DrawSpec,
    scorer: EvaluatorScorer | None,
    max_draws: int,
) -> Iterator[np.ndarray]:
    if not spec.needs_scorer:
        for block in _latent_blocks(sampler.manifest.z_dim, class_index, count, seed, spec):
            yield sampler.generate(np.full(len(block), class_index, dtype=np.int64), block)
        return
    rng, z_dim = class_rng(seed, class_index), sampler.manifest.z_dim
    drawn = kept = 0
    while kept < count:
        if spec.needs_scorer and drawn >= max_draws:
            raise FilterExhausted(spec.failure(kept, drawn, class_index))
        latents = _draw_block(rng, min(CHUNK, max_draws - drawn), z_dim, spec)
        labels = np.full(len(latents), class_index, dtype=np.int64)
        images = sampler.generate(labels, latents)
        drawn += len(latents)
        images = images[spec.keep(scorer, images, labels)][: count - kept]
        kept += len(images)
        if len(images):
            yield images


def _check(
    sampler: GeneratorSampler,
    class_index: int,
    count: int,
    spec: DrawSpec,
    scorer: EvaluatorScorer | None,
    max_draw_factor: int,
) -> None:
    num_classes = len(sampler.manifest.classes)
    if not 0 <= class_index < num_classes:
        raise ValueError(f"class_index must be in 0..{num_classes - 1}, got {class_index}")
    if count < 0 or max_draw_factor < 1:
        raise ValueError(
            f"need count >= 0 and max_draw_factor >= 1, got {count} and {max_draw_factor}"
        )
    if not spec.needs_scorer:
        return
    if scorer is None:
        raise ValueError(f"filter={spec.filter} needs the report's evaluator")
    image = sampler.manifest.image
    if scorer.image_shape != (image.height, image.width, image.channels):
        raise ValueError(f"evaluator takes {scorer.image_shape} images, generator makes {image}")
    if scorer.num_classes != num_classes:
        raise ValueError(f"evaluator has {scorer.num_classes} classes, generator {num_classes}")
    if spec.filter == "manifold" and scorer.manifold is None:
        raise ValueError("filter=manifold needs the report's manifold.npz; rebuild the report")

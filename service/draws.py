"""Turn sampling query parameters (truncation=auto, filter, recipe) into a DrawSpec."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Query

from models.artifact import Manifest, Recipe
from models.drawing import DrawSpec
from models.truncation import MIN_RESAMPLE_TRUNCATION
from service.errors import ApiError

AUTO = "auto"


@dataclass
class DrawQuery:
    """The query parameters that say how latents are drawn and which samples are kept."""

    truncation: Annotated[
        str | None,
        Query(description="t > 0 bounds |z| by t; auto = the model's t*; omit for none"),
    ] = None
    truncation_mode: Annotated[
        Literal["clamp", "resample"],
        Query(
            description="clamp: sign(z) * min(|z|, t); resample: redraw |z| > t "
            f"(needs t >= {MIN_RESAMPLE_TRUNCATION})"
        ),
    ] = "clamp"
    filter: Annotated[
        Literal["none", "confident", "manifold"],
        Query(
            description="confident: keep samples the evaluator assigns to their class with at "
            "least min_confidence; manifold: keep samples inside the real images' k-NN class "
            "manifold in evaluator features"
        ),
    ] = "none"
    min_confidence: Annotated[
        float, Query(gt=0, le=1, description="threshold of filter=confident")
    ] = 0.9


async def draw_query(**params: Any) -> DrawQuery:
    """The DrawQuery of a request, as a coroutine dependency: FastAPI would call the class
    itself on a worker thread (a hand-off per request)."""
    return DrawQuery(**params)


draw_query.__signature__ = inspect.signature(DrawQuery)  # type: ignore[attr-defined]


def _evaluation(manifest: Manifest, what: str) -> Any:
    if manifest.evaluation is None:
        raise ApiError(
            409,
            "report_not_ready",
            f"{what} needs the model's quality report, which is not ready yet; "
            "follow report.status on the model.",
        )
    return manifest.evaluation


def parse_truncation(value: str | None, manifest: Manifest, upper: float) -> float | None:
    """None, a number in (0, upper], or `auto` (the model's t* from its quality report)."""
    if value is None or value == "":
        return None
    if value == AUTO:
        return _evaluation(manifest, "truncation=auto").t_star
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not 0 < number <= upper:
        raise ApiError(
            422,
            "invalid_truncation",
            f"truncation must be a number in (0, {upper}] or 'auto'; got '{value}'.",
        )
    return number


def make_draw(manifest: Manifest, query: DrawQuery, max_truncation: float) -> DrawSpec:
    """The DrawSpec of the query; 409 when it needs a report that is not there, 422 when bad."""
    if query.filter != "none":
        _evaluation(manifest, f"filter={query.filter}")
    truncation = parse_truncation(query.truncation, manifest, max_truncation)
    try:
        return DrawSpec(
            truncation=truncation,
            truncation_mode=query.truncation_mode,
            filter=query.filter,
            min_confidence=query.min_confidence,
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_truncation", f"{exc}.") from exc


def recommended(manifest: Manifest, real_counts: list[int]) -> tuple[list[int], DrawSpec, Recipe]:
    """Per-class synthetic counts and the draw of the model's recommended recipe."""
    recipe = _evaluation(manifest, "recipe=recommended").recipe
    if recipe is None:
        raise ApiError(
            409,
            "no_recipe",
            "The model was trained without a held-out set (holdout_fraction 0), so no recipe "
            "was measured; pass per_class, truncation and filter yourself.",
        )
    counts = [int(round(recipe.ratio * count)) for count in real_counts]
    return counts, DrawSpec.of_recipe(recipe), recipe


PROPORTIONAL = "proportional"


def per_class_counts(
    manifest: Manifest,
    classes: list[dict[str, Any]],
    per_class: str | None,
    total: int | None,
) -> list[int]:
    """Synthetic images per class: `per_class` of each (100 when unset), or with
    per_class=proportional `total` images (100 per class when unset) shared in proportion to
    the model's class probabilities: a vcagan model's P(C), else its dataset's class counts."""
    k = len(classes)
    if per_class != PROPORTIONAL:
        if total is not None:
            raise ApiError(422, "invalid_per_class", "total goes with per_class=proportional.")
        count = 100 if per_class is None else int(per_class)  # digits: the route's pattern
        return [count] * k  # the archive's image cap is the route's check
    total = 100 * k if total is None else total
    clusters = manifest.clusters
    weights = np.asarray(
        clusters.probabilities if clusters else [c.get("count") or 0 for c in classes], float
    )
    return largest_remainder(weights / weights.sum(), total)


def largest_remainder(shares: np.ndarray, total: int) -> list[int]:
    """Whole counts summing to `total` in proportion to `shares` (Hamilton's method)."""
    exact = shares * total
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    return counts.tolist()

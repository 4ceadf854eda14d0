"""The quality report: how close a model's synthetic images come to the real ones, and
whether adding them actually helps a classifier (torch).

Everything is judged on the held-out split the GAN never saw (`training.split`). An
evaluator CNN trained on the train split gives the feature space of the distribution
metrics, the confidence that `filter=confident` uses and the real class manifold that
`filter=manifold` uses. Each recipe (how many synthetic images, which truncation, which
filter) is scored by training the same small classifier, with classic augmentation, on
real + synthetic images and comparing its held-out accuracy with real-only training under
the same budget and seeds (`training.report_trials`). On the best recipe's images, a few
mixing settings (batch share, loss weight, soft or hard labels, real-only end) are then
trained through `ganaug.data` as a user would (`training.report_mixing`), and the
literature's defaults stand unless one beats them beyond noise. Synthetic data is
recommended only when the recipe, mixed that way, beats real-only training by more than
the noise of the held-out set.

The report is a list of parts (stylegan2-ada's metric registry in spirit): each is one
function, registered with `@register_part(name)`, that returns one typed result
(`training.report_results`) stored as `Findings.<name>`; `build_report` runs them in
order and writes their records as report.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from models.artifact import (
    REPORT_FILE,
    Evaluation,
    SoftLabelsInfo,
    TruncationPoint,
    atomic_write_bytes,
)
from models.evaluator import EVALUATOR_FILE
from models.manifold import MANIFOLD_FILE
from training.report_notes import notes
from training.report_record import record
from training.report_results import (
    Cas,
    ClassAccuracy,
    Decision,
    DistributionReport,
    DownstreamLift,
    EvaluatorSummary,
    MixingSearch,
    RatioStudy,
    RecipeRow,
    SoftLabelSummary,
    SweepRow,
)
from training.report_run import ReportRun
from training.report_setup import REPORT_BUDGETS, ReportBudget, Stages, Truncation
from training.report_trials import best_recipe, recommend

__all__ = ["REPORT_BUDGETS", "REPORT_FILE", "ReportBudget", "build_report", "register_part"]

# /2: inception_accuracy is evaluator_sample_accuracy; metrics.features names the features
REPORT_FORMAT = "ganaug.report/2"


class Findings:
    """The parts' results so far, each under its part's name (set in running order)."""

    evaluator: EvaluatorSummary
    soft_labels: SoftLabelSummary
    metrics: DistributionReport
    truncation_sweep: list[SweepRow]
    t_star: Truncation
    recipes: list[RecipeRow]
    mixing: MixingSearch | None
    decision: Decision
    cas: Cas | None
    ratio_study: RatioStudy
    pictures: dict[str, str]
    downstream_lift: DownstreamLift | None
    per_class: list[ClassAccuracy]
    notes: list[str]


Part = Callable[[ReportRun, Findings], object]
PARTS: dict[str, Part] = {}  # name -> part, in running order


def register_part(name: str) -> Callable[[Part], Part]:
    """Register fn(run, found) -> typed result as the part whose result is found.<name>."""
    if name not in Findings.__annotations__:
        raise ValueError(f"{name} is not a field of Findings; declare its result type there")

    def register(part: Part) -> Part:
        PARTS[name] = part
        return part

    return register


@register_part("evaluator")
def evaluator(run: ReportRun, found: Findings) -> EvaluatorSummary:
    """The evaluator CNN, its class manifold, and the synthetic pool and trials built on them."""
    return run.train_evaluator()


@register_part("soft_labels")
def soft_labels(run: ReportRun, found: Findings) -> SoftLabelSummary:
    """The evaluator ensemble whose tempered probabilities label synthetic images."""
    return run.soft_labeller()


@register_part("metrics")
def sample_distribution(run: ReportRun, found: Findings) -> DistributionReport:
    """FID, KID, PRDC and evaluator sample accuracy of untruncated samples."""
    return run.distribution()


@register_part("truncation_sweep")
def truncation_sweep(run: ReportRun, found: Findings) -> list[SweepRow]:
    """Held-out accuracy and fidelity with synthetic images at each truncation."""
    return run.trials.truncation_sweep()


@register_part("t_star")
def best_truncation(run: ReportRun, found: Findings) -> Truncation:
    """The sweep's most accurate truncation (first of equals: the budget's order)."""
    rows = found.truncation_sweep
    return max(rows, key=lambda row: row.comparison.accuracy).truncation if rows else None


@register_part("recipes")
def recipe_search(run: ReportRun, found: Findings) -> list[RecipeRow]:
    """Every recipe against real-only training; row 0 is real-only."""
    return run.trials.recipe_search(found.t_star)


@register_part("mixing")
def mixing_search(run: ReportRun, found: Findings) -> MixingSearch | None:
    """How to mix the best recipe's images (None: no recipe tried, or no factors to vary)."""
    best = best_recipe(found.recipes)
    if best is None or not run.budget.mixing_factors:
        return None
    return run.trials.mixing_search(best.mix)


@register_part("decision")
def decision(run: ReportRun, found: Findings) -> Decision:
    """Whether the best recipe, mixed as searched, beats real-only training beyond noise
    (and confirms); if not, whether the benchmark's recipe does no harm."""
    trials = run.trials
    return recommend(
        found.recipes, run.budget.alpha, trials.confirm, found.mixing, trials.benchmark_check
    )


@register_part("cas")
def cas(run: ReportRun, found: Findings) -> Cas | None:
    """Classification accuracy score of untruncated samples."""
    return run.trials.cas()


@register_part("ratio_study")
def ratio_study(run: ReportRun, found: Findings) -> RatioStudy:
    """Accuracy as synthetic images at t* are added or replace real ones."""
    return run.trials.ratio_study(found.t_star)


@register_part("pictures")
def pictures(run: ReportRun, found: Findings) -> dict[str, str]:
    """The report's PNG pictures, by name."""
    return run.pictures(
        found.t_star, found.truncation_sweep, found.recipes, found.mixing, found.decision.z
    )


@register_part("downstream_lift")
def downstream_lift(run: ReportRun, found: Findings) -> DownstreamLift | None:
    """Real + synthetic at t* (the sweep's ratio) vs real only: the sweep's best row."""
    row = next((row for row in found.truncation_sweep if row.truncation == found.t_star), None)
    return DownstreamLift(run.budget.sweep_ratio, found.t_star, row.comparison) if row else None


@register_part("per_class")
def per_class(run: ReportRun, found: Findings) -> list[ClassAccuracy]:
    """Images and held-out accuracy per class."""
    return run.per_class(found.decision)


@register_part("notes")
def report_notes(run: ReportRun, found: Findings) -> list[str]:
    """Plain sentences that say what the numbers mean."""
    return notes(run.data, found.truncation_sweep, found.recipes, found.mixing, found.decision)


def build_report(
    model_dir: Path,
    dataset_dir: Path,
    *,
    budget: ReportBudget = REPORT_BUDGETS["standard"],
    progress_fn: Callable[[str, float], None] | None = None,
    abort_fn: Callable[[], bool] | None = None,
    device: str | None = None,
) -> dict:
    """Measure a trained model's samples and find whether, and how, to add them to real data.

    Writes report.json, report/<picture>.png, evaluator.onnx and soft_labels.onnx into
    model_dir, and the findings (t*, the truncation sweep, the recommended recipe with how
    to mix it, the soft labeller) into the manifest.

    Args:
        model_dir: written by `training.run`, with split.json (none: no held-out images).
        dataset_dir: the stored dataset the model was trained on.
        progress_fn: called with (stage, overall fraction in [0, 1]) as the report advances.
        abort_fn: returning True stops the report with `TrainingAborted` before the next
            classifier training or picture.

    Returns:
        The report, as written to report.json.
    """
    model_dir, dataset_dir = Path(model_dir), Path(dataset_dir)
    stages = Stages(progress_fn, abort_fn)
    stages.start("data")
    run = ReportRun(model_dir, dataset_dir, budget, stages, device)
    found = Findings()
    for name, part in PARTS.items():
        setattr(found, name, part(run, found))
    stages.start("write")
    report = report_json(run, found)
    text = json.dumps(report, indent=2, allow_nan=False) + "\n"
    atomic_write_bytes(model_dir / REPORT_FILE, text.encode())
    run.manifest.model_copy(update={"evaluation": evaluation(found)}).save(model_dir)
    stages.finish()
    return report


def report_json(run: ReportRun, found: Findings) -> dict:
    """Every part's record, laid out as report.json has always been (strict JSON: no NaN)."""
    timings = run.stages.timings_s
    return _json_ready(
        {
            "format": REPORT_FORMAT,
            "model_id": run.manifest.model_id,
            "created_at": datetime.now(UTC).isoformat(),
            "heldout": run.data.heldout,
            "notes": found.notes,
            "recipe": record(found.decision.recipe),
            "synthetic_helped": found.decision.helped,
            "decision": record(found.decision),
            "t_star": found.t_star,
            "truncation_sweep": record(found.truncation_sweep),
            "recipes": record(found.recipes),
            "mixing": record(found.mixing),
            "downstream_lift": record(found.downstream_lift),
            "cas": record(found.cas),
            "ratio_study": record(found.ratio_study),
            "metrics": record(found.metrics),
            "evaluator": record(found.evaluator),
            "soft_labels": record(found.soft_labels),
            "per_class": record(found.per_class),
            "pictures": found.pictures,
            "budget": asdict(run.budget),
            "timings_s": {**timings, "total": round(sum(timings.values()), 2)},
        }
    )


def _json_ready(value):
    """Replace non-finite floats with None and tuples with lists, so json.dumps stays strict."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def evaluation(found: Findings) -> Evaluation:
    """The manifest's summary of a report."""
    sweep = [
        TruncationPoint(truncation=row.truncation, accuracy=row.comparison.accuracy)
        for row in found.truncation_sweep
    ]
    return Evaluation(
        t_star=found.t_star,
        truncation_sweep=sweep,
        recipe=found.decision.recipe,
        evaluator_file=EVALUATOR_FILE,
        manifold_file=MANIFOLD_FILE,
        report_file=REPORT_FILE,
        soft_labels=SoftLabelsInfo(**asdict(found.soft_labels)),
    )

"""The quality report's typed results: the mixes it compares and what each part found.

Each result is a frozen dataclass that the report's code reads by attribute; `record()`
gives what report.json holds for it (dataclasses.asdict, with the comparisons flattened
into their rows as report.json has always laid them out).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

from models.artifact import FEATURES_NOTE, Recipe
from models.drawing import DrawSpec
from training.classifier import ClassifierBudget
from training.report_record import Mixing, Record, record
from training.report_setup import BenchmarkRecipe, Truncation


def one_sided_z(alpha: float, comparisons: int = 1) -> float:
    """Standard errors a lift must exceed to be more than luck at `alpha`, one-sided,
    Bonferroni-corrected over `comparisons` (at least one)."""
    return NormalDist().inv_cdf(1 - alpha / max(comparisons, 1))


@dataclass(frozen=True)
class Mix:
    """A classifier's training set: some of the real train images plus synthetic ones."""

    ratio: float = 0.0  # synthetic per class, as a multiple of the real train count
    draw: DrawSpec = DrawSpec()  # how the synthetic images are drawn
    real_fraction: float = 1.0  # share of each class's real train images kept

    def settings(self) -> dict:
        """The recipe's settings as the recipe table and the manifest's Recipe hold them
        (min_confidence 0 where the filter is not `confident`)."""
        confident = self.draw.filter == "confident"
        return {
            "ratio": self.ratio,
            "truncation": self.draw.truncation,
            "filter": self.draw.filter,
            "min_confidence": self.draw.min_confidence if confident else 0.0,
        }


BASELINE = Mix()  # real images only


@dataclass(frozen=True)
class Comparison(Record):
    """A mix's classifiers against real-only training on the same held-out images."""

    accuracy: float  # mean over classifier seeds
    accuracy_std: float  # across classifier seeds
    lift: float  # accuracy - real-only accuracy
    lift_se: float  # paired standard error of the lift

    @classmethod
    def paired(cls, correct: np.ndarray, baseline: np.ndarray) -> Comparison:
        """From bool (seeds, N) right answers of the mix's and the baseline's classifiers.

        The standard error comes from per-image differences on the same held-out images, so
        it measures how much the lift could move with a different held-out sample.
        """
        per_image = correct.mean(axis=0) - baseline.mean(axis=0)
        n = len(per_image)
        return cls(
            accuracy=float(correct.mean()),
            accuracy_std=float(correct.mean(axis=1).std()),
            lift=float(per_image.mean()),
            lift_se=float(per_image.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
        )


@dataclass(frozen=True)
class DistributionMetrics(Record):
    """FID, KID and PRDC of candidate features vs reference ones (None: too few images)."""

    fid: float | None
    kid: float | None
    kid_std: float | None
    prdc_k: int | None
    precision: float | None
    recall: float | None
    density: float | None
    coverage: float | None


@dataclass(frozen=True)
class MetricsBlock(Record):
    """The distribution metrics of one class's samples (or all of them)."""

    reference_images: int
    synthetic_images: int
    evaluator_sample_accuracy: float  # share of samples the evaluator gives their own class
    synthetic: DistributionMetrics
    real_train: DistributionMetrics | None  # the floor: real train images (None: no held-out)


@dataclass(frozen=True)
class DistributionReport(Record):
    """The report's `metrics`: untruncated samples overall and per class."""

    reference: str  # "heldout", or "train" without held-out images
    truncation: Truncation
    overall: MetricsBlock
    per_class: dict[str, MetricsBlock]  # by class name, in class order

    def record(self) -> dict:
        per_class = [{"class": name, **block.record()} for name, block in self.per_class.items()]
        return {
            "features": FEATURES_NOTE,
            "reference": self.reference,
            "truncation": self.truncation,
            "overall": self.overall.record(),
            "per_class": per_class,
        }


@dataclass(frozen=True)
class EvaluatorSummary(Record):
    """The evaluator CNN and the class manifold built from its features."""

    file: str
    manifold_file: str
    manifold_k: int
    budget: ClassifierBudget
    heldout_accuracy: float | None  # None: no held-out images


@dataclass(frozen=True)
class SoftLabelSummary(Record):
    """The archive's soft labeller: evaluator-like classifiers, one graph at a temperature."""

    file: str
    members: int
    temperature: float
    # top-class accuracy of the same ensemble trained on the train split (the one the
    # report's trials label with); None: no held-out images
    heldout_accuracy: float | None
    trained_on: int  # images the served members trained on: train and held-out ones


@dataclass(frozen=True)
class SweepRow(Record):
    """Real + synthetic images at one truncation: accuracy and the samples' fidelity."""

    truncation: Truncation
    comparison: Comparison
    evaluator_sample_accuracy: float
    fidelity: DistributionMetrics  # the samples vs the held-out images

    def record(self) -> dict:
        return {
            "truncation": self.truncation,
            **self.comparison.record(),
            "evaluator_sample_accuracy": self.evaluator_sample_accuracy,
            **self.fidelity.record(),
        }


@dataclass(frozen=True)
class RecipeRow(Record):
    """One recipe of the search and how it compared (None: skipped, with the reason)."""

    mix: Mix
    comparison: Comparison | None
    reason: str | None = None

    @property
    def status(self) -> str:
        return "skipped" if self.comparison is None else "ok"

    def record(self) -> dict:
        outcome = {"reason": self.reason} if self.comparison is None else self.comparison.record()
        return {**self.mix.settings(), "status": self.status, **outcome}


@dataclass(frozen=True)
class MixingRow(Record):
    """One mixing setting on the searched recipe's images."""

    setting: str  # "defaults", "naive", or the one factor changed from the defaults
    mixing: Mixing
    comparison: Comparison  # against real-only training
    over_defaults: Comparison  # against the defaults' classifiers, image by image

    def record(self) -> dict:
        return {
            "setting": self.setting,
            **self.mixing.record(),
            **self.comparison.record(),
            "lift_over_defaults": self.over_defaults.lift,
            "lift_over_defaults_se": self.over_defaults.lift_se,
        }


@dataclass(frozen=True)
class MixingSearch(Record):
    """Mixing settings compared on one recipe's synthetic images; the defaults stand
    unless another setting beats them beyond noise."""

    mix: Mix  # the recipe searched: the most accurate of the recipe search
    rows: list[MixingRow]  # the defaults first
    alpha: float
    z: float  # standard errors the best alternative must beat the defaults by (Bonferroni)
    required_lift: float | None  # z x the best alternative's standard error; None: none tried
    chosen: MixingRow

    @classmethod
    def judge(cls, mix: Mix, rows: list[MixingRow], alpha: float) -> MixingSearch:
        """Choose among rows (defaults first): the most accurate alternative if its paired
        lift over the defaults exceeds z standard errors, z the one-sided normal quantile
        at alpha / (alternatives), else the defaults. The best of several noisy settings
        beats the defaults by luck alone more often than one would."""
        defaults, alternatives = rows[0], rows[1:]
        best = _most_accurate(alternatives)
        z = one_sided_z(alpha, len(alternatives))
        required = z * best.over_defaults.lift_se if best is not None else None
        wins = best is not None and best.over_defaults.lift > max(0.0, required or 0.0)
        return cls(mix, rows, alpha, z, required, best if wins and best else defaults)

    @property
    def beat_defaults(self) -> bool:
        return self.chosen is not self.rows[0]

    @property
    def best_alternative(self) -> MixingRow | None:
        """The most accurate setting other than the defaults (first of equals)."""
        return _most_accurate(self.rows[1:])

    def record(self) -> dict:
        return {
            **self.mix.settings(),
            "settings": record(self.rows),
            "alpha": self.alpha,
            "z": self.z,
            "required_lift": self.required_lift,
            "chosen": self.chosen.setting,
            "beat_defaults": self.beat_defaults,
        }


def _most_accurate(rows: list[MixingRow]) -> MixingRow | None:
    return max(rows, key=lambda row: row.comparison.accuracy, default=None)


@dataclass(frozen=True)
class Confirmation(Record):
    """The best recipe against real-only training, both at the downstream budget."""

    comparison: Comparison
    budget: ClassifierBudget
    z: float  # one-sided normal quantile at alpha: one recipe, no search to correct for
    required_lift: float

    @classmethod
    def judge(cls, comparison: Comparison, budget: ClassifierBudget, alpha: float) -> Confirmation:
        z = one_sided_z(alpha)
        return cls(comparison, budget, z, z * comparison.lift_se)

    @property
    def helped(self) -> bool:
        return self.comparison.lift > max(0.0, self.required_lift)

    def record(self) -> dict:
        return {
            **self.comparison.record(),
            "budget": asdict(self.budget),
            "z": self.z,
            "required_lift": self.required_lift,
        }


@dataclass(frozen=True)
class BenchmarkCheck(Record):
    """The benchmark's recipe on this dataset's held-out images, against real-only
    training, both at the downstream budget: recommended unless it hurts beyond noise."""

    mix: Mix
    mixing: Mixing
    comparison: Comparison
    budget: ClassifierBudget
    z: float  # one-sided normal quantile at alpha
    evidence: str  # what the benchmark measured

    @classmethod
    def judge(
        cls,
        mix: Mix,
        recipe: BenchmarkRecipe,
        comparison: Comparison,
        budget: ClassifierBudget,
        alpha: float,
    ) -> BenchmarkCheck:
        """The check of `recipe` trained as `mix`: harmful beyond the one-sided z at alpha
        (one comparison, so no correction)."""
        z = one_sided_z(alpha)
        return cls(mix, recipe.mixing, comparison, budget, z, recipe.evidence)

    @property
    def harmful(self) -> bool:
        """Worse than real images only by more than z standard errors."""
        return self.comparison.lift < -self.z * self.comparison.lift_se

    def record(self) -> dict:
        return {
            **self.mix.settings(),
            **self.mixing.record(),
            **self.comparison.record(),
            "budget": asdict(self.budget),
            "z": self.z,
            "harmful": self.harmful,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Decision(Record):
    """Whether synthetic data helped, and the recipe the manifest records for it."""

    helped: bool
    best: RecipeRow | None  # the most accurate synthetic recipe tried
    recipes_compared: int  # recipes and mixing settings: the comparisons z corrects for
    alpha: float
    z: float  # standard errors the screened lift must exceed (Bonferroni over the above)
    screened: Comparison | None  # the best recipe as served: with the chosen mixing if searched
    mixing: MixingRow | None  # the mixing search's choice (None: not searched)
    required_lift: float | None
    confirmation: Confirmation | None  # the best recipe at the downstream budget
    recipe: Recipe | None  # report.json's `recipe`, not part of its `decision`
    # the benchmark's recipe where the search could not tell (None: not tried)
    benchmark: BenchmarkCheck | None = None

    @property
    def by_benchmark(self) -> bool:
        """The recipe is the benchmark's: the search could not tell, and it did no harm."""
        return not self.helped and self.benchmark is not None and not self.benchmark.harmful

    @property
    def mix(self) -> Mix:
        """The recommended training set: the best recipe's, the benchmark's, or real only."""
        if self.helped and self.best is not None:
            return self.best.mix
        return self.benchmark.mix if self.by_benchmark else BASELINE

    @property
    def served_mixing(self) -> Mixing | None:
        """How the recommended mix is mixed (None: shuffled, as the recipe search trains,
        or no synthetic rows to mix)."""
        if self.by_benchmark:
            return self.benchmark.mixing
        return self.mixing.mixing if self.helped and self.mixing is not None else None

    @property
    def measured(self) -> Comparison | None:
        """The recommended mix against real-only training, as measured (the confirmation's
        where it ran); None where real images alone are recommended."""
        if self.helped:
            return self.confirmation.comparison if self.confirmation else self.screened
        return self.benchmark.comparison if self.by_benchmark else None

    def record(self) -> dict:
        confirmation = self.confirmation
        return {
            "helped": self.helped,
            "best": self.best.record() if self.best is not None else None,
            "recipes_compared": self.recipes_compared,
            "alpha": self.alpha,
            "z": self.z,
            "screened": self.screened.record() if self.screened is not None else None,
            "mixing": self.mixing.setting if self.mixing is not None else None,
            "required_lift": self.required_lift,
            "confirmation": confirmation.record() if confirmation is not None else None,
            "benchmark": self.benchmark.record() if self.benchmark is not None else None,
            "by_benchmark": self.by_benchmark,
        }


@dataclass(frozen=True)
class Cas(Record):
    """Classification accuracy score of untruncated samples, next to real-only training."""

    truncation: Truncation
    accuracy: float  # classifiers trained on synthetic images only
    real_accuracy: float  # the same classifiers on the real train images
    gap: float  # real_accuracy - accuracy


@dataclass(frozen=True)
class RatioPoint:
    """One point of the ratio study."""

    share: float  # extra: synthetic per real image; fixed_total: synthetic share of the set
    comparison: Comparison


@dataclass(frozen=True)
class RatioStudy(Record):
    """Accuracy as synthetic images are added (extra) or replace real ones (fixed total)."""

    truncation: Truncation
    filter: str | None  # None: no held-out images, nothing studied (and no `filter` key)
    extra: list[RatioPoint]
    fixed_total: list[RatioPoint]

    def record(self) -> dict:
        def points(key: str, rows: list[RatioPoint]) -> list[dict]:
            return [{key: row.share, **row.comparison.record()} for row in rows]

        drawn = {} if self.filter is None else {"filter": self.filter}
        return {
            "truncation": self.truncation,
            **drawn,
            "extra": points("ratio", self.extra),
            "fixed_total": points("synthetic_fraction", self.fixed_total),
        }


@dataclass(frozen=True)
class DownstreamLift(Record):
    """Real + synthetic at t* (the sweep's ratio) vs real only: the sweep's best row."""

    ratio: float
    truncation: Truncation
    comparison: Comparison

    def record(self) -> dict:
        return {"ratio": self.ratio, "truncation": self.truncation, **self.comparison.record()}


@dataclass(frozen=True)
class HeldoutAccuracy(Record):
    """One class's held-out images and the accuracy of each classifier on them."""

    heldout_images: int
    evaluator_accuracy: float | None  # None: the class has no held-out images
    baseline_accuracy: float | None
    recipe_accuracy: float | None


@dataclass(frozen=True)
class ClassAccuracy(Record):
    """A row of the report's `per_class` table."""

    name: str
    train_images: int
    heldout: HeldoutAccuracy | None  # None: no held-out images (and no such columns)

    def record(self) -> dict:
        columns = self.heldout.record() if self.heldout is not None else {}
        return {"class": self.name, "train_images": self.train_images, **columns}

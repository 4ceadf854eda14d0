"""The quality report's classifier comparisons (torch): synthetic images per draw,
classifiers trained on real + synthetic mixes, and the studies built from them (the
truncation sweep, the recipe search, CAS, the ratio study) with the recommendation.

Each mix is scored by training the same small classifier, with classic augmentation, on
it and comparing its held-out accuracy with real-only training under the same budget and
seeds, image by image, so every lift comes with a paired standard error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from models.artifact import Recipe
from models.drawing import FILTERS, DrawSpec, FilterExhausted, draw_class_images
from models.evaluator import EvaluatorScorer
from models.image_classifier import ImageClassifier
from models.sampler import GeneratorSampler
from training import metrics
from training.classifier import ClassifierBudget, predict_proba, train_classifier
from training.report_mixing import default_mixing, mixing_grid, train_mixed
from training.report_record import Mixing
from training.report_results import (
    BASELINE,
    BenchmarkCheck,
    Cas,
    Comparison,
    Confirmation,
    Decision,
    DistributionMetrics,
    Mix,
    MixingRow,
    MixingSearch,
    RatioPoint,
    RatioStudy,
    RecipeRow,
    SweepRow,
    one_sided_z,
)
from training.report_setup import RealData, ReportBudget, Stages, Truncation


class SyntheticPool:
    """Synthetic images per draw spec, generated once with seeded latents.

    Every truncation starts from the same latents, clamped differently, so the sweep
    compares truncations on common random numbers rather than on different draws.
    """

    def __init__(
        self,
        sampler: GeneratorSampler,
        scorer: EvaluatorScorer,
        train_counts: np.ndarray,
        budget: ReportBudget,
    ):
        self.sampler, self.scorer, self.budget = sampler, scorer, budget
        self.counts = train_counts
        self._images: dict[DrawSpec, list[np.ndarray] | FilterExhausted] = {}

    def per_class(self, draw: DrawSpec) -> np.ndarray:
        """How many images of every class the pool draws with `draw`: enough for the most
        any classifier trains on; more for the untruncated draw where the benchmark's
        recipe applies (its ratio). Latents come in a fixed order per class, so a smaller
        draw's latents are the first ones of a larger draw's."""
        budget = self.budget
        ratio = budget.max_ratio
        recipe = budget.benchmark_for(self.counts)
        if recipe is not None and draw == budget.draw(None):
            ratio = max(ratio, recipe.ratio)
        return np.ceil(ratio * self.counts).astype(int)

    def take(self, draw: DrawSpec, ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """round(ratio x real count) images of every class and their labels.

        Raises:
            FilterExhausted: the filter (confident, manifold) kept too few images.
        """
        images = self._draw(draw)
        wanted = np.minimum(np.round(ratio * self.counts).astype(int), self.per_class(draw))
        x = np.concatenate(
            [class_images[:n] for class_images, n in zip(images, wanted, strict=True)]
        )
        return x, np.repeat(np.arange(len(wanted)), wanted)

    def _draw(self, draw: DrawSpec) -> list[np.ndarray]:
        if draw not in self._images:
            seed = self.budget.seed
            try:
                self._images[draw] = [
                    draw_class_images(self.sampler, c, int(n), seed, draw, self.scorer)
                    for c, n in enumerate(self.per_class(draw))
                ]
            except FilterExhausted as exc:
                self._images[draw] = exc  # remembered: the same draw would fail again
        drawn = self._images[draw]
        if isinstance(drawn, FilterExhausted):
            raise drawn
        return drawn


def heldout_correct(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    num_classes: int,
    budget: ClassifierBudget,
    seed: int,
    device: str | None = None,
) -> np.ndarray:
    """Which `test` images a classifier trained on `train` (classic augmentation) gets right.

    Returns:
        bool (N,) for the N test images.
    """
    kwargs = dict(num_classes=num_classes, budget=budget, seed=seed, device=device)
    model = train_classifier(*train, classic_augment=True, **kwargs)
    return predict_proba(model, test[0]).argmax(axis=1) == test[1]


def classification_accuracy_score(
    synthetic: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    num_classes: int,
    budget: ClassifierBudget,
    seeds: tuple[int, ...],
    device: str | None = None,
) -> float:
    """CAS (Ravuri & Vinyals 2019): real-test accuracy of classifiers trained on synthetic only."""
    kwargs = dict(num_classes=num_classes, budget=budget, device=device)
    return float(
        np.mean([heldout_correct(synthetic, test, seed=s, **kwargs).mean() for s in seeds])
    )


class Trials:
    """Trains quick classifiers on mixes, remembers which held-out images each got right,
    and runs the studies that compare mixes with real-only training.

    A classifier trains on a mix either as the recipe search does (every row shuffled
    together at weight 1 with hard labels: `mixing` None) or with a Mixing, through
    ganaug.data as a user would (`training.report_mixing.train_mixed`).
    """

    def __init__(
        self,
        data: RealData,
        pool: SyntheticPool,
        budget: ReportBudget,
        device: str | None,
        stages: Stages,
        test_features: np.ndarray,
    ):
        self.data, self.pool, self.budget, self.device = data, pool, budget, device
        self.stages, self.test_features = stages, test_features  # evaluator features (N, D)
        rng = np.random.default_rng(budget.seed)
        # One fixed order per class, so a smaller real share is a subset of a larger one.
        self.real_order = [
            rng.permutation(np.flatnonzero(data.y_train == c)) for c in range(len(data.classes))
        ]
        self._correct: dict[tuple, np.ndarray] = {}  # (mix, mixing, seed, budget) -> (N,)
        self.labeller: ImageClassifier | None = None  # soft_labels.onnx, once it exists

    def correct(
        self, mix: Mix, budget: ClassifierBudget | None = None, mixing: Mixing | None = None
    ) -> np.ndarray:
        """bool (seeds, held-out images): right answers of the mix's classifier per seed,
        trained with `budget` (by default the quick one) and `mixing` (None: shuffled)."""
        if mix.ratio == 0:  # no synthetic rows: the draw and the mixing do not matter
            mix, mixing = Mix(real_fraction=mix.real_fraction), None
        budget = budget or self.budget.quick
        return np.stack(
            [self._correct_one(mix, mixing, seed, budget) for seed in self.budget.seeds]
        )

    def _correct_one(
        self, mix: Mix, mixing: Mixing | None, seed: int, budget: ClassifierBudget
    ) -> np.ndarray:
        key = (mix, mixing, seed, budget)
        if key not in self._correct:
            self.stages.tick()
            kwargs = dict(num_classes=len(self.data.classes), budget=budget, seed=seed)
            real, synthetic = self.rows(mix)
            if mixing is None:
                train = tuple(np.concatenate(pair) for pair in zip(real, synthetic, strict=True))
                self._correct[key] = heldout_correct(
                    train, self.data.test, device=self.device, **kwargs
                )
            else:
                targets = self.synthetic_targets(synthetic, mixing)
                model = train_mixed(
                    real, (synthetic[0], targets), mixing, device=self.device, **kwargs
                )
                x_test, y_test = self.data.test
                self._correct[key] = predict_proba(model, x_test).argmax(axis=1) == y_test
        return self._correct[key]

    def synthetic_targets(self, synthetic: tuple[np.ndarray, np.ndarray], mixing: Mixing):
        """float32 (M, K) targets of synthetic rows as the archive's labels.csv gives them:
        the soft labeller's probabilities, or the one-hot class each was drawn for."""
        images, labels = synthetic
        if mixing.labels == "hard":
            return np.eye(len(self.data.classes), dtype=np.float32)[labels]
        if self.labeller is None:
            raise RuntimeError("soft-labelled trials need the soft labeller: build it first")
        return self.labeller.probs(images)

    def compare(
        self, mix: Mix, budget: ClassifierBudget | None = None, mixing: Mixing | None = None
    ) -> Comparison:
        """The mix against real-only training, both trained with `budget` (default: quick)."""
        return Comparison.paired(self.correct(mix, budget, mixing), self.correct(BASELINE, budget))

    def rows(self, mix: Mix) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The real (images, labels) of a mix and its synthetic ones (none at ratio 0)."""
        keep = np.sort(
            np.concatenate(
                [order[: round(mix.real_fraction * len(order))] for order in self.real_order]
            )
        )
        real = self.data.x_train[keep], self.data.y_train[keep]
        if mix.ratio > 0:
            return real, self.pool.take(mix.draw, mix.ratio)
        return real, (real[0][:0], real[1][:0])

    def truncation_sweep(self) -> list[SweepRow]:
        """Held-out accuracy with real + synthetic images at each truncation."""
        truncations, ratio = self.budget.truncations, self.budget.sweep_ratio
        self.stages.start("truncation_sweep", (len(truncations) + 1) * len(self.budget.seeds))
        if not self.data.heldout:
            return []
        return [self._sweep_row(t, ratio) for t in truncations]

    def _sweep_row(self, truncation: Truncation, ratio: float) -> SweepRow:
        mix = Mix(ratio, self.budget.draw(truncation))
        comparison = self.compare(mix)
        x, y = self.pool.take(mix.draw, ratio)
        probs, feats = self.pool.scorer.score(x)
        fidelity = distribution_metrics(self.test_features, feats, self.budget)
        return SweepRow(truncation, comparison, float(np.mean(probs.argmax(1) == y)), fidelity)

    def recipe_search(self, t_star: Truncation) -> list[RecipeRow]:
        """Every recipe (ratio x truncation x filter) vs real-only training; row 0 is real-only."""
        budget = self.budget
        mixes = [
            Mix(ratio, budget.draw(t, f))
            for ratio in budget.ratios
            for t in dict.fromkeys((None, t_star))
            for f in FILTERS
        ]
        self.stages.start("recipe_search", (len(mixes) + 1) * len(budget.seeds))
        if not self.data.heldout:
            return []
        rows = []
        for mix in [BASELINE, *mixes]:
            try:
                rows.append(RecipeRow(mix, self.compare(mix)))
            except FilterExhausted as exc:
                rows.append(RecipeRow(mix, None, reason=str(exc)))
        return rows

    def mixing_search(self, mix: Mix) -> MixingSearch:
        """The budget's mixing settings on the mix's synthetic images, each against real-only
        training and against the literature's defaults; the defaults stand unless a setting
        beats them beyond noise (MixingSearch.judge)."""
        grid = mixing_grid(mix.ratio, self.budget.mixing_factors)
        self.stages.start("mixing", len(grid) * len(self.budget.seeds))
        defaults = self.correct(mix, mixing=grid[0][1])
        rows = [
            MixingRow(
                setting,
                mixing,
                self.compare(mix, mixing=mixing),
                Comparison.paired(self.correct(mix, mixing=mixing), defaults),
            )
            for setting, mixing in grid
        ]
        return MixingSearch.judge(mix, rows, self.budget.alpha)

    def confirm(self, mix: Mix, mixing: Mixing | None = None) -> Confirmation:
        """The mix (with `mixing`; None: shuffled) against real-only training, both at the
        confirmation budget (the downstream classifier's): quick classifiers favour
        synthetic data that a fully trained one does not need."""
        budget = self.budget.confirm
        self.stages.start("confirm", 2 * len(self.budget.seeds))
        comparison = self.compare(mix, budget, mixing)
        return Confirmation.judge(comparison, budget, self.budget.alpha)

    def benchmark_check(self) -> BenchmarkCheck | None:
        """The budget's benchmark recipe (untruncated, unfiltered) against real-only
        training, both at the downstream budget; None where it does not apply: no recipe,
        no held-out images, or a class with more train images than it was measured for."""
        recipe = self.budget.benchmark_for(self.data.train_counts)
        # started even when skipped, so overall progress moves on by the stage's weight
        self.stages.start("benchmark_recipe", 2 * len(self.budget.seeds))
        if recipe is None or not self.data.heldout:
            return None
        mix = Mix(recipe.ratio, self.budget.draw(None))
        comparison = self.compare(mix, self.budget.confirm, recipe.mixing)
        return BenchmarkCheck.judge(mix, recipe, comparison, self.budget.confirm, self.budget.alpha)

    def cas(self) -> Cas | None:
        """Classification accuracy score of untruncated samples, next to real-only training."""
        self.stages.start("cas", len(self.budget.seeds))
        if not self.data.heldout:
            return None
        self.stages.tick()
        cas = classification_accuracy_score(
            self.pool.take(self.budget.draw(None), 1.0),
            self.data.test,
            num_classes=len(self.data.classes),
            budget=self.budget.quick,
            seeds=self.budget.seeds,
            device=self.device,
        )
        real = float(self.correct(BASELINE).mean())
        return Cas(truncation=None, accuracy=cas, real_accuracy=real, gap=real - cas)

    def ratio_study(self, t_star: Truncation) -> RatioStudy:
        """Accuracy as synthetic images are added (extra) or replace real ones (fixed total)."""
        budget = self.budget
        self.stages.start("ratio_study", len(budget.fixed_total_fractions) * len(budget.seeds))
        if not self.data.heldout:
            return RatioStudy(truncation=None, filter=None, extra=[], fixed_total=[])
        draw = budget.draw(t_star)
        extra = [RatioPoint(r, self.compare(Mix(r, draw))) for r in (0.0, *budget.ratios)]
        fixed = [
            RatioPoint(f, self.compare(Mix(f, draw, real_fraction=1 - f)))
            for f in (0.0, *budget.fixed_total_fractions)
        ]
        return RatioStudy(truncation=t_star, filter=draw.filter, extra=extra, fixed_total=fixed)


def _or_none(metric: Callable, *args, **kwargs):
    """The metric's value, or None where the sets are too small for it."""
    try:
        return metric(*args, **kwargs)
    except ValueError:  # training.metrics refuses sets too small to estimate from
        return None


def distribution_metrics(
    reference: np.ndarray, candidate: np.ndarray, budget: ReportBudget
) -> DistributionMetrics:
    """FID, KID and precision/recall/density/coverage of candidate features vs reference ones."""
    k = min(metrics.PRDC_K, len(reference) - 1, len(candidate) - 1)
    subsets, seed = budget.kid_subsets, budget.seed
    kid = _or_none(metrics.kid, candidate, reference, subsets=subsets, seed=seed)
    prdc = _or_none(metrics.prdc, reference, candidate, k=k) if k >= 1 else None
    return DistributionMetrics(
        fid=_or_none(metrics.fid, candidate, reference),
        kid=kid[0] if kid else None,
        kid_std=kid[1] if kid else None,
        prdc_k=k if prdc else None,
        **(prdc or dict.fromkeys(("precision", "recall", "density", "coverage"))),
    )


def best_recipe(rows: list[RecipeRow]) -> RecipeRow | None:
    """The most accurate synthetic recipe tried (first of equals), None when none was."""
    tried = [row for row in rows[1:] if row.comparison is not None]
    return max(tried, key=lambda row: row.comparison.accuracy, default=None)


def recommend(
    rows: list[RecipeRow],
    alpha: float,
    confirm: Callable[[Mix, Mixing | None], Confirmation] | None = None,
    mixing: MixingSearch | None = None,
    benchmark: Callable[[], BenchmarkCheck | None] | None = None,
) -> Decision:
    """The most accurate synthetic recipe, mixed as the mixing search chose, if it beats
    real-only training beyond noise; else the benchmark's recipe where it applies and does
    no harm beyond noise on the held-out images; else ratio 0 (add no synthetic images).

    Why the benchmark's recipe: a held-out split of ~100 images cannot resolve the lift of
    a point or so that synthetic data gives at 500 images (one image is a point), so the
    search alone would always say ratio 0 there. The benchmark measured the recipe on
    10,000 independent images; the held-out split can still veto it when it clearly hurts.

    The screen judges the recipe as it would be served: with the mixing search's choice
    when there is one (so a soft-labelled, down-weighted mix can help where shuffling every
    row alike did not, and a mix is never served on the strength of another mixing), else
    as the recipe search trained it. The best of m noisy comparisons beats the baseline by
    luck alone more often than one would, so the lift must exceed z standard errors with z
    the one-sided normal quantile at alpha / m (Bonferroni), m counting the recipes and the
    mixing settings. When it does and `confirm` is given, confirm(mix, mixing) retrains
    that recipe and real-only training at the downstream budget, and its lift must also
    exceed the one-sided z at alpha: quick classifiers can gain from synthetic images that
    a fully trained classifier does not need (measured: +5.6 points held out with 200
    steps, -0.4 on the test set with 3,000). The recipe then carries the confirmation's
    accuracies.

    Args:
        rows: the recipe search, real-only training first.
        mixing: the mixing search on `best_recipe(rows)`; None: not searched, and the
            recipe carries the literature's mixing, marked unsearched.
        benchmark: checks the benchmark's recipe on the held-out images (called only when
            the search's recipe did not help); None: never recommended.

    Returns:
        The decision; its recipe is None when no recipe was tried (no held-out images).
    """
    tried = [row for row in rows[1:] if row.comparison is not None]
    best = best_recipe(rows)
    if mixing is not None and (best is None or mixing.mix != best.mix):
        raise ValueError("the mixing search must be run on the best recipe of the search")
    compared = len(tried) + (len(mixing.rows) if mixing is not None else 0)
    z = one_sided_z(alpha, compared)
    served = mixing.chosen if mixing is not None else None
    screened = served.comparison if served is not None else best.comparison if best else None
    helped = screened is not None and screened.lift > max(0.0, z * screened.lift_se)
    confirmation = None
    if helped and confirm is not None:
        confirmation = confirm(best.mix, served.mixing if served else None)
        helped = confirmation.helped
    checked = benchmark() if benchmark is not None and not helped else None
    decision = Decision(
        helped=helped,
        best=best,
        recipes_compared=compared,
        alpha=alpha,
        z=z,
        screened=screened,
        mixing=served,
        required_lift=z * screened.lift_se if screened else None,
        confirmation=confirmation,
        recipe=None,
        benchmark=checked,
    )
    measured = decision.measured or (rows[0].comparison if rows else None)
    if measured is None:
        return decision  # nothing was tried: no held-out images
    return replace(decision, recipe=_recipe(decision, measured, searched=mixing is not None))


def _recipe(decision: Decision, measured: Comparison, searched: bool) -> Recipe:
    """The manifest's record of the decision's mix, its measured accuracies and how to mix
    (the searched mixing, the benchmark's, else the literature's defaults)."""
    mix, by_benchmark = decision.mix, decision.by_benchmark
    return Recipe(
        **mix.settings(),
        heldout_accuracy=measured.accuracy,
        baseline_accuracy=measured.accuracy - measured.lift,
        lift=measured.lift,
        **(decision.served_mixing or default_mixing(mix.ratio)).record(),
        mixing_searched=searched and not by_benchmark,
        basis="benchmark" if by_benchmark else "search",
    )

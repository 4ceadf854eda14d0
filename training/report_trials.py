"""The quality report's classifier comparisons (torch): synthetic images per draw,
classifiers trained on real + synthetic mixes, and the studies built from them (the
truncation sweep, the recipe search, CAS, the ratio study) with the recommendation.

Each mix is scored by training the same small classifier, with classic augmentation, on
it and comparing its held-out accuracy with real-only training under the same budget and
seeds, image by image, so every lift comes with a paired standard error.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import NormalDist

import numpy as np

from models.artifact import Recipe
from models.drawing import FILTERS, DrawSpec, FilterExhausted, draw_class_images
from models.evaluator import EvaluatorScorer
from models.sampler import GeneratorSampler
from training import metrics
from training.classifier import ClassifierBudget, predict_proba, train_classifier
from training.report_results import (
    BASELINE,
    Cas,
    Comparison,
    Confirmation,
    Decision,
    DistributionMetrics,
    Mix,
    RatioPoint,
    RatioStudy,
    RecipeRow,
    SweepRow,
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
        self.per_class = np.ceil(budget.max_ratio * train_counts).astype(int)
        self._images: dict[DrawSpec, list[np.ndarray] | FilterExhausted] = {}

    def take(self, draw: DrawSpec, ratio: float) -> tuple[np.ndarray, np.ndarray]:
        """round(ratio x real count) images of every class and their labels.

        Raises:
            FilterExhausted: the filter (confident, manifold) kept too few images.
        """
        images = self._draw(draw)
        wanted = np.minimum(np.round(ratio * self.counts).astype(int), self.per_class)
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
                    for c, n in enumerate(self.per_class)
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
    and runs the studies that compare mixes with real-only training."""

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
        self._correct: dict[tuple[Mix, int, ClassifierBudget], np.ndarray] = {}

    def correct(self, mix: Mix, budget: ClassifierBudget | None = None) -> np.ndarray:
        """bool (seeds, held-out images): right answers of the mix's classifier per seed,
        trained with `budget` (by default the quick one)."""
        if mix.ratio == 0:  # no synthetic rows: the draw does not matter
            mix = Mix(real_fraction=mix.real_fraction)
        budget = budget or self.budget.quick
        return np.stack([self._correct_one(mix, seed, budget) for seed in self.budget.seeds])

    def _correct_one(self, mix: Mix, seed: int, budget: ClassifierBudget) -> np.ndarray:
        key = (mix, seed, budget)
        if key not in self._correct:
            self.stages.tick()
            self._correct[key] = heldout_correct(
                self.rows(mix),
                self.data.test,
                num_classes=len(self.data.classes),
                budget=budget,
                seed=seed,
                device=self.device,
            )
        return self._correct[key]

    def compare(self, mix: Mix, budget: ClassifierBudget | None = None) -> Comparison:
        """The mix against real-only training, both trained with `budget` (default: quick)."""
        return Comparison.paired(self.correct(mix, budget), self.correct(BASELINE, budget))

    def rows(self, mix: Mix) -> tuple[np.ndarray, np.ndarray]:
        """The training images and labels of a mix (synthetic rows after the real ones)."""
        keep = np.concatenate(
            [order[: round(mix.real_fraction * len(order))] for order in self.real_order]
        )
        x, y = self.data.x_train[np.sort(keep)], self.data.y_train[np.sort(keep)]
        if mix.ratio > 0:
            xs, ys = self.pool.take(mix.draw, mix.ratio)
            x, y = np.concatenate([x, xs]), np.concatenate([y, ys])
        return x, y

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

    def confirm(self, mix: Mix) -> Confirmation:
        """The mix against real-only training, both at the confirmation budget (the
        downstream classifier's): quick classifiers favour synthetic data that a fully
        trained one does not need."""
        budget = self.budget.confirm
        self.stages.start("confirm", 2 * len(self.budget.seeds))
        return Confirmation.judge(self.compare(mix, budget), budget, self.budget.alpha)

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


def recommend(
    rows: list[RecipeRow], alpha: float, confirm: Callable[[Mix], Confirmation] | None = None
) -> Decision:
    """The most accurate synthetic recipe if it beats real-only training beyond noise,
    else ratio 0 (add no synthetic images).

    The best of m noisy recipes beats the baseline by luck alone more often than one
    recipe would, so its lift must exceed z standard errors with z the one-sided normal
    quantile at alpha / m (Bonferroni). When it does and `confirm` is given, confirm(mix)
    retrains that one recipe and real-only training at the downstream budget, and its lift
    must also exceed the one-sided z at alpha: quick classifiers can gain from synthetic
    images that a fully trained classifier does not need (measured: +5.6 points held out
    with 200 steps, -0.4 on the test set with 3,000). The recipe then carries the
    confirmation's accuracies.

    Args:
        rows: the recipe search, real-only training first.

    Returns:
        The decision; its recipe is None when no recipe was tried (no held-out images).
    """
    tried = [row for row in rows[1:] if row.comparison is not None]
    best = max(tried, key=lambda row: row.comparison.accuracy, default=None)  # first of equals
    z = NormalDist().inv_cdf(1 - alpha / max(len(tried), 1))
    helped = best is not None and best.comparison.lift > max(0.0, z * best.comparison.lift_se)
    confirmation = None
    if helped and confirm is not None:
        confirmation = confirm(best.mix)
        helped = confirmation.helped
    recipe = None
    if helped:
        recipe = _recipe(best.mix, confirmation.comparison if confirmation else best.comparison)
    elif rows:
        recipe = _recipe(rows[0].mix, rows[0].comparison)
    return Decision(
        helped=helped,
        best=best,
        recipes_compared=len(tried),
        alpha=alpha,
        z=z,
        required_lift=z * best.comparison.lift_se if best else None,
        confirmation=confirmation,
        recipe=recipe,
    )


# How to mix synthetic rows into a user's training, from shared/RESEARCH.md's evidence (not
# searched by the report): at most a quarter of each batch synthetic and a loss weight of
# 0.2-0.3 (arXiv 2312.02253), the teacher's soft labels (cGAN-KD, arXiv 2104.03164) and the
# last steps on real images only, whose length the sources leave open (our choice: 10 %).
MAX_SYNTHETIC_BATCH_FRACTION = 0.25
SYNTHETIC_LOSS_WEIGHT = 0.25
REAL_ONLY_FINAL_STEPS = 0.1


def default_mixing(ratio: float) -> dict:
    """The Recipe's mixing fields for a ratio: the literature's defaults, marked unsearched."""
    return {
        "synthetic_batch_fraction": min(MAX_SYNTHETIC_BATCH_FRACTION, ratio / (1 + ratio)),
        "synthetic_loss_weight": SYNTHETIC_LOSS_WEIGHT,
        "labels": "soft",
        "real_only_final_steps": REAL_ONLY_FINAL_STEPS if ratio > 0 else 0.0,
        "mixing_searched": False,
    }


def _recipe(mix: Mix, measured: Comparison) -> Recipe:
    """The manifest's record of the recommended mix, its measured accuracies and how to mix."""
    return Recipe(
        **mix.settings(),
        heldout_accuracy=measured.accuracy,
        baseline_accuracy=measured.accuracy - measured.lift,
        lift=measured.lift,
        **default_mixing(mix.ratio),
    )

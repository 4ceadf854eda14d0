"""The quality report's notes: plain sentences that say what its numbers mean."""

from __future__ import annotations

import numpy as np

from training.report_plots import recipe_label, truncation_text
from training.report_results import Confirmation, Decision, RecipeRow, SweepRow
from training.report_setup import RealData


def notes(
    data: RealData, sweep: list[SweepRow], rows: list[RecipeRow], decision: Decision
) -> list[str]:
    """Plain sentences that say what the numbers mean for someone adding synthetic data."""
    if not data.heldout:
        return [
            "No held-out split (holdout_fraction 0): FID, KID and PRDC compare the samples "
            "with the training images the GAN saw, which rewards memorisation; CAS, the "
            "truncation sweep and the recipe search need held-out images and were skipped."
        ]
    n = len(data.y_test)
    said = [
        f"Judged on {n} held-out images the GAN never saw: each is worth {100 / n:.2g} "
        "accuracy points, so read every lift with its standard error (lift_se).",
        "Read FID, KID and PRDC against real_train: the same numbers for real training "
        "images vs the held-out ones, which a perfect generator would match.",
        sweep_note(sweep),
    ]
    return [*said, verdict(rows, decision), *mixing_note(decision)]


def mixing_note(decision: Decision) -> list[str]:
    """Where the recipe's mixing settings come from (nothing to say without synthetic rows)."""
    recipe = decision.recipe
    if recipe is None or recipe.ratio == 0 or recipe.mixing_searched:
        return []
    return [
        f"How to mix was not searched: {recipe.synthetic_batch_fraction:.0%} of each batch "
        f"synthetic, loss weight {recipe.synthetic_loss_weight:g}, {recipe.labels} labels and "
        f"the last {recipe.real_only_final_steps:.0%} of steps on real images only are "
        "defaults from the literature (arXiv 2312.02253; soft labels: arXiv 2104.03164). "
        "The accuracies above were measured with every row shuffled together at full "
        "weight with hard labels."
    ]


def sweep_note(sweep: list[SweepRow]) -> str:
    """Which truncation scored best, and whether the sweep's spread is beyond noise."""
    accuracies = [row.comparison.accuracy for row in sweep]
    spread = max(accuracies) - min(accuracies)
    noise = np.median([row.comparison.lift_se for row in sweep])
    best = truncation_text(max(sweep, key=lambda row: row.comparison.accuracy).truncation)
    if spread > 2 * noise:
        return f"Truncation: {best} gave the best held-out accuracy (t_star)."
    return (
        f"Truncation: {best} scored best, but the sweep spans {100 * spread:.1f} points, "
        f"within 2 standard errors ({200 * noise:.1f}): t_star is a weak preference."
    )


def verdict(rows: list[RecipeRow], decision: Decision) -> str:
    """Whether to add synthetic images, with the numbers that decided it."""
    best, confirmation = decision.best, decision.confirmation
    if best is None or best.comparison is None:
        return "No synthetic recipe could be tried: add no synthetic images."
    screened, baseline = best.comparison, rows[0].comparison
    result = (
        f"{recipe_label(best.mix)} scored {screened.accuracy:.1%} vs "
        f"{baseline.accuracy:.1%} for real images only "
        f"({100 * screened.lift:+.1f} ± {100 * screened.lift_se:.1f} points)"
    )
    if confirmation is not None:
        return _confirmed_verdict(result, confirmation, decision.helped)
    if decision.helped:
        return (
            f"Synthetic data helped: {result}. It was the best of "
            f"{decision.recipes_compared} recipes on these held-out images, so expect "
            "a little less on new data."
        )
    return (
        f"Synthetic data did not help: the best recipe, {result}, does not beat "
        f"real images only by the {100 * decision.required_lift:.1f} points "
        f"({decision.z:.2f} standard errors) that the best of "
        f"{decision.recipes_compared} recipes needs to be more than luck. Train on the "
        "real images alone (recommended ratio 0)."
    )


def _confirmed_verdict(result: str, confirmation: Confirmation, helped: bool) -> str:
    measured = confirmation.comparison
    confirmed = (
        f"trained for {confirmation.budget.steps} steps, as a downstream classifier would be, "
        f"it scored {measured.accuracy:.1%} vs {measured.accuracy - measured.lift:.1%} "
        f"({100 * measured.lift:+.1f} ± {100 * measured.lift_se:.1f} points)"
    )
    if helped:
        return (
            f"Synthetic data helped: {result} with quick classifiers, and {confirmed}. "
            "It was the best of several recipes on these held-out images, so expect a "
            "little less on new data."
        )
    return (
        f"Synthetic data did not help: {result} with quick classifiers, but {confirmed}, "
        f"short of the {100 * confirmation.required_lift:.1f} points needed. Train on "
        "the real images alone (recommended ratio 0)."
    )

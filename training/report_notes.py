"""The quality report's notes: plain sentences that say what its numbers mean."""

from __future__ import annotations

import numpy as np

from training.report_mixing import default_mixing
from training.report_plots import recipe_label, truncation_text
from training.report_record import Mixing
from training.report_results import (
    Comparison,
    Confirmation,
    Decision,
    MixingSearch,
    RecipeRow,
    SweepRow,
)
from training.report_setup import RealData


def notes(
    data: RealData,
    sweep: list[SweepRow],
    rows: list[RecipeRow],
    mixing: MixingSearch | None,
    decision: Decision,
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
    return [*said, verdict(decision), *benchmark_note(decision), *mixing_note(mixing, decision)]


def how_to_mix(mixing: Mixing) -> str:
    """A mixing in words."""
    return (
        f"{mixing.synthetic_batch_fraction:.0%} of each batch synthetic, loss weight "
        f"{mixing.synthetic_loss_weight:g}, {mixing.labels} labels, the last "
        f"{mixing.real_only_final_steps:.0%} of steps on real images only"
    )


def _points(comparison: Comparison, lift: float | None = None) -> str:
    lift = comparison.lift if lift is None else lift
    return f"{100 * lift:+.1f} ± {100 * comparison.lift_se:.1f} points"


def mixing_note(mixing: MixingSearch | None, decision: Decision) -> list[str]:
    """What the mixing search found, or where unsearched mixing settings come from."""
    recipe = decision.recipe
    if mixing is None:
        if recipe is None or recipe.ratio == 0 or decision.by_benchmark:
            return []  # nothing to mix, or the benchmark's mixing, said in its own note
        return [
            f"How to mix was not searched: {how_to_mix(default_mixing(recipe.ratio))} are "
            "defaults from the literature (arXiv 2312.02253; soft labels: arXiv 2104.03164). "
            "The accuracies above were measured with every row shuffled together at full "
            "weight with hard labels."
        ]
    searched = f"How to mix, searched on {recipe_label(mixing.mix)}"
    chosen, best = mixing.chosen, mixing.best_alternative
    if best is None:
        return [f"{searched}: only the literature's defaults ({how_to_mix(chosen.mixing)})."]
    alternatives = len(mixing.rows) - 1
    if mixing.beat_defaults:
        found = (
            f"{searched}: '{chosen.setting}' ({how_to_mix(chosen.mixing)}) beat the "
            f"literature's defaults by {_points(chosen.over_defaults)}, more than the "
            f"{100 * mixing.required_lift:.1f} points ({mixing.z:.2f} standard errors) "
            f"that the best of {alternatives} alternatives needs."
        )
    else:
        found = (
            f"{searched}: no setting beat the literature's defaults "
            f"({how_to_mix(chosen.mixing)}) beyond noise; the best, '{best.setting}', "
            f"scored {_points(best.over_defaults)} against them, not beyond the "
            f"{100 * mixing.required_lift:.1f} points ({mixing.z:.2f} standard errors) "
            f"that the best of {alternatives} alternatives needs, so the defaults stand."
        )
    return [found, f"Mixed that way it scored {_points(chosen.comparison)} over real images only."]


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


def verdict(decision: Decision) -> str:
    """Whether to add synthetic images, with the numbers that decided it."""
    best, confirmation, screened = decision.best, decision.confirmation, decision.screened
    if best is None or screened is None:
        return "No synthetic recipe could be tried: add no synthetic images."
    mixed = f", mixed as '{decision.mixing.setting}'," if decision.mixing is not None else ""
    result = (
        f"{recipe_label(best.mix)}{mixed} scored {screened.accuracy:.1%} vs "
        f"{screened.accuracy - screened.lift:.1%} for real images only ({_points(screened)})"
    )
    if confirmation is not None:
        return _confirmed_verdict(result, confirmation, decision)
    compared = f"{decision.recipes_compared} recipes and mixing settings"
    if decision.helped:
        return (
            f"Synthetic data helped: {result}. It was the best of {compared} on these "
            "held-out images, so expect a little less on new data."
        )
    return (
        f"Synthetic data did not help: the best recipe, {result}, does not beat "
        f"real images only by the {100 * decision.required_lift:.1f} points "
        f"({decision.z:.2f} standard errors) that the best of {compared} needs to be more "
        f"than luck.{_real_only(decision)}"
    )


def _real_only(decision: Decision) -> str:
    """The advice when the search's recipe did not help, unless the benchmark's stands."""
    return "" if decision.by_benchmark else " Train on the real images alone (recommended ratio 0)."


def benchmark_note(decision: Decision) -> list[str]:
    """Why the benchmark's recipe is recommended, or why not, when it was checked."""
    check = decision.benchmark
    if check is None:
        return []
    measured = check.comparison
    scored = (
        f"{recipe_label(check.mix)}, {how_to_mix(check.mixing)}, trained for "
        f"{check.budget.steps} steps, scored {measured.accuracy:.1%} vs "
        f"{measured.accuracy - measured.lift:.1%} for real images only ({_points(measured)})"
    )
    if check.harmful:
        return [
            f"The benchmark's recipe for datasets of this size ({check.evidence}) was checked "
            f"on these held-out images: {scored}, worse by more than {check.z:.2f} standard "
            "errors, so it is not recommended here."
        ]
    return [
        "These held-out images are too few to resolve a lift of a point, so the benchmark's "
        f"recipe for datasets of this size is recommended: {check.evidence}. Checked on these "
        f"held-out images, {scored}: no harm beyond noise ({check.z:.2f} standard errors)."
    ]


def _confirmed_verdict(result: str, confirmation: Confirmation, decision: Decision) -> str:
    measured = confirmation.comparison
    confirmed = (
        f"trained for {confirmation.budget.steps} steps, as a downstream classifier would be, "
        f"it scored {measured.accuracy:.1%} vs {measured.accuracy - measured.lift:.1%} "
        f"({100 * measured.lift:+.1f} ± {100 * measured.lift_se:.1f} points)"
    )
    if decision.helped:
        return (
            f"Synthetic data helped: {result} with quick classifiers, and {confirmed}. "
            "It was the best of several recipes on these held-out images, so expect a "
            "little less on new data."
        )
    return (
        f"Synthetic data did not help: {result} with quick classifiers, but {confirmed}, "
        f"short of the {100 * confirmation.required_lift:.1f} points needed."
        f"{_real_only(decision)}"
    )

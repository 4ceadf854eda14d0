"""The report's mixing search: the grid, the choice against the literature's defaults,
the decision it feeds, the trials' use of ganaug.data, and what the artifacts record."""

import shutil
from dataclasses import replace
from types import SimpleNamespace

import pytest

from ganaug.data import RecipeBatchSampler
from models.artifact import Manifest
from models.drawing import DrawSpec
from training.classifier import ClassifierBudget
from training.report import PARTS, ReportBudget, build_report
from training.report_mixing import default_mixing, mixing_grid, naive_mixing
from training.report_notes import mixing_note, verdict
from training.report_record import Mixing
from training.report_results import (
    Comparison,
    Confirmation,
    Mix,
    MixingRow,
    MixingSearch,
    RecipeRow,
)
from training.report_run import ReportRun
from training.report_setup import MIXING_FACTORS, Stages
from training.report_trials import recommend

BEST = Mix(1.0, DrawSpec(1.0))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_grid_is_the_defaults_each_factor_changed_alone_then_the_naive_mix():
    grid = mixing_grid(2.0, MIXING_FACTORS)
    names = [name for name, _ in grid]
    assert names == ["defaults", "batch_fraction", "loss_weight", "labels", "final_steps", "naive"]
    defaults, naive = default_mixing(2.0).record(), naive_mixing(2.0).record()
    assert defaults == {
        "synthetic_batch_fraction": 0.25,
        "synthetic_loss_weight": 0.25,
        "labels": "soft",
        "real_only_final_steps": 0.1,
    }
    assert naive == {
        "synthetic_batch_fraction": pytest.approx(2 / 3),
        "synthetic_loss_weight": 1.0,
        "labels": "hard",
        "real_only_final_steps": 0.0,
    }
    for _, mixing in grid[1:-1]:
        changed = {k for k, v in mixing.record().items() if v != defaults[k]}
        assert len(changed) == 1 and all(mixing.record()[k] == naive[k] for k in changed)
    # At ratio 0.25 the shuffled share (0.2) is already under the cap: no separate trial.
    assert [name for name, _ in mixing_grid(0.25, MIXING_FACTORS)][1] == "loss_weight"
    assert [name for name, _ in mixing_grid(1.0, ("labels",))] == ["defaults", "labels", "naive"]


def row(setting: str, accuracy: float, over_defaults: float, se: float) -> MixingRow:
    """A mixing row: `accuracy` against a real-only 0.70, `over_defaults` lift ± se."""
    comparison = Comparison(accuracy, 0.0, accuracy - 0.70, 0.01)
    mixing = Mixing(0.25, 0.25 if setting != "loss_weight" else 1.0, "soft", 0.1)
    return MixingRow(setting, mixing, comparison, Comparison(accuracy, 0.0, over_defaults, se))


def test_a_setting_that_beats_the_defaults_beyond_noise_is_chosen():
    rows = [row("defaults", 0.80, 0.0, 0.0), row("loss_weight", 0.86, 0.06, 0.01)]
    rows.append(row("labels", 0.81, 0.01, 0.01))
    search = MixingSearch.judge(BEST, rows, 0.05)
    assert search.chosen.setting == "loss_weight" and search.beat_defaults
    assert search.z == pytest.approx(1.96, abs=0.01)  # one-sided at 0.05 / 2 alternatives
    assert search.required_lift == pytest.approx(0.0196, abs=1e-3)


def test_the_defaults_stand_when_no_setting_beats_them_beyond_noise():
    rows = [row("defaults", 0.80, 0.0, 0.0), row("loss_weight", 0.83, 0.03, 0.02)]
    rows.append(row("labels", 0.78, -0.02, 0.02))
    search = MixingSearch.judge(BEST, rows, 0.05)
    assert search.chosen.setting == "defaults" and not search.beat_defaults
    assert search.best_alternative.setting == "loss_weight"
    worse = [row("defaults", 0.80, 0.0, 0.0), row("labels", 0.79, -0.01, 0.001)]
    assert MixingSearch.judge(BEST, worse, 0.05).chosen.setting == "defaults"


def test_the_bar_rises_with_the_number_of_settings_tried():
    # 2 standard errors over the defaults: enough for one alternative (z 1.64), not for
    # the best of five (z 2.33), where luck alone clears 2 more often.
    winner = row("loss_weight", 0.82, 0.02, 0.01)
    alone = MixingSearch.judge(BEST, [row("defaults", 0.80, 0.0, 0.0), winner], 0.05)
    assert alone.chosen is winner
    also_ran = [row(f"other{i}", 0.79, -0.01, 0.01) for i in range(4)]
    crowd = MixingSearch.judge(BEST, [row("defaults", 0.80, 0.0, 0.0), winner, *also_ran], 0.05)
    assert crowd.chosen.setting == "defaults" and crowd.z == pytest.approx(2.326, abs=1e-3)


def recipe_rows(naive_lift: float) -> list[RecipeRow]:
    return [
        RecipeRow(Mix(), Comparison(0.70, 0.0, 0.0, 0.0)),
        RecipeRow(BEST, Comparison(0.70 + naive_lift, 0.0, naive_lift, 0.01)),
    ]


def search_with(chosen_lift: float) -> MixingSearch:
    """A search on BEST whose winner, 'loss_weight', lifts real-only by chosen_lift ± 0.01."""
    rows = [row("defaults", 0.71, 0.0, 0.0), row("loss_weight", 0.70 + chosen_lift, 0.05, 0.01)]
    return MixingSearch.judge(BEST, rows, 0.05)


def test_a_searched_mixing_can_make_synthetic_data_help_and_is_what_gets_confirmed():
    confirmed = []

    def confirm(mix: Mix, mixing: Mixing | None) -> Confirmation:
        confirmed.append((mix, mixing))
        return Confirmation.judge(Comparison(0.84, 0.0, 0.04, 0.01), ClassifierBudget(), 0.05)

    search = search_with(0.06)
    decision = recommend(recipe_rows(0.0), 0.05, confirm, search)  # shuffled mixing: no lift
    assert decision.helped and decision.recipes_compared == 1 + 2
    assert confirmed == [(BEST, search.chosen.mixing)], "the served mixing is confirmed"
    recipe = decision.recipe
    assert (recipe.ratio, recipe.mixing_searched, recipe.synthetic_loss_weight) == (1.0, True, 1.0)
    assert (recipe.heldout_accuracy, recipe.lift) == (0.84, 0.04)
    assert "mixed as 'loss_weight'" in verdict(decision)
    said = mixing_note(search, decision)
    assert "'loss_weight'" in said[0] and "beat the literature's defaults" in said[0]


def test_the_screen_judges_the_served_mixing_not_the_shuffled_one():
    # Shuffled rows lift by 8 points, but the mixing that would be served lifts by 1.
    decision = recommend(recipe_rows(0.08), 0.05, None, search_with(0.01))
    assert not decision.helped and decision.screened.lift == pytest.approx(0.01)
    recipe = decision.recipe
    assert recipe.ratio == 0 and recipe.mixing_searched, "searched, and real-only won"
    assert recipe.synthetic_batch_fraction == 0 and recipe.real_only_final_steps == 0


def test_without_a_search_the_recipe_carries_the_unsearched_defaults():
    decision = recommend(recipe_rows(0.08), 0.05)
    recipe = decision.recipe
    assert decision.helped and not recipe.mixing_searched and decision.mixing is None
    assert recipe.model_dump(include=set(default_mixing(1.0).record())) == (
        default_mixing(1.0).record()
    )
    assert mixing_note(None, decision)[0].startswith("How to mix was not searched")


def test_a_search_on_another_recipe_is_refused():
    other = replace(search_with(0.06), mix=Mix(2.0))
    with pytest.raises(ValueError, match="best recipe"):
        recommend(recipe_rows(0.0), 0.05, None, other)


def test_the_fast_report_searched_how_to_mix_and_stored_it(tiny_model: SimpleNamespace):
    report = tiny_model.report
    section = report["mixing"]
    best = report["decision"]["best"]
    assert {k: section[k] for k in ("ratio", "truncation", "filter")} == {
        k: best[k] for k in ("ratio", "truncation", "filter")
    }
    settings = [s["setting"] for s in section["settings"]]
    assert settings == ["defaults", "labels", "naive"]  # the fast preset's small search
    for setting in section["settings"]:
        assert 0 <= setting["accuracy"] <= 1 and setting["lift_se"] >= 0
        assert setting["lift_over_defaults_se"] >= 0
    assert section["settings"][0]["lift_over_defaults"] == 0
    assert section["chosen"] in settings and report["decision"]["mixing"] == section["chosen"]
    chosen = next(s for s in section["settings"] if s["setting"] == section["chosen"])
    recipe = Manifest.load(tiny_model.model_dir).evaluation.recipe
    assert recipe.mixing_searched is True and report["recipe"] == recipe.model_dump()
    mixing_fields = set(default_mixing(1.0).record())
    if recipe.ratio > 0:
        assert recipe.model_dump(include=mixing_fields) == {k: chosen[k] for k in mixing_fields}
    else:
        assert recipe.model_dump(include=mixing_fields) == default_mixing(0.0).record()
    assert any(note.startswith("How to mix, searched on") for note in report["notes"])
    assert report["timings_s"]["mixing"] > 0


def test_trial_classifiers_train_on_ganaug_datas_batches(tiny_model, tmp_path, monkeypatch):
    seen: list[tuple[RecipeBatchSampler, list[list[int]]]] = []
    iterate = RecipeBatchSampler.__iter__

    def observed(sampler: RecipeBatchSampler):
        batches = list(iterate(sampler))
        seen.append((sampler, batches))
        yield from batches

    monkeypatch.setattr(RecipeBatchSampler, "__iter__", observed)
    model_dir = shutil.copytree(tiny_model.model_dir, tmp_path / "model")
    budget = ReportBudget.fast()
    run = ReportRun(model_dir, tiny_model.dataset, budget, Stages(None, None), "cpu")
    run.train_evaluator()
    run.soft_labeller()
    search = run.trials.mixing_search(Mix(1.0, budget.draw(None)))
    assert len(seen) == len(search.rows) * len(budget.seeds) == 3
    steps, size = budget.quick.steps, budget.quick.batch_size
    for (sampler, batches), mixing_row in zip(seen, search.rows, strict=True):
        mixing = mixing_row.mixing
        synthetic = set(sampler.synthetic.tolist())
        shares = [sum(i in synthetic for i in batch) for batch in batches]
        final = round(mixing.real_only_final_steps * steps)
        per_batch = round(mixing.synthetic_batch_fraction * size)
        assert len(batches) == steps and all(len(batch) == size for batch in batches)
        assert shares == [per_batch] * (steps - final) + [0] * final
    assert [round(row.mixing.synthetic_batch_fraction * size) for row in search.rows] == [8, 8, 16]


@pytest.mark.slow
def test_a_report_with_the_standard_grid_searches_every_factor(tiny_model, tmp_path):
    # The standard preset's grid on the fast preset's classifiers: a standard report on
    # the tiny model takes minutes (benchmarks/report_mixing.py measures one).
    model_dir = shutil.copytree(tiny_model.model_dir, tmp_path / "model")
    budget = replace(ReportBudget.fast(), mixing_factors=ReportBudget().mixing_factors)
    report = build_report(model_dir, tiny_model.dataset, budget=budget, device="cpu")
    section = report["mixing"]
    settings = [s["setting"] for s in section["settings"]]
    assert settings == ["defaults", *MIXING_FACTORS, "naive"]
    assert section["z"] == pytest.approx(2.326, abs=1e-3)  # one-sided at 0.05 / 5
    tried = sum(row["status"] == "ok" for row in report["recipes"][1:])
    assert report["decision"]["recipes_compared"] == tried + len(settings)
    assert Manifest.load(model_dir).evaluation.recipe.mixing_searched is True


def test_a_budget_without_factors_skips_the_search():
    found = SimpleNamespace(recipes=recipe_rows(0.08))
    skip = SimpleNamespace(budget=replace(ReportBudget.fast(), mixing_factors=()))
    assert PARTS["mixing"](skip, found) is None  # no trials: the run has none to give
    assert list(PARTS).index("mixing") == list(PARTS).index("recipes") + 1
    assert list(PARTS).index("decision") == list(PARTS).index("mixing") + 1

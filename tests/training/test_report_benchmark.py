"""The benchmark's recipe: recommended where the report's own search cannot tell and the
held-out images show no harm; never where the search found a recipe, the held-out images
show harm, or the dataset is larger than the benchmark measured."""

import shutil
from dataclasses import replace

import numpy as np
import pytest

from models.artifact import Manifest
from models.drawing import DrawSpec
from training.classifier import ClassifierBudget
from training.report import ReportBudget, build_report
from training.report_notes import benchmark_note, verdict
from training.report_record import Mixing
from training.report_results import BenchmarkCheck, Comparison, Confirmation, Mix, RecipeRow
from training.report_run import ReportRun
from training.report_setup import BenchmarkRecipe, Stages
from training.report_trials import SyntheticPool, recommend

RECIPE = BenchmarkRecipe(10.0, Mixing(0.5, 1.0, "hard", 0.0), 50, "+0.9 points (test evidence)")


def rows(best_lift: float, best_se: float) -> list[RecipeRow]:
    """Real-only first, then the search's best recipe."""
    return [
        RecipeRow(Mix(), Comparison(0.70, 0.0, 0.0, 0.0)),
        RecipeRow(Mix(1.0, DrawSpec(1.0)), Comparison(0.70 + best_lift, 0.0, best_lift, best_se)),
    ]


def check(lift: float, lift_se: float) -> BenchmarkCheck:
    """The benchmark recipe measured at `lift` ± `lift_se` over real images only."""
    return BenchmarkCheck(
        mix=Mix(RECIPE.ratio, DrawSpec()),
        mixing=RECIPE.mixing,
        comparison=Comparison(0.75 + lift, 0.0, lift, lift_se),
        budget=ClassifierBudget(steps=3000),
        z=1.645,
        evidence=RECIPE.evidence,
    )


def test_where_the_search_cannot_tell_the_benchmark_recipe_is_recommended():
    decision = recommend(rows(0.01, 0.03), 0.05, None, None, lambda: check(-0.01, 0.02))
    recipe = decision.recipe
    assert not decision.helped and decision.by_benchmark
    assert recipe.basis == "benchmark" and recipe.ratio == 10.0 and recipe.truncation is None
    assert (recipe.synthetic_batch_fraction, recipe.synthetic_loss_weight) == (0.5, 1.0)
    assert recipe.labels == "hard" and recipe.real_only_final_steps == 0.0
    # the manifest carries what the held-out check measured, not the benchmark's figure
    assert recipe.lift == pytest.approx(-0.01) and recipe.baseline_accuracy == pytest.approx(0.75)
    assert decision.mix == Mix(10.0, DrawSpec()) and decision.served_mixing.labels == "hard"
    said = verdict(decision) + " ".join(benchmark_note(decision))
    assert "recommended ratio 0" not in said and "+0.9 points (test evidence)" in said


def test_a_benchmark_recipe_that_hurts_the_held_out_images_is_refused():
    # -5 points at a standard error of 2: beyond 1.645 standard errors
    decision = recommend(rows(0.01, 0.03), 0.05, None, None, lambda: check(-0.05, 0.02))
    assert decision.recipe.ratio == 0 and decision.recipe.basis == "search"
    assert not decision.by_benchmark and decision.mix == Mix() and decision.benchmark.harmful
    # real images alone: nothing to mix, and the recipe carries real-only's own accuracy
    assert decision.served_mixing is None and decision.recipe.synthetic_batch_fraction == 0
    assert decision.recipe.lift == 0.0 and decision.recipe.heldout_accuracy == 0.70
    assert "not recommended here" in benchmark_note(decision)[0]
    assert decision.record()["benchmark"]["harmful"] is True


def test_when_the_search_finds_a_recipe_the_benchmark_is_not_asked():
    asked = []
    decision = recommend(rows(0.08, 0.02), 0.05, None, None, lambda: asked.append(1))
    assert decision.helped and decision.recipe.basis == "search" and asked == []
    assert decision.recipe.ratio == 1.0 and decision.benchmark is None


def test_the_standard_budget_recommends_the_measured_recipes():
    # what benchmarks/mix_probe.py measured: 10x untruncated, weight 1, soft labels, no
    # real-only end; half of each batch synthetic at 500 images (40 train images a class),
    # a quarter at 2,500 (200 a class)
    standard = ReportBudget.standard()
    small = standard.benchmark_for(np.full(10, 40))
    assert small.ratio == 10.0 and small.mixing == Mixing(0.5, 1.0, "soft", 0.0)
    assert small.max_train_per_class == 50
    larger = standard.benchmark_for(np.full(10, 200))
    assert larger.ratio == 10.0 and larger.mixing == Mixing(0.25, 1.0, "soft", 0.0)
    assert larger.max_train_per_class == 250 and "2,500 images" in larger.evidence
    assert standard.benchmark_for(np.full(10, 251)) is None
    # 30-step classifiers cannot check it
    assert ReportBudget.fast().benchmark_for(np.full(10, 40)) is None


def test_the_benchmark_recipe_applies_up_to_its_cap_and_sizes_only_the_untruncated_draw():
    wider = replace(RECIPE, ratio=5.0, max_train_per_class=200)
    budget = replace(ReportBudget.fast(), benchmark_recipes=(wider, RECIPE), ratios=(1.0, 2.0))
    assert budget.benchmark_for(np.array([40, 50, 12])) is RECIPE  # the smallest cap covering
    assert budget.benchmark_for(np.array([40, 51, 12])) is wider
    assert budget.benchmark_for(np.array([40, 201, 12])) is None
    pool = SyntheticPool(None, None, np.array([40, 50]), budget)
    assert list(pool.per_class(budget.draw(None))) == [400, 500]  # the recipe's 10x
    assert list(pool.per_class(budget.draw(1.0))) == [80, 100]  # truncated: the search's 2x
    pool = SyntheticPool(None, None, np.array([40, 60]), budget)
    assert list(pool.per_class(budget.draw(None))) == [200, 300]  # the wider recipe's 5x
    pool = SyntheticPool(None, None, np.array([40, 201]), budget)
    assert list(pool.per_class(budget.draw(None))) == [80, 402]  # past every cap: 2x


def test_where_the_confirmation_refuses_the_search_the_benchmark_is_asked():
    asked = []

    def benchmark():
        asked.append(1)
        return check(0.0, 0.02)

    def confirm(_mix, _mixing):
        return Confirmation.judge(Comparison(0.70, 0.0, 0.0, 0.02), ClassifierBudget(), 0.05)

    decision = recommend(rows(0.08, 0.02), 0.05, confirm, None, benchmark)
    assert asked == [1] and not decision.helped and decision.by_benchmark
    assert decision.confirmation is not None and decision.recipe.basis == "benchmark"
    assert decision.recipe.ratio == 10.0


def test_larger_datasets_than_measured_get_no_benchmark_recipe(trained, tmp_path):
    model_dir = shutil.copytree(trained.model_dir, tmp_path / "model")
    counts = ReportRun(
        model_dir, trained.dataset, ReportBudget.fast(), Stages(None, None), "cpu"
    ).data.train_counts
    small = replace(RECIPE, max_train_per_class=int(counts.max()) - 1)
    budget = replace(ReportBudget.fast(), benchmark_recipes=(small,))
    run = ReportRun(model_dir, trained.dataset, budget, Stages(None, None), "cpu")
    run.train_evaluator()
    assert run.trials.benchmark_check() is None


def test_the_report_recommends_the_benchmark_recipe_it_checked(trained, tmp_path):
    model_dir = shutil.copytree(trained.model_dir, tmp_path / "model")
    recipe = replace(RECIPE, ratio=3.0, max_train_per_class=10_000)
    # at alpha 1e-9 no lift of the tiny search is beyond noise, and no harm either: the
    # benchmark recipe is what the report must then recommend
    budget = replace(ReportBudget.fast(), benchmark_recipes=(recipe,), alpha=1e-9)
    result = build_report(model_dir, trained.dataset, budget=budget, device="cpu")
    decision = result["decision"]
    assert not decision["helped"] and decision["by_benchmark"]
    checked = decision["benchmark"]
    assert checked["ratio"] == 3.0 and checked["synthetic_batch_fraction"] == 0.5
    assert checked["labels"] == "hard" and checked["budget"]["steps"] == budget.confirm.steps
    assert checked["truncation"] is None and checked["filter"] == "none"  # untruncated draw
    assert checked["z"] == pytest.approx(6.0, abs=0.01)  # one-sided at alpha 1e-9
    stored = Manifest.load(model_dir).evaluation.recipe
    assert stored.basis == "benchmark" and stored.ratio == 3.0 == result["recipe"]["ratio"]
    assert stored.lift == pytest.approx(checked["lift"])
    assert any("too few to resolve" in note for note in result["notes"])


@pytest.fixture(scope="module")
def trained(tiny_model):
    """The session's tiny GAN on 3 classes of 16 px shapes (read only: copy to change it)."""
    return tiny_model

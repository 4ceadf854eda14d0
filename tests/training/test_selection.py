"""Checkpoint selection (select_by recall): the rule, when it evaluates, what it exports."""

import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from models.artifact import CHECKPOINT_FILE, MANIFEST_FILE, STATS_FILE, Manifest
from models.images import to_uint8_nhwc
from models.networks import Generator
from models.sampler import GeneratorSampler
from models.truncation import sample_latents
from tests.training.test_methods import train
from training import TrainConfig, selection
from training.selection import BestSoFar

# cgan with a 10x learning rate: recall moves within 30 tiny steps (at the defaults every
# evaluation scores 0 this early). On this CPU an earlier step wins (9 of 30); the
# assertions below hold whichever step wins.
SELECT = dict(
    method="cgan",
    lr_g=2e-3,
    lr_d=2e-3,
    steps=30,
    select_by="recall",
    select_every=3,
    select_evaluator_steps=20,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The selecting run, and select_by last runs with the same seed: as long, and as long
    as the step the selection exported."""
    root = tmp_path_factory.mktemp("select")
    selecting = train(root / "recall", **SELECT)
    step = Manifest.load(selecting.out).selection.step
    last_options = SELECT | {"select_by": "last"}
    last = train(root / "last", **last_options)
    upto = train(root / "upto", **(last_options | {"steps": step}))
    return selecting, last, upto


def nets(model_dir):
    return torch.load(model_dir / CHECKPOINT_FILE)


def weights(state: dict) -> dict:
    """A state dict without batch-norm running statistics (re-estimated at export)."""
    return {k: v for k, v in state.items() if "running_" not in k and "num_batches" not in k}


def test_logs_recall_at_every_evaluation_and_records_the_best(runs):
    selecting, _, _ = runs
    lines = [json.loads(line) for line in (selecting.out / STATS_FILE).read_text().splitlines()]
    logged = [
        (line["step"], line["losses"]["select_recall"])
        for line in lines
        if "select_recall" in line["losses"]
    ]
    assert [step for step, _ in logged] == list(range(3, 31, 3))
    progress = [
        (r.step, r.losses["select_recall"])
        for r in selecting.reports
        if "select_recall" in r.losses
    ]
    assert progress == logged

    selection = Manifest.load(selecting.out).selection
    assert selection.by == "recall" and selection.evaluations == logged
    best = max(recall for _, recall in logged)
    assert selection.recall == best
    assert selection.step == max(step for step, recall in logged if recall == best)  # later wins
    assert all(0 <= recall <= 1 for _, recall in logged)
    assert selection.evaluator_s > 0 and selection.evaluation_s > 0


def test_exports_the_selected_steps_generator(runs):
    selecting, _, upto = runs
    exported = nets(selecting.out)["generator_ema"]
    # same seed, trained only up to the selected step: the same weights
    expected = nets(upto.out)["generator_ema"]
    for name, value in weights(expected).items():
        torch.testing.assert_close(exported[name], value, rtol=0, atol=0, msg=name)


def test_evaluations_leave_training_untouched(runs):
    selecting, last, _ = runs
    selected, plain = nets(selecting.out), nets(last.out)
    for part in ("generator", "critic"):
        for name, value in plain[part].items():
            torch.testing.assert_close(selected[part][name], value, rtol=0, atol=0, msg=name)
    assert Manifest.load(last.out).selection is None
    assert "select_recall" not in (last.out / STATS_FILE).read_text()


def test_recall_needs_a_holdout():
    with pytest.raises(ValidationError, match="holdout_fraction > 0"):
        TrainConfig(select_by="recall", holdout_fraction=0)
    TrainConfig(select_by="last", holdout_fraction=0)


@pytest.mark.parametrize(
    "options, due",
    [
        ({"select_by": "last"}, []),
        ({"select_by": "recall", "select_every": 4}, [4, 8, 10]),
        ({"select_by": "recall", "select_every": 5}, [5, 10]),
        # none before the class condition reaches full weight
        ({"select_by": "recall", "select_every": 2, "transition_end": 5}, [6, 8, 10]),
        ({"select_by": "recall", "select_every": 20}, [10]),
    ],
)
def test_evaluation_steps(options, due):
    config = TrainConfig(steps=10, **options)
    assert [step for step in range(1, 11) if config.selection_due(step)] == due


def test_best_so_far_keeps_the_best_and_the_later_on_ties():
    best: BestSoFar[str] = BestSoFar()
    taken = []

    def state(name: str):
        def take() -> str:
            taken.append(name)
            return name

        return take

    for step, score in [(1, 0.2), (2, 0.5), (3, 0.1), (4, 0.5), (5, 0.3)]:
        best.offer(step, score, state(f"s{step}"))
    assert (best.step, best.score, best.state) == (4, 0.5, "s4")
    assert taken == ["s1", "s2", "s4"]  # states are copied only when they become the best
    assert best.history == [(1, 0.2), (2, 0.5), (3, 0.1), (4, 0.5), (5, 0.3)]


def test_manifests_without_selection_still_load(runs):
    _, last, _ = runs
    record = json.loads((last.out / MANIFEST_FILE).read_text())
    record.pop("selection")
    assert Manifest.from_bytes(json.dumps(record).encode()).selection is None


def test_generator_onnx_is_the_selected_generator(runs):
    selecting, _, _ = runs
    labels = np.arange(6, dtype=np.int64) % 3
    latents = sample_latents(np.random.default_rng(0), 6, 8)
    images = GeneratorSampler(selecting.out).generate(labels, latents)
    checkpoint = nets(selecting.out)
    generator = Generator(**checkpoint["generator_kwargs"]).eval()
    generator.load_state_dict(checkpoint["generator_ema"])  # the selected one, see above
    with torch.no_grad():
        expected = to_uint8_nhwc(
            generator(torch.from_numpy(latents), torch.from_numpy(labels)).numpy()
        )
    assert np.abs(images.astype(int) - expected).max() <= 1


def test_an_earlier_best_step_is_the_one_exported(tmp_path, monkeypatch):
    """Built so by construction: recall peaks at the first evaluation (step 3 of 12), so
    the export must restore that step's generator, not keep the last one."""
    scores = iter([0.9, 0.1, 0.2, 0.3])
    real_prdc = selection.prdc
    monkeypatch.setattr(
        selection, "prdc", lambda *a, **k: real_prdc(*a, **k) | {"recall": next(scores)}
    )
    options = SELECT | {"steps": 12}
    chosen = train(tmp_path / "recall", **options)
    assert Manifest.load(chosen.out).selection.step == 3
    upto = train(tmp_path / "upto", **(options | {"select_by": "last", "steps": 3}))
    exported, expected = nets(chosen.out)["generator_ema"], nets(upto.out)["generator_ema"]
    for name, value in weights(expected).items():
        torch.testing.assert_close(exported[name], value, rtol=0, atol=0, msg=name)

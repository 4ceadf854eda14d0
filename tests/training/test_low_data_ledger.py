"""benchmarks/low_data.py's ledger: a column that never sees the augmenting GAN is copied from
an earlier knob set that agrees on what its score depends on; GAN columns never are. The
table keeps its hand-written notes when it is rewritten."""

from __future__ import annotations

import json
from argparse import Namespace

from benchmarks.low_data import COLUMNS, Ledger, recipes_knob
from benchmarks.low_data_table import write_table
from training.report_setup import REPORT_BUDGETS


def knobs(**changes) -> dict:
    base = {
        "gan_steps": 3000,
        "classifier_steps": 3000,
        "report": "standard",
        "gan_config": {"method": "cgan"},
        "critic_config": {"method": "wacgan-gp"},
        "fixed_recipe": None,
        "device": "cpu",
    }
    return base | changes


def score(column: str, seed: int, accuracy: float, knob_set: dict) -> dict:
    return {
        "kind": "score",
        "size": 500,
        "seed": seed,
        "column": column,
        "accuracy": accuracy,
        "knobs": knob_set,
        "at": "2026-11-28T10:00:00+00:00",
    }


def test_gan_free_columns_come_from_a_set_with_the_same_classifier_and_gan_ones_never(tmp_path):
    old = knobs()
    new = knobs(recommendation="search, else benchmark recipe")
    rows = [
        score("classic", 0, 0.8117, old),
        score("hard", 0, 0.8117, old),
        score("trunk", 0, 0.7932, old),
        score("plain", 0, 0.70, knobs(classifier_steps=1000)),  # another classifier
        score("trunk", 1, 0.77, knobs(critic_config={"method": "acgan"})),  # another critic
    ]
    path = tmp_path / "low_data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ledger = Ledger(path, new)

    assert ledger.find("score", size=500, seed=0, column="classic") is None  # not this set
    assert ledger.find_gan_free("classic", size=500, seed=0)["accuracy"] == 0.8117
    assert ledger.find_gan_free("trunk", size=500, seed=0)["accuracy"] == 0.7932
    assert ledger.find_gan_free("hard", size=500, seed=0) is None  # depends on the GAN
    assert ledger.find_gan_free("classic", size=500, seed=1) is None  # another seed
    assert ledger.find_gan_free("classic", size=2500, seed=0) is None  # another subset
    assert ledger.find_gan_free("plain", size=500, seed=0) is None  # 1,000-step classifier
    assert ledger.find_gan_free("trunk", size=500, seed=1) is None  # another architecture


def test_the_table_is_rewritten_and_the_hand_written_notes_kept(tmp_path):
    rows = [score("classic", 0, 0.8117, knobs()), score("plain", 0, 0.7795, knobs())]
    jsonl = tmp_path / "low_data.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    md = tmp_path / "low_data.md"
    md.write_text("stale table\n\n## Notes\n\nwhat we learnt\n\n## Earlier run\n\nold rows\n")
    write_table(Ledger(jsonl, knobs()), Namespace(results_dir=tmp_path), COLUMNS)
    text = md.read_text()
    assert "stale table" not in text and "| 500 | 1 | 77.95 | 81.17 |" in text
    assert text.endswith("## Notes\n\nwhat we learnt\n\n## Earlier run\n\nold rows\n")


def test_the_table_holds_the_rows_of_every_run_sharing_the_file(tmp_path):
    jsonl = tmp_path / "low_data.jsonl"
    jsonl.write_text(json.dumps(score("plain", 0, 0.7795, knobs())) + "\n")
    first, second = Ledger(jsonl, knobs()), Ledger(jsonl, knobs())  # two runs, side by side
    second.add({"kind": "score", "size": 500, "seed": 0, "column": "classic", "accuracy": 0.8117})
    write_table(first, Namespace(results_dir=tmp_path), COLUMNS)  # the run that did not add it
    assert "| 500 | 0 | 77.95 | 81.17 |" in (tmp_path / "low_data.md").read_text()


def test_the_knob_set_names_the_benchmark_recipes_of_the_report_it_runs():
    assert recipes_knob(REPORT_BUDGETS["standard"]) == (
        "<= 50 per class: 10x, share 0.5; <= 250 per class: 10x, share 0.25"
    )
    assert recipes_knob(REPORT_BUDGETS["fast"]) == "none"


def test_a_section_header_names_its_benchmark_recipes_where_its_knob_set_has_them(tmp_path):
    recipes = recipes_knob(REPORT_BUDGETS["standard"])
    jsonl = tmp_path / "low_data.jsonl"
    rows = [
        score("classic", 0, 0.81, knobs()),
        score("classic", 0, 0.82, knobs(benchmark_recipes=recipes)),
    ]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_table(Ledger(jsonl, knobs()), Namespace(results_dir=tmp_path), COLUMNS)
    headers = [
        line
        for line in (tmp_path / "low_data.md").read_text().splitlines()
        if line.startswith("Augmenting GAN")
    ]
    assert len(headers) == 2
    assert headers[0].endswith("trained on the 80 % train split.")  # a set from before the key
    assert headers[1].endswith(f"trained on the 80 % train split; benchmark recipes {recipes}.")

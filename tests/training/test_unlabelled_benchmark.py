"""benchmarks/unlabelled.py's bookkeeping: units differ by P(C)'s decay and G's latent size,
and the results file keeps its hand-written experiments section when the table is
rewritten."""

from __future__ import annotations

from benchmarks.unlabelled import EXPERIMENTS, critic_width, latent_size, unit_key, write_table


def row(method: str, **extra) -> dict:
    base = {"dataset": "digits", "n": 10, "true_classes": 10, "seed": 0, "entropy": None}
    scores = {"clusters": 10, "nmi": 0.5, "ari": 0.4, "accuracy": 0.6, "cpu_s": 6.0}
    if method == "kmeans":
        return base | scores | {"method": method, "lambda_creg": None, "steps": None}
    return base | scores | {"method": method, "lambda_creg": 5.0, "steps": 30, "entropy": 2.0}


def test_units_at_another_prior_decay_are_new_units_and_old_rows_ran_at_0_99(tmp_path):
    old = row("vcagan", nmi=0.01)  # written before prior_decay was recorded
    new = row("vcagan") | {"prior_decay": 0.999, "nmi": 0.52}
    assert unit_key(old) != unit_key(new)
    assert unit_key(old) == unit_key(old | {"prior_decay": 0.99})
    path = tmp_path / "unlabelled.md"
    path.write_text("old table\n\n" + EXPERIMENTS + "\n\n| run | change |\n| A | decay |\n")
    write_table([row("kmeans"), old, new], path)
    text = path.read_text()
    assert "old table" not in text
    lines = [line for line in text.splitlines() if line.startswith("| digits | 10 | vcagan")]
    assert [line.split(" | ")[5] for line in lines] == ["0.99", "0.999"]  # after "creg on"
    assert text.endswith(EXPERIMENTS + "\n\n| run | change |\n| A | decay |\n")
    write_table([row("kmeans"), old, new], path)  # a second rewrite keeps it once
    assert text == path.read_text()


def test_units_at_another_latent_size_are_new_units_and_old_rows_ran_at_64(tmp_path):
    old = row("vcagan") | {"prior_decay": 0.999}  # written before z_dim was recorded
    new = old | {"z_dim": 256}
    assert latent_size(old) == 64 and latent_size(row("kmeans")) is None
    assert unit_key(old) != unit_key(new)
    assert unit_key(old) == unit_key(old | {"z_dim": 64})
    path = tmp_path / "unlabelled.md"
    write_table([row("kmeans"), old, new], path)
    lines = [line for line in path.read_text().splitlines() if "| digits | 10 | vcagan" in line]
    assert [line.split(" | ")[6] for line in lines] == ["64", "256"]


def test_units_with_another_critic_width_are_new_units_shown_in_the_table(tmp_path):
    wide = row("vcagan") | {"options": {"d_channels": 32}}
    narrow = row("vcagan") | {"options": {"d_channels": 16}}
    assert critic_width(wide) == 32 and critic_width(row("kmeans")) is None
    assert critic_width(row("vcagan")) == 32  # options without a width: the loop's default
    assert unit_key(wide) != unit_key(narrow)
    path = tmp_path / "unlabelled.md"
    write_table([row("kmeans"), wide, narrow], path)
    lines = [line for line in path.read_text().splitlines() if "| digits | 10 | vcagan" in line]
    assert [line.split(" | ")[8] for line in lines] == ["16", "32"]  # after "balanced"

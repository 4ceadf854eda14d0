"""The markdown table of benchmarks/low_data.py, rewritten from its JSONL after every column."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

EARLIER = "## Earlier run"  # the file from this heading on is kept as it is
NOTES = "## Notes"  # so is a hand-written notes section, from its heading on
PAPER = {  # the Wasserstein AC-GAN-GP + truncation low-data paper, Fashion-MNIST
    500: "paper: trunk alone 77.5 %, critic (WAC-GAN-GPT) 79.8 %",
    2500: "paper: trunk alone 83.5 %, critic (WAC-GAN-GPT) 86.0 %",
}


def mean_se(values: list[float], sign: str = "") -> str:
    """Mean ± standard error in points, of fractions (no s.e. from one value)."""
    mean = f"{100 * statistics.mean(values):{sign}.2f}"
    if len(values) < 2:
        return mean
    return f"{mean} ± {100 * statistics.stdev(values) / math.sqrt(len(values)):.2f}"


def paired(scores: dict[str, dict[int, float]], column: str, reference: str) -> list[float]:
    """column - reference on the seeds both have."""
    a, b = scores.get(column, {}), scores.get(reference, {})
    return [a[s] - b[s] for s in sorted(a) if s in b]


def targets(size: int, scores: dict[str, dict[int, float]]) -> list[str]:
    """Issue 8 §4's targets at this size, each with whether it is met."""
    means = {c: statistics.mean(v.values()) for c, v in scores.items() if v}
    if not means:
        return []
    best = max(means, key=means.__getitem__)

    def verdict(ok: bool) -> str:
        return "**met**" if ok else "not met"

    lines = []
    if size == 500:
        ok = means[best] >= 0.825
        lines.append(f"- best column >= 82.5 %: {best} {100 * means[best]:.2f} %, {verdict(ok)}")
        others = {c: m for c, m in means.items() if c != "classic"}
        diffs = (
            paired(scores, top, "classic")
            if (top := max(others, key=others.__getitem__, default=None))
            else []
        )
        if len(diffs) > 1:
            mean, se = statistics.mean(diffs), statistics.stdev(diffs) / math.sqrt(len(diffs))
            ok = mean >= 0.010 and se <= 0.0035
            lines.append(
                f"- best column >= +1.0 over classic with paired s.e. <= 0.35: {top} "
                f"{100 * mean:+.2f} ± {100 * se:.2f} ({len(diffs)} seeds), {verdict(ok)}"
            )
        else:
            lines.append("- best column >= +1.0 over classic, paired s.e. <= 0.35: needs 2+ seeds")
    if size == 2500:
        diffs = paired(scores, "recipe", "classic")
        if diffs:
            mean = statistics.mean(diffs)
            lines.append(
                f"- recommended recipe (`ganaug.data`) never below classic (paired >= -0.1): "
                f"{100 * mean:+.2f}, {verdict(mean >= -0.001)}"
            )
        ok = means[best] >= 0.875
        lines.append(f"- best column >= 87.5 %: {best} {100 * means[best]:.2f} %, {verdict(ok)}")
    return lines


def knob_section(knobs: dict, rows: list[dict], columns: dict[str, str]) -> list[str]:
    scores_by_size: dict[int, dict[str, dict[int, float]]] = {}
    for row in rows:
        if row["kind"] == "score":
            size = scores_by_size.setdefault(row["size"], {})
            size.setdefault(row["column"], {})[row["seed"]] = row["accuracy"]
    gans = {(r["size"], r["seed"], r["role"]): r for r in rows if r["kind"] == "gan"}
    present = [c for c in columns if any(c in s for s in scores_by_size.values())]
    lines = [
        f"### GAN steps {knobs['gan_steps']}, classifier steps {knobs['classifier_steps']}, "
        f"report {knobs['report']}, {knobs['device']}",
        "",
        f"Augmenting GAN `{json.dumps(knobs['gan_config'])}`; critic GAN "
        f"`{json.dumps(knobs['critic_config'])}`; fixed recipe {knobs['fixed_recipe']}; "
        f"recommendation: {knobs.get('recommendation', 'the search alone')}; soft labeller "
        f"trained on {knobs.get('soft_labeller', 'the 80 % train split')}"
        + (
            f"; benchmark recipes {knobs['benchmark_recipes']}."
            if "benchmark_recipes" in knobs
            else "."
        ),
        "",
        "Test accuracy, mean ± s.e. over seeds (%), and below it the mean ± s.e. of the paired "
        "difference to classic (points, same subset and classifier seed); n = seeds.",
        "",
        "| train images | n | " + " | ".join(present) + " | critic - trunk; published |",
        "|---|---|" + "---|" * len(present) + "---|",
    ]
    for size, scores in sorted(scores_by_size.items()):
        n = max(len(v) for v in scores.values())
        absolute = [mean_se(list(scores[c].values())) if c in scores else "-" for c in present]
        diffs = [paired(scores, c, "classic") for c in present]
        lift = [
            "-" if c == "classic" or not d else f"{mean_se(d, '+')} (n {len(d)})"
            for c, d in zip(present, diffs, strict=True)
        ]
        critic_trunk = paired(scores, "critic", "trunk")
        ct = f"{mean_se(critic_trunk, '+')} (n {len(critic_trunk)})" if critic_trunk else "-"
        lines.append(f"| {size} | {n} | " + " | ".join(absolute) + f" | {PAPER.get(size, '')} |")
        lines.append("| vs classic | | " + " | ".join(lift) + f" | {ct} |")
    lines += ["", "Targets (issue 8 §4; 'best' is the top of several columns, so optimistic):", ""]
    for size, scores in sorted(scores_by_size.items()):
        lines += [f"{size} images:", *targets(size, scores), ""]
    lines += [
        "Per seed (test accuracy %; recipe = the report's recommendation; GAN s with report):",
        "",
    ]
    lines += [
        "| size | seed | "
        + " | ".join(present)
        + " | recommended recipe | GAN s (augment, critic) |"
    ]
    lines += ["|---|---|" + "---|" * len(present) + "---|---|"]
    seeds = sorted({(r["size"], r["seed"]) for r in rows if r["kind"] == "score"})
    for size, seed in seeds:
        cells = [
            f"{100 * scores_by_size[size][c][seed]:.2f}"
            if seed in scores_by_size[size].get(c, {})
            else "-"
            for c in present
        ]
        augment, critic = gans.get((size, seed, "augment")), gans.get((size, seed, "critic"))
        recipe = (augment or {}).get("recipe")
        described = (
            f"ratio {recipe['ratio']:g}, t {recipe['truncation']}, {recipe['filter']}, "
            f"held-out lift {100 * recipe['lift']:+.1f}"
            if recipe
            else "-"
        )
        times = ", ".join(str(g["seconds"]) if g else "-" for g in (augment, critic))
        lines.append(f"| {size} | {seed} | " + " | ".join(cells) + f" | {described} | {times} |")
    return lines + [""]


def write_table(ledger, args, columns: dict[str, str]) -> None:
    """Rewrite low_data.md from every row of the JSONL: one section per set of knobs."""
    path: Path = args.results_dir / "low_data.md"
    rows = ledger.on_disk()  # not only this run's: others may share the file
    sets: list[dict] = []
    for row in rows:
        if row["knobs"] not in sets:
            sets.append(row["knobs"])
    lines = [
        "# Low-data benchmark (Fashion-MNIST, official 10,000-image test set)",
        "",
        "Written by `benchmarks/low_data.py` from `low_data.jsonl` (one row per finished "
        "column or GAN); rerunning the script resumes where it stopped. Columns:",
        "",
        *(f"- **{name}**: {what}" for name, what in columns.items()),
        "",
        "Classifier columns: the small CNN of shared/RESEARCH.md, batch 64, Adam 1e-3, seed = "
        "the unit's seed. `recipe` and `distil` run whole epochs of RecipeBatchSampler, so "
        "their step count is the classifier steps rounded up to an epoch. A column with no "
        "synthetic rows (recommended ratio 0) is classic by definition and reuses its score. "
        "`plain`, `classic` and `trunk` never see the augmenting GAN: a knob set that agrees "
        "with an earlier one on the classifier (and, for trunk, the critic's architecture) "
        "copies their scores (rows marked `copied_from`).",
        "",
    ]
    for knobs in sets:
        lines += knob_section(knobs, [r for r in rows if r["knobs"] == knobs], columns)
    old = path.read_text() if path.exists() else ""
    kept = [old.index(heading) for heading in (NOTES, EARLIER) if heading in old]
    if kept:
        lines += [old[min(kept) :].rstrip("\n")]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")

"""Diversity study: which lever ends within-class collapse (Fashion-MNIST, 500 images).

For each lever (a set of training options) and seed: trains a GAN on a class-balanced subset
with the product's own split (holdout 0.2: 400 train, 100 held-out images), then measures
its untruncated samples the way the quality report does: precision, recall and coverage
against the held-out images in the features of an evaluator CNN trained on the train split
(k = 5; the real train images' own numbers are the floor), the within-class pixel spread
as a fraction of the real one, and CAS (a classifier trained on 500 synthetic images per
class, scored on the official 10,000-image test set). Each finished (lever, seed) is
appended to benchmarks/results/diversity.jsonl at once and skipped when the script runs
again, so a study can span sessions; the table in diversity.md is rewritten from it.

    .venv/bin/python benchmarks/diversity.py --levers wacgan-gp cgan-hinge-sn --seeds 0
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import training  # noqa: E402
from benchmarks.fashion_mnist import CLASSES, load  # noqa: E402
from benchmarks.synthetic_levers import within_class_spread  # noqa: E402
from benchmarks.train_defaults import write_subset  # noqa: E402
from models.artifact import SAMPLES_FILE  # noqa: E402
from models.drawing import draw_class_images  # noqa: E402
from models.sampler import GeneratorSampler  # noqa: E402
from training import TrainConfig  # noqa: E402
from training.classifier import (  # noqa: E402
    ClassifierBudget,
    accuracy,
    extract_features,
    train_classifier,
)
from training.dataset import StoredDataset  # noqa: E402
from training.metrics import PRDC_K, prdc  # noqa: E402
from training.split import stratified_split  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
EVALUATOR_BUDGET = ClassifierBudget(steps=500)  # the report's evaluator
CAS_BUDGET = ClassifierBudget(steps=1000)
CAS_PER_CLASS = 500

# Each lever names its method and options in full, so a change of TrainConfig's defaults
# cannot change what a lever (or a row already in diversity.jsonl) means.
_WACGAN = {"method": "wacgan-gp"}  # the default method until cgan-hinge-sn replaced it
_CGAN = {"method": "cgan", "adv_loss": "hinge", "spectral_norm": True, "n_critic": 2}
# the projection cGAN of levers.md without mode seeking (the default adds mode_seeking 1.0)
_CGAN |= {"beta1": 0.0, "beta2": 0.9, "mode_seeking": 0.0}
# Unconditional for the first sixth of the run, fully conditional from half way (the paper's
# ramp is likewise a fraction of training); "transition" is resolved against --steps.
_TRANSITION = {"transition": (1 / 6, 1 / 2)}
LEVERS: dict[str, dict] = {
    "wacgan-gp": _WACGAN,
    "wacgan-gp+transition": _WACGAN | _TRANSITION,
    "wacgan-gp+mode-seeking": _WACGAN | {"mode_seeking": 1.0},
    "cgan-hinge-sn": _CGAN,
    "cgan-hinge-sn+transition": _CGAN | _TRANSITION,
    "cgan-hinge-sn+mode-seeking": _CGAN | {"mode_seeking": 1.0},
    "cgan-hinge-sn+mode-seeking-0.5": _CGAN | {"mode_seeking": 0.5},
    "cgan-hinge-sn+mode-seeking+ada": _CGAN | {"mode_seeking": 1.0, "ada_target": 0.6},
    "cgan-hinge-sn+mode-seeking-0.5+ada": _CGAN | {"mode_seeking": 0.5, "ada_target": 0.6},
    # p starts at 1 (the control's fixed DiffAugment) and ADA moves it from there
    "cgan-hinge-sn+ada": _CGAN | {"ada_target": 0.6},
    # exports the generator, of those judged every 500 steps, with the best held-out recall;
    # that recall is the same measure on the same held-out images (and the same evaluator)
    # as this table's, so its recall column is biased upwards: read CAS and the grids too
    "cgan-hinge-sn+select-recall": _CGAN | {"select_by": "recall"},
    # ADA is refused for the Wasserstein critic, so TAC is measured on acgan, with its control
    "acgan": {"method": "acgan"},
    "acgan+tac": {"method": "acgan", "aux_twin": True},
}


def lever_options(lever: str, steps: int) -> dict:
    """The lever's training options for a run of `steps` generator updates."""
    options = dict(LEVERS[lever])
    if "transition" in options:
        start, end = options.pop("transition")
        options |= {"transition_start": round(start * steps), "transition_end": round(end * steps)}
    return options


def measure(model_dir: Path, dataset_dir: Path, config: TrainConfig, seed: int) -> dict:
    """Precision/recall/coverage vs held-out, spread ratio and CAS of a trained model."""
    stored = StoredDataset.load(dataset_dir)
    x, y = np.asarray(stored.x), stored.y
    split = stratified_split(y, config.holdout_fraction, seed)
    x_tr, y_tr, x_ho = x[split.train], y[split.train], x[split.holdout]
    evaluator = train_classifier(
        x_tr, y_tr, num_classes=len(CLASSES), budget=EVALUATOR_BUDGET, seed=seed
    )
    sampler = GeneratorSampler(model_dir)
    counts = np.bincount(y_tr, minlength=len(CLASSES))
    syn = [draw_class_images(sampler, c, int(n), seed) for c, n in enumerate(counts)]
    x_syn, y_syn = np.concatenate(syn), np.repeat(np.arange(len(CLASSES)), counts)
    f_ho, f_tr, f_syn = (extract_features(evaluator, v) for v in (x_ho, x_tr, x_syn))
    synthetic, floor = prdc(f_ho, f_syn, k=PRDC_K), prdc(f_ho, f_tr, k=PRDC_K)
    cas_x = np.concatenate(
        [draw_class_images(sampler, c, CAS_PER_CLASS, seed + 1) for c in range(len(CLASSES))]
    )
    cas_y = np.repeat(np.arange(len(CLASSES)), CAS_PER_CLASS)
    cas_model = train_classifier(
        cas_x, cas_y, num_classes=len(CLASSES), budget=CAS_BUDGET, seed=seed
    )
    return {
        **{key: synthetic[key] for key in ("precision", "recall", "coverage")},
        "floor": {key: floor[key] for key in ("precision", "recall", "coverage")},
        "spread_ratio": within_class_spread(x_syn, y_syn) / within_class_spread(x_tr, y_tr),
        "cas": accuracy(cas_model, *load("t10k")),
    }


def run_unit(lever: str, seed: int, steps: int, grids: Path) -> dict:
    options = lever_options(lever, steps)
    config = TrainConfig(**{**options, "seed": seed, "steps": steps, "report": "none"})
    with tempfile.TemporaryDirectory() as tmp:
        dataset_dir, model_dir = Path(tmp, "dataset"), Path(tmp, "model")
        write_subset(dataset_dir, 50, seed)
        start = time.perf_counter()
        training.run(config, dataset_dir=dataset_dir, out_dir=model_dir, model_id=lever)
        minutes = (time.perf_counter() - start) / 60
        grids.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / SAMPLES_FILE, grids / f"{lever}-seed{seed}.png")
        row = measure(model_dir, dataset_dir, config, seed)
    return {
        "lever": lever,
        "options": options,
        "seed": seed,
        "steps": steps,
        "gan_minutes": minutes,
        **row,
    }


def done_units(jsonl: Path) -> list[dict]:
    if not jsonl.exists():
        return []
    return [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]


def write_table(rows: list[dict], path: Path) -> None:
    lines = [
        "# Diversity levers (Fashion-MNIST, 500 images, untruncated samples)",
        "",
        "`benchmarks/diversity.py`; metrics against the 100 held-out images in evaluator",
        "features (k = 5); floor = the real train images' own numbers; spread = within-class",
        "pixel RMS spread, synthetic / real; CAS on the official test set. Targets: recall",
        ">= 0.5, coverage >= 0.9, precision >= 0.7, spread >= 0.95. One row per (lever, seed).",
        "",
        "| lever | seed | steps | recall | precision | coverage | spread | CAS | GAN min |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['lever']} | {r['seed']} | {r['steps']} | {r['recall']:.2f} "
            f"(floor {r['floor']['recall']:.2f}) | {r['precision']:.2f} | {r['coverage']:.2f} "
            f"| {r['spread_ratio']:.2f} | {100 * r['cas']:.1f} % | {r['gan_minutes']:.1f} |"
        )
    missing = [lever for lever in LEVERS if lever not in {r["lever"] for r in rows}]
    if missing:
        lines += ["", f"Not yet run (any seed): {', '.join(missing)}."]
    lines += ["", "Still owed: more seeds (`--seeds 1 2`) for every lever."]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levers", nargs="+", default=list(LEVERS), choices=list(LEVERS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of the results")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core: the machine is shared
    args.results.mkdir(parents=True, exist_ok=True)
    jsonl = args.results / "diversity.jsonl"
    for seed in args.seeds:
        for lever in args.levers:
            done = {(r["lever"], r["seed"], r["steps"]) for r in done_units(jsonl)}
            if (lever, seed, args.steps) in done:
                continue
            row = run_unit(lever, seed, args.steps, args.results / "diversity")
            with jsonl.open("a") as f:
                f.write(json.dumps(row) + "\n")
            write_table(done_units(jsonl), args.results / "diversity.md")
            print(json.dumps(row), flush=True)
    write_table(done_units(jsonl), args.results / "diversity.md")


if __name__ == "__main__":
    main()

"""Lever study: which GAN options and which ways of mixing synthetic rows add to classic
augmentation, scored on the official Fashion-MNIST test set (not the service's held-out).

Trains one GAN (the training options given as JSON) on a class-balanced subset with the
product's own split, then trains the benchmark classifier (small CNN, classic ±2 px shifts,
the same budget and seed) on real + synthetic for every recipe given, and prints each
recipe's test accuracy beside classic alone, all from this one run. A recipe is
`ratio:truncation:weight` (synthetic per real image; clamp t or `none`; loss weight of the
synthetic rows).

    .venv/bin/python benchmarks/synthetic_levers.py --gan-config '{"method": "cgan"}' \\
        --recipes 1:none:1 4:none:0.3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import training  # noqa: E402
from benchmarks.fashion_mnist import CLASSES, balanced_subset, load  # noqa: E402
from benchmarks.train_defaults import write_subset  # noqa: E402
from models.artifact import Manifest  # noqa: E402
from models.sampler import GeneratorSampler  # noqa: E402
from models.truncation import sample_latents  # noqa: E402
from training import TrainConfig  # noqa: E402
from training.classifier import ClassifierBudget, accuracy, train_classifier  # noqa: E402


def within_class_spread(x: np.ndarray, y: np.ndarray) -> float:
    """Mean over classes of the RMS pixel distance of images to their class mean."""
    pixels = x.reshape(len(x), -1).astype(np.float64) / 255.0
    return float(
        np.mean(
            [
                np.sqrt(((pixels[y == c] - pixels[y == c].mean(0)) ** 2).sum(1).mean())
                for c in np.unique(y)
            ]
        )
    )


def synthetic(
    sampler: GeneratorSampler, per_class: int, truncation: float | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), per_class)
    latents = sample_latents(rng, len(labels), sampler.manifest.z_dim, truncation=truncation)
    return sampler.generate(labels, latents), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan-config", default="{}", help="JSON training options")
    parser.add_argument("--recipes", nargs="+", default=["1:none:1"])
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-dir", type=Path, help="reuse (or keep) the trained GAN here")
    parser.add_argument("--classifier-steps", type=int, default=3000)
    args = parser.parse_args()
    x, y = balanced_subset(*load("train"), args.per_class, args.seed)
    test = load("t10k")
    budget = ClassifierBudget(steps=args.classifier_steps)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir or Path(tmp, "model")
        if not Manifest.path(model_dir).exists():
            config = TrainConfig(**{"seed": args.seed, **json.loads(args.gan_config)})
            dataset_dir = Path(tmp, "dataset")
            write_subset(dataset_dir, args.per_class, args.seed)
            start = time.perf_counter()
            training.run(config, dataset_dir=dataset_dir, out_dir=model_dir, model_id="levers")
            print(f"GAN {config.model_dump_json()}: {time.perf_counter() - start:.0f} s")
        sampler = GeneratorSampler(model_dir)
        base = accuracy(
            train_classifier(x, y, num_classes=10, budget=budget, seed=args.seed), *test
        )
        print(f"classic: {100 * base:.2f} %  (real spread {within_class_spread(x, y):.3f})")
        for recipe in args.recipes:
            ratio, trunc, weight = recipe.split(":")
            t = None if trunc == "none" else float(trunc)
            xs, ys = synthetic(sampler, round(float(ratio) * args.per_class), t, args.seed)
            model = train_classifier(
                x,
                y,
                num_classes=10,
                budget=budget,
                seed=args.seed,
                synthetic=(xs, ys),
                synthetic_weight=float(weight),
            )
            acc = accuracy(model, *test)
            print(
                f"{recipe}: {100 * acc:.2f} % ({100 * (acc - base):+.2f} pts), "
                f"synthetic spread {within_class_spread(xs, ys):.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

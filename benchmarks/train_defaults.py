"""Train with the default TrainConfig on 500 Fashion-MNIST images (50 per class) and time it.

Prints seconds per generator step and the total wall time against the 10-minute budget, and
saves the per-class sample grid to benchmarks/out/ to judge by eye.

    .venv/bin/python benchmarks/train_defaults.py [--steps N] [--method wacgan-gp]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import training  # noqa: E402
from benchmarks.fashion_mnist import CLASSES, balanced_subset, load  # noqa: E402
from models.artifact import SAMPLES_FILE  # noqa: E402
from training import Progress, TrainConfig  # noqa: E402
from training.config import DEFAULT_METHOD, METHOD_DEFAULTS  # noqa: E402
from training.dataset import StoredDataset  # noqa: E402

BUDGET_S = 600.0
OUT = Path(__file__).resolve().parent / "out"


def write_subset(dataset_dir: Path, per_class: int, seed: int) -> None:
    """Write a class-balanced subset of the training split in the stored-dataset format."""
    x, y = balanced_subset(*load("train"), per_class, seed)
    StoredDataset.save(dataset_dir, x, y, classes=CLASSES, source_format="npz")


def print_progress(p: Progress, state: dict[str, float]) -> None:
    if p.elapsed_s - state["last"] >= 30 or p.step == p.total_steps:
        state["last"] = p.elapsed_s
        losses = " ".join(f"{k}={v:.3f}" for k, v in p.losses.items())
        print(
            f"step {p.step}/{p.total_steps} {p.elapsed_s:.0f}s eta {p.eta_s:.0f}s {losses}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="override the default number of steps")
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=list(METHOD_DEFAULTS))
    parser.add_argument("--per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    overrides = {"method": args.method, "seed": args.seed}
    if args.steps:
        overrides["steps"] = args.steps
    config = TrainConfig(**overrides)
    print(config.model_dump_json())
    with tempfile.TemporaryDirectory() as tmp:
        dataset_dir, model_dir = Path(tmp, "dataset"), Path(tmp, "model")
        write_subset(dataset_dir, args.per_class, args.seed)
        state = {"last": 0.0}
        start = time.perf_counter()
        result = training.run(
            config,
            dataset_dir=dataset_dir,
            out_dir=model_dir,
            model_id="bench",
            progress_fn=lambda p: print_progress(p, state),
        )
        total = time.perf_counter() - start
        OUT.mkdir(exist_ok=True)
        grid = OUT / f"samples_{args.method}_{config.steps}steps.png"
        shutil.copyfile(model_dir / SAMPLES_FILE, grid)
    per_step = result.elapsed_s / result.steps_completed
    print(
        f"device {result.device}: {per_step:.3f} s/step ({config.n_critic} critic + 1 "
        f"generator update, batch {config.batch_size}), training {result.elapsed_s:.0f} s, "
        f"total with export {total:.0f} s = {total / BUDGET_S:.2f}x the 10-minute budget"
    )
    print(f"samples: {grid}")


if __name__ == "__main__":
    main()

"""How long the quality report's mixing search takes, next to the rest of the report.

Trains a GAN on a class-balanced Fashion-MNIST subset (or reuses the one in --work-dir),
builds its quality report with the chosen preset, and prints every stage's seconds, the
mixing search's share of the total, and what the search measured.

    .venv/bin/python benchmarks/report_mixing.py --images 500 --gan-steps 300   # ~10 min
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import training  # noqa: E402
from benchmarks.fashion_mnist import CLASSES, balanced_subset, load  # noqa: E402
from models.artifact import MANIFEST_FILE  # noqa: E402
from training.dataset import StoredDataset  # noqa: E402
from training.report import REPORT_BUDGETS, build_report  # noqa: E402

WORK_DIR = Path(__file__).resolve().parent / "out" / "report_mixing"


def model_dir(args: argparse.Namespace) -> tuple[Path, Path]:
    """The dataset and the trained model, made once per (images, gan steps, seed)."""
    root = args.work_dir / f"{args.images}-{args.gan_steps}-{args.seed}"
    dataset, model = root / "dataset", root / "model"
    if not (model / MANIFEST_FILE).exists():
        x, y = balanced_subset(*load("train"), args.images // len(CLASSES), args.seed)
        StoredDataset.save(dataset, x, y, classes=CLASSES, source_format="npz")
        started = time.perf_counter()
        config = training.TrainConfig(steps=args.gan_steps, seed=args.seed)
        training.run(config, dataset_dir=dataset, out_dir=model, model_id="bench", device="cpu")
        print(f"GAN: {args.gan_steps} steps in {time.perf_counter() - started:.0f} s")
    return dataset, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--gan-steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", choices=sorted(REPORT_BUDGETS), default="standard")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=WORK_DIR)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset, model = model_dir(args)
    report = build_report(model, dataset, budget=REPORT_BUDGETS[args.report], device="cpu")
    timings = report["timings_s"]
    print(json.dumps(timings, indent=1))
    mixing = timings.get("mixing", 0.0)
    print(
        f"mixing search: {mixing:.1f} s of {timings['total']:.1f} s "
        f"({100 * mixing / timings['total']:.1f} % of the report, "
        f"+{100 * mixing / (timings['total'] - mixing):.1f} % over the report without it)"
    )
    print(json.dumps({"mixing": report["mixing"], "recipe": report["recipe"]}, indent=1))
    print("\n".join(report["notes"][-3:]))


if __name__ == "__main__":
    main()

"""Cost of the default networks per image size: parameters, s/step and the Lipschitz monitor.

Builds the training loop's Trainer on random images (10 classes) at each size, times a few
default generator steps (n_critic critic updates + 1 generator update, batch 64) and the
critic's Lipschitz bound, and prints the monitor's overhead per step: the loop measures it
once per report, i.e. every 10 steps or 2 s, whichever comes first.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/network_sizes.py [--sizes 28 64 128]
        [--channels 1 3 3] [--widths 32 16] [--steps 3] [--set method=cgan ...]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.config import TrainConfig  # noqa: E402
from training.loop import Trainer, TrainingSet  # noqa: E402
from training.stats import REPORT_EVERY_S, REPORT_EVERY_STEPS  # noqa: E402

NUM_CLASSES, NUM_IMAGES = 10, 500


def random_set(size: int, channels: int) -> TrainingSet:
    images = torch.rand(NUM_IMAGES, channels, size, size) * 2 - 1
    labels = torch.arange(NUM_IMAGES) % NUM_CLASSES
    classes = [str(c) for c in range(NUM_CLASSES)]
    return TrainingSet(images.contiguous(memory_format=torch.channels_last), labels, classes)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(config: TrainConfig, size: int, channels: int, steps: int) -> dict[str, float]:
    trainer = Trainer(config, random_set(size, channels), torch.device("cpu"))
    trainer.step()  # warm-up: oneDNN picks its kernels on the first calls
    step_s = median_time(trainer.step, steps)
    lipschitz_s = median_time(trainer.critic.lipschitz_bound, 20)
    steps_per_report = min(REPORT_EVERY_STEPS, max(1, math.ceil(REPORT_EVERY_S / step_s)))
    return {
        "g_params_m": sum(p.numel() for p in trainer.generator.parameters()) / 1e6,
        "d_params_m": sum(p.numel() for p in trainer.critic.parameters()) / 1e6,
        "step_s": step_s,
        "lipschitz_ms": lipschitz_s * 1e3,
        "overhead_pct": 100 * lipschitz_s / (steps_per_report * step_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 64, 128])
    parser.add_argument("--channels", type=int, nargs="+", default=[1, 3, 3])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per size (median)")
    parser.add_argument(
        "--widths", type=int, nargs="+", default=[32], help="g_channels = d_channels to compare"
    )
    parser.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides key=value")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    torch.manual_seed(0)
    print(f"threads {torch.get_num_threads()}, overrides {overrides or 'none'}")
    print("size  ch  width  G params  D params  s/step  lipschitz ms  monitor overhead")
    for size, channels in zip(args.sizes, args.channels, strict=True):
        for width in args.widths:
            config = TrainConfig(**overrides, g_channels=width, d_channels=width, seed=0)
            m = measure(config, size, channels, args.steps)
            print(
                f"{size:4d}  {channels:2d}  {width:5d}  {m['g_params_m']:6.2f} M  "
                f"{m['d_params_m']:6.2f} M  {m['step_s']:6.3f}  {m['lipschitz_ms']:12.2f}  "
                f"{m['overhead_pct']:14.2f} %",
                flush=True,
            )


if __name__ == "__main__":
    main()

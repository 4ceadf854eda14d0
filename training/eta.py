"""How long the rest of a job will take: the training's remaining steps, then the quality
report that follows it.

A report's time is mostly small classifiers training (training/classifier.py), so before it
starts it is estimated by timing a few steps of the report's evaluator on the worker's
device, times the evaluator's steps, times how many such evaluator trainings a whole report
took when measured (`REPORT_IN_EVALUATOR_TRAININGS`). While it runs, its progress fraction
(the stage weights of `Stages`) says how much is left.
"""

from __future__ import annotations

import time

import torch

from training.classifier import SmallCNN
from training.report_setup import REPORT_BUDGETS

CALIBRATION_STEPS = 4  # timed, after one untimed step (allocations, lazy init)
# A whole report's seconds over (evaluator steps x one timed classifier step), measured on a
# 2-core CPU: the standard report of 500 Fashion-MNIST images (1,532 s; a step 0.155 s at
# the same load) and the fast report of the tiny test model (12.5 s; a step 0.03 s).
REPORT_IN_EVALUATOR_TRAININGS = {"standard": 19.8, "fast": 10.4}
# below this fraction the report's own rate is too noisy: the estimate made before it started
MIN_FRACTION_FOR_RATE = 0.05


def classifier_step_seconds(
    *, channels: int, size: int, num_classes: int, batch_size: int, device: torch.device
) -> float:
    """Seconds of one training step of the report's classifier on `device` (random data).
    The caller's random streams are left as they were: a training run draws the same."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return _timed_steps(channels, size, num_classes, batch_size, device)


def _timed_steps(
    channels: int, size: int, num_classes: int, batch_size: int, device: torch.device
) -> float:
    model = SmallCNN(max(num_classes, 2), channels, size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, channels, size, size, generator=generator).to(device)
    y = (torch.arange(batch_size) % max(num_classes, 2)).to(device)
    timings = []
    for _ in range(CALIBRATION_STEPS + 1):
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - start)
    return min(timings[1:])  # the least disturbed by other work on shared cores


def estimate_report_seconds(
    budget_name: str,
    *,
    channels: int,
    size: int,
    num_classes: int,
    device: torch.device,
) -> float:
    """The expected duration of a report of budget `budget_name` (standard or fast) on
    `device` for images of this shape."""
    budget = REPORT_BUDGETS[budget_name]
    step_s = classifier_step_seconds(
        channels=channels,
        size=size,
        num_classes=num_classes,
        batch_size=budget.evaluator.batch_size,
        device=device,
    )
    return REPORT_IN_EVALUATOR_TRAININGS[budget_name] * budget.evaluator.steps * step_s


def remaining_seconds(elapsed_s: float, fraction: float, estimate_s: float | None) -> float | None:
    """What is left of a report `fraction` done after `elapsed_s`: its own rate once it is
    far enough in, else what the estimate made before it started leaves."""
    if fraction >= MIN_FRACTION_FOR_RATE:
        return elapsed_s / fraction * (1.0 - fraction)
    if estimate_s is None:
        return None
    return max(estimate_s - elapsed_s, 0.0)

"""What a training run reports while it runs (Progress) and when it ends (TrainResult)."""

from __future__ import annotations

from dataclasses import dataclass

from models.artifact import TrainingDevice


@dataclass(frozen=True)
class Progress:
    """A progress report: losses are means over the steps since the previous report."""

    step: int
    total_steps: int
    losses: dict[str, float]
    elapsed_s: float
    eta_s: float  # the training's remaining steps
    report_s: float | None = None  # the report that follows, estimated (None: no report)
    time: float = 0.0  # when this was measured (epoch s): readers age the ETAs from here
    device: str | None = None  # torch device type training runs on: cpu or cuda
    device_name: str | None = None  # the GPU's name on cuda


@dataclass(frozen=True)
class TrainResult:
    steps_completed: int
    final_losses: dict[str, float]
    elapsed_s: float
    device: str
    seed: int
    trained_on: TrainingDevice  # the device's type and GPU name, as the manifest records it
    report_s: float | None = None  # the report that follows, as estimated before training

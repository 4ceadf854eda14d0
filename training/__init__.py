"""GAN training: config, the `run` entry point and its records; torch loads only inside `run`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from training.config import TrainConfig
from training.errors import TrainingAborted, TrainingInterrupted
from training.results import Progress, TrainResult

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Progress",
    "TrainConfig",
    "TrainResult",
    "TrainingAborted",
    "TrainingInterrupted",
    "run",
]


def run(
    config: TrainConfig,
    *,
    dataset_dir: Path,
    out_dir: Path,
    model_id: str,
    progress_fn: Callable[[Progress], None] | None = None,
    abort_fn: Callable[[], bool] | None = None,
    interrupt_fn: Callable[[], bool] | None = None,
    device: str | None = None,
    checkpoint_interval_s: float | None = None,
    compile_forwards: bool = False,
) -> TrainResult:
    """Train a generator on dataset_dir and write the model directory; see `training.loop.run`."""
    from training import loop  # torch is heavy: import it only when training starts

    return loop.run(
        config,
        dataset_dir=dataset_dir,
        out_dir=out_dir,
        model_id=model_id,
        progress_fn=progress_fn,
        abort_fn=abort_fn,
        interrupt_fn=interrupt_fn,
        device=device,
        checkpoint_interval_s=checkpoint_interval_s,
        compile_forwards=compile_forwards,
    )

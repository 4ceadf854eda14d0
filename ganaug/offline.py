"""`ganaug train DATASET --out DIR`: train a model with no server, as a worker would.

The same code paths as the service: the upload is ingested by `service.ingest` (same
checks, same image size and channels), trained by `training.run` (which exports
generator.onnx, classifier.onnx where the method has a class head, and manifest.json), and
its quality report is built by `training.report` unless the options say `report: none`.
The ingested dataset lives in a temporary folder only while this runs.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

import training
from core.db.repo import new_id
from core.settings import Settings
from ganaug.client import eta_text, progress_bar
from models.artifact import MANIFEST_FILE, Manifest
from service.catalog import config_problems, ingest_limits
from service.ingest import IngestError, ingest


class OfflineError(Exception):
    """What is wrong with the dataset, the options or the output folder, said to the user."""


@dataclass(frozen=True)
class OfflineModel:
    """A model directory written by `train_offline`."""

    out_dir: Path
    manifest: Manifest
    elapsed_s: float
    report_s: float | None  # None: no report was built


def train_offline(
    dataset_file: Path,
    out_dir: Path,
    options: dict[str, Any],
    *,
    settings: Settings,
    image_size: int | None = None,
    device: str | None = None,
    progress: bool = True,
) -> OfflineModel:
    """Ingest `dataset_file` (zip/tar/npz, as uploads), train on it with the training
    `options` and write the model directory `out_dir` (then its report, unless
    options["report"] is "none").

    Raises:
        OfflineError: the options are invalid, the file is refused, or out_dir already
            holds a model.
    """
    try:
        config = training.TrainConfig.model_validate(options)
    except ValidationError as exc:
        raise OfflineError(f"invalid training options: {config_problems(exc)}") from None
    _check_device(device)
    if (out_dir / MANIFEST_FILE).exists():
        raise OfflineError(f"{out_dir} already holds a model; choose another --out or remove it")
    with tempfile.TemporaryDirectory(prefix="ganaug-offline-") as tmp:
        dataset_dir = Path(tmp) / "dataset"
        try:
            with dataset_file.open("rb") as upload:
                ingest(
                    upload,
                    dataset_file.name,
                    dataset_dir,
                    limits=ingest_limits(settings),
                    image_size=image_size,
                )
        except IngestError as exc:
            raise OfflineError(f"{dataset_file}: {exc.kind.value}: {exc.message}") from None
        with progress_bar(progress, "steps") as bar:
            task = bar.add_task("training", total=config.steps, eta="")

            def on_progress(p: training.Progress) -> None:
                bar.update(task, completed=p.step, eta=eta_text(p.eta_s))

            result = training.run(
                config,
                dataset_dir=dataset_dir,
                out_dir=out_dir,
                model_id=new_id(),
                progress_fn=on_progress,
                device=device,
                checkpoint_interval_s=settings.checkpoint_interval_s,
            )
            report_s = None
            if config.report != "none":
                report_s = _report(config, dataset_dir, out_dir, bar, device, result.report_s)
    return OfflineModel(out_dir, Manifest.load(out_dir), result.elapsed_s, report_s)


def _check_device(device: str | None) -> None:
    """Refuse a device torch cannot train on here, before any work is done."""
    if device is None:
        return
    import torch

    try:
        torch_device = torch.device(device)
    except RuntimeError as exc:
        raise OfflineError(f"unknown device '{device}' ({exc}); use cpu or cuda") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise OfflineError(f"device '{device}': this machine has no usable CUDA GPU; use cpu")


def _report(
    config: training.TrainConfig,
    dataset_dir: Path,
    out_dir: Path,
    bar: Any,
    device: str | None,
    estimate_s: float | None,
) -> float:
    """Build the quality report as the worker does, with a progress bar; its seconds."""
    from training.eta import remaining_seconds
    from training.report import REPORT_BUDGETS, build_report

    task = bar.add_task("report", total=1.0, eta="")
    started = time.monotonic()

    def on_progress(stage: str, fraction: float) -> None:
        eta = remaining_seconds(time.monotonic() - started, fraction, estimate_s)
        bar.update(task, completed=fraction, description=f"report: {stage}", eta=eta_text(eta))

    build_report(
        out_dir,
        dataset_dir,
        budget=REPORT_BUDGETS[config.report],
        progress_fn=on_progress,
        device=device,
    )
    bar.update(task, completed=1.0, description="report", eta="")
    return time.monotonic() - started

"""Thin Celery tasks: load the job, call training.run / the report, record the result."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import training
from core.db import repo
from core.db.session import session_scope
from core.queue import REPORT_TASK, TRAIN_TASK
from core.settings import get_settings
from models.artifact import Manifest
from workers.celery_app import app

log = logging.getLogger("ganaug.worker")


class _Throttle:
    """True at most once per `interval_s` seconds."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.last = float("-inf")

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.interval_s:
            return False
        self.last = now
        return True


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def discovered_classes(model_dir: Path) -> tuple[list[dict], dict] | None:
    """A vcagan model's classes and clusters as its row records them (None: other methods)."""
    manifest = Manifest.load(model_dir)
    clusters = manifest.clusters
    if clusters is None:
        return None
    classes = [
        {"index": i, "name": name, "count": count, "probability": probability}
        for i, (name, count, probability) in enumerate(
            zip(manifest.classes, clusters.counts, clusters.probabilities, strict=True)
        )
    ]
    summary = {
        "prior": clusters.prior,
        "entropy": clusters.entropy,
        "min_class_probability": clusters.min_class_probability,
    }
    return classes, summary


@app.task(name=TRAIN_TASK)
def train_model(model_id: str) -> str:
    """Train the model `model_id` queued by the API and record how it ended."""
    settings = get_settings()
    url = settings.sqlalchemy_url
    with session_scope(url) as session:
        job = repo.claim_model(session, model_id)
    if job is None:
        log.info("model %s is not runnable (cancelled, finished or gone); skipping", model_id)
        return "skipped"
    config = training.TrainConfig.model_validate(job.config)
    progress_due, cancel_due = (
        _Throttle(settings.progress_interval_s),
        _Throttle(settings.cancel_poll_s),
    )

    def on_progress(progress: training.Progress) -> None:
        if progress_due.due() or progress.step >= progress.total_steps:
            with session_scope(url) as session:
                repo.record_progress(session, model_id, asdict(progress))

    def should_abort() -> bool:
        if not cancel_due.due():
            return False
        with session_scope(url) as session:
            return repo.cancel_requested(session, model_id)

    try:
        result = training.run(
            config,
            dataset_dir=settings.datasets_dir / job.dataset_id,
            out_dir=settings.models_dir / model_id,
            model_id=model_id,
            progress_fn=on_progress,
            abort_fn=should_abort,
            device=settings.device,
        )
    except training.TrainingAborted:
        with session_scope(url) as session:
            repo.finish_model(session, model_id, status="cancelled")
        return "cancelled"
    except Exception as exc:
        log.exception("training of model %s failed", model_id)
        with session_scope(url) as session:
            repo.finish_model(session, model_id, status="failed", error=_describe(exc))
        return "failed"
    wants_report = config.report != "none"
    with session_scope(url) as session:
        repo.finish_model(
            session,
            model_id,
            status="succeeded",
            final_losses=result.final_losses,
            report=wants_report,
            discovered=discovered_classes(settings.models_dir / model_id),
        )
    if wants_report:
        build_report.delay(model_id)
    return "succeeded"


@app.task(name=REPORT_TASK)
def build_report(model_id: str) -> str:
    """Compute the quality report of a succeeded model (metrics, t*, recommended recipe)."""
    from training.report import REPORT_BUDGETS
    from training.report import build_report as build

    settings = get_settings()
    url = settings.sqlalchemy_url
    with session_scope(url) as session:
        job = repo.claim_report(session, model_id)
    if job is None:
        return "skipped"
    # A model trained with report=none gets the standard budget when a report is asked for.
    budget = REPORT_BUDGETS.get(job.config.get("report"), REPORT_BUDGETS["standard"])
    progress_due, gone_due = (
        _Throttle(settings.progress_interval_s),
        _Throttle(settings.cancel_poll_s),
    )

    def on_progress(stage: str, fraction: float) -> None:
        if progress_due.due():
            with session_scope(url) as session:
                repo.record_report_progress(session, model_id, stage, fraction)

    def model_deleted() -> bool:
        with session_scope(url) as session:
            return not repo.model_exists(session, model_id)

    try:
        build(
            settings.models_dir / model_id,
            settings.datasets_dir / job.dataset_id,
            budget=budget,
            progress_fn=on_progress,
            abort_fn=lambda: gone_due.due() and model_deleted(),
            device=settings.device,
        )
    except Exception as exc:
        # Deleting the model stops its report (abort_fn), or removes files under it first.
        if isinstance(exc, training.TrainingAborted) or model_deleted():
            log.info("report of model %s stopped: the model was deleted", model_id)
            return "aborted"
        log.exception("report of model %s failed", model_id)
        with session_scope(url) as session:
            repo.finish_report(session, model_id, status="failed", error=_describe(exc))
        return "failed"
    with session_scope(url) as session:
        repo.finish_report(session, model_id, status="succeeded")
    return "succeeded"

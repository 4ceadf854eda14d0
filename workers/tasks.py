"""Thin Celery tasks: lease the job, call training.run / the report, record the result.

Each task runs under its job's lease (core/leases.py): a delivery that finds the job held
by a live lease does nothing, and every write names the lease's token, so a worker that
lost its lease writes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

import training
from core.db import repo
from core.db.session import session_scope
from core.db.tables import Model
from core.leases import LeaseKeeper, lease_owner
from core.queue import REPORT_TASK, TRAIN_TASK, dispatch
from core.settings import Settings, get_settings
from models.artifact import Manifest
from workers.celery_app import app
from workers.lifecycle import STOPPING

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


def _try_write(url: str, write: Callable[[Session], object], what: str) -> None:
    """A progress write that may be skipped: the database is away for a moment."""
    try:
        with session_scope(url) as session:
            write(session)
    except SQLAlchemyError as exc:
        log.warning("%s not recorded: %s", what, exc)


def _final_write(settings: Settings, lease: LeaseKeeper, write: Callable[[Session], bool]) -> bool:
    """How a job ended, retried while the lease holds (the database may be restarting);
    False when the lease is lost: another attempt owns the job and nothing was written."""
    while not lease.lost.is_set():
        try:
            with session_scope(settings.sqlalchemy_url) as session:
                return write(session)
        except SQLAlchemyError as exc:
            log.warning("model %s: result not recorded yet, retrying: %s", lease.model_id, exc)
            time.sleep(settings.lease_heartbeat_s / 2)
    return False


def _requeue(settings: Settings, lease: LeaseKeeper, kind: str) -> str:
    """This worker is stopping: give the job back to the queue for another (or the next)."""
    url = settings.sqlalchemy_url
    if _final_write(
        settings, lease, lambda s: repo.release_lease(s, lease.model_id, lease.token, kind)
    ):
        try:
            dispatch(app, url, kind, lease.model_id)
        except Exception as exc:
            log.warning("model %s: requeued; the sweep sends it (%s)", lease.model_id, exc)
    log.info("model %s: %s interrupted by shutdown; requeued", lease.model_id, kind)
    return "interrupted"


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
    """Train (or resume) the model `model_id` queued by the API and record how it ended."""
    return _run_claimed(model_id, "training", repo.claim_model, _train)


def _run_claimed(
    model_id: str,
    what: str,
    claim: Callable[..., Model | None],
    job_fn: Callable[[Settings, Model, LeaseKeeper], str],
) -> str:
    """Claim the model's job (`claim`: its lease) and run job_fn under that lease, renewed
    while it runs; "skipped" when another delivery holds the job or it is not due."""
    settings = get_settings()
    with session_scope(settings.sqlalchemy_url) as session:
        job = claim(session, model_id, owner=lease_owner(), lease_s=settings.lease_s)
        why = repo.lease_holder(session, model_id) if job is None else ""
    if job is None:
        log.warning("model %s: %s not run by this delivery (%s)", model_id, what, why)
        return "skipped"
    assert job.lease_token is not None
    with LeaseKeeper(settings, model_id, job.lease_token) as lease:
        return job_fn(settings, job, lease)


def _train(settings: Settings, job: Model, lease: LeaseKeeper) -> str:
    model_id, token, url = job.id, lease.token, settings.sqlalchemy_url
    config = training.TrainConfig.model_validate(job.config)
    progress_due, cancel_due = (
        _Throttle(settings.progress_interval_s),
        _Throttle(settings.cancel_poll_s),
    )

    def on_progress(progress: training.Progress) -> None:
        if progress_due.due() or progress.step >= progress.total_steps:
            _try_write(
                url,
                lambda s: repo.record_progress(s, model_id, token, asdict(progress)),
                "progress",
            )

    def should_abort() -> bool:
        if lease.lost.is_set():
            return True
        if not cancel_due.due():
            return False
        try:
            with session_scope(url) as session:
                return repo.cancel_requested(session, model_id)
        except SQLAlchemyError as exc:
            log.warning("model %s: cancel not checked: %s", model_id, exc)
            return False

    try:
        result = training.run(
            config,
            dataset_dir=settings.datasets_dir / job.dataset_id,
            out_dir=settings.models_dir / model_id,
            model_id=model_id,
            progress_fn=on_progress,
            abort_fn=should_abort,
            interrupt_fn=STOPPING.is_set,
            device=settings.device,
            checkpoint_interval_s=settings.checkpoint_interval_s,
            compile_forwards=settings.train_compile,
        )
    except training.TrainingInterrupted:
        return _requeue(settings, lease, repo.TRAINING)
    except training.TrainingAborted:
        ended = _final_write(
            settings, lease, lambda s: repo.finish_model(s, model_id, token, status="cancelled")
        )
        return "cancelled" if ended else _superseded(model_id)
    except Exception as exc:
        if lease.lost.is_set():
            return _superseded(model_id)
        log.exception("training of model %s failed", model_id)
        error = _describe(exc)
        failed = _final_write(
            settings,
            lease,
            lambda s: repo.finish_model(s, model_id, token, status="failed", error=error),
        )
        return "failed" if failed else _superseded(model_id)
    wants_report = config.report != "none"
    discovered = discovered_classes(settings.models_dir / model_id)
    final_progress = {
        "step": result.steps_completed,
        "total_steps": config.steps,
        "losses": result.final_losses,
        "elapsed_s": result.elapsed_s,
        "eta_s": 0.0,
        "report_s": result.report_s if wants_report else None,
        "time": time.time(),
        "device": result.trained_on.type,
        "device_name": result.trained_on.name,
    }
    if not _final_write(
        settings,
        lease,
        lambda s: repo.finish_model(
            s,
            model_id,
            token,
            status="succeeded",
            progress=final_progress,
            report=wants_report,
            discovered=discovered,
        ),
    ):
        return _superseded(model_id)
    if wants_report:
        try:
            dispatch(app, url, repo.REPORT, model_id)
        except Exception as exc:  # the report stays queued, unsent: the sweep sends it
            log.warning("model %s: report queued; the sweep sends it (%s)", model_id, exc)
    return "succeeded"


def _superseded(model_id: str) -> str:
    log.warning(
        "model %s: lease lost (job taken over or model deleted); nothing recorded", model_id
    )
    return "superseded"


@app.task(name=REPORT_TASK)
def build_report(model_id: str) -> str:
    """Compute the quality report of a succeeded model (metrics, t*, recommended recipe)."""
    return _run_claimed(model_id, "report", repo.claim_report, _report)


class _Stopping(Exception):
    """The worker is stopping: the report goes back to the queue."""


def _report(settings: Settings, job: Model, lease: LeaseKeeper) -> str:
    from training.eta import remaining_seconds
    from training.report import REPORT_BUDGETS
    from training.report import build_report as build

    model_id, token, url = job.id, lease.token, settings.sqlalchemy_url
    # A model trained with report=none gets the standard budget when a report is asked for.
    budget = REPORT_BUDGETS.get(job.config.get("report"), REPORT_BUDGETS["standard"])
    progress_due, gone_due = (
        _Throttle(settings.progress_interval_s),
        _Throttle(settings.cancel_poll_s),
    )

    started, estimate_s = time.monotonic(), (job.progress or {}).get("report_s")

    def on_progress(stage: str, fraction: float) -> None:
        if progress_due.due():
            elapsed = time.monotonic() - started
            eta = remaining_seconds(elapsed, fraction, estimate_s)
            _try_write(
                url,
                lambda s: repo.record_report_progress(
                    s, model_id, token, stage, fraction, elapsed_s=elapsed, eta_s=eta
                ),
                "report progress",
            )

    def should_abort() -> bool:
        if STOPPING.is_set():
            raise _Stopping
        return lease.lost.is_set() or (gone_due.due() and _deleted(url, model_id))

    try:
        build(
            settings.models_dir / model_id,
            settings.datasets_dir / job.dataset_id,
            budget=budget,
            progress_fn=on_progress,
            abort_fn=should_abort,
            device=settings.device,
        )
    except _Stopping:
        return _requeue(settings, lease, repo.REPORT)
    except Exception as exc:
        # Deleting the model stops its report (abort_fn), or removes files under it first.
        if _deleted(url, model_id):
            log.info("report of model %s stopped: the model was deleted", model_id)
            return "aborted"
        if lease.lost.is_set():
            return _superseded(model_id)
        log.exception("report of model %s failed", model_id)
        error = _describe(exc)
        _final_write(
            settings,
            lease,
            lambda s: repo.finish_report(s, model_id, token, status="failed", error=error),
        )
        return "failed"
    _final_write(
        settings, lease, lambda s: repo.finish_report(s, model_id, token, status="succeeded")
    )
    return "succeeded"


def _deleted(url: str, model_id: str) -> bool:
    try:
        with session_scope(url) as session:
            return not repo.model_exists(session, model_id)
    except SQLAlchemyError:
        return False

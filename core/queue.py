"""The job queue: task names, the Celery app factory and every broker option.

The gateway only sends tasks by name; the workers register them (workers/tasks.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from celery import Celery
from sqlalchemy.exc import SQLAlchemyError

from core.db import repo
from core.db.session import session_scope
from core.settings import Settings

TRAIN_TASK = "ganaug.train_model"
REPORT_TASK = "ganaug.build_report"
JOB_TASKS = {repo.TRAINING: TRAIN_TASK, repo.REPORT: REPORT_TASK}
SEND_GRACE_S = 5.0  # the sweep leaves a job just queued to whoever queued it, this long

log = logging.getLogger("ganaug.queue")


def embedded_queue_dirs(settings: Settings) -> tuple[Path, Path, Path]:
    return tuple(settings.broker_dir / name for name in ("queue", "processed", "control"))


def prepare_embedded_broker(settings: Settings) -> None:
    """Create the folders the filesystem broker needs (embedded mode only)."""
    if settings.embedded:
        for folder in embedded_queue_dirs(settings):
            folder.mkdir(parents=True, exist_ok=True)


def transport_options(settings: Settings) -> dict:
    """Broker transport options: a queue folder in embedded mode, the visibility timeout else."""
    if settings.embedded:
        queue, processed, control = embedded_queue_dirs(settings)
        return {
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(processed),
            "control_folder": str(control),  # kombu's default is relative to the cwd
            "store_processed": False,
        }
    # Redis redelivers an unacked task after this long; a redelivery while the job runs is
    # refused by its lease, and a lost worker's job is requeued by the lease sweep instead.
    timeout = settings.visibility_timeout_s
    options: dict = {"visibility_timeout": timeout}
    if timeout < 100:  # kombu looks for such messages every 10 x 10 s by default
        options |= {"unacked_restore_interval": max(1, timeout // 2), "unacked_restore_throttle": 1}
    return options


def make_celery(settings: Settings, include: Sequence[str] = ()) -> Celery:
    """Build the Celery app for `settings`; `include` names the modules that define tasks.

    The gateway only sends tasks by name and includes none; the worker includes its tasks.
    """
    app = Celery("ganaug", include=list(include))
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,  # a task is acknowledged only once it has finished
        task_reject_on_worker_lost=True,  # ... and requeued if its worker process dies
        worker_prefetch_multiplier=1,  # a GPU worker holds one job at a time
        worker_concurrency=settings.worker_concurrency,
        task_default_queue=settings.queue,
        task_routes={name: {"queue": settings.queue} for name in (TRAIN_TASK, REPORT_TASK)},
        worker_hijack_root_logger=False,
    )
    if settings.task_events and not settings.embedded:
        # Flower shows tasks only from these events: sent by the worker (received, started,
        # succeeded, ...) and by whoever sends a task (sent), i.e. the API.
        app.conf.update(worker_send_task_events=True, task_send_sent_event=True)
    return app


def dispatch(celery: Celery, url: str, kind: str, model_id: str) -> None:
    """Send a queued job's task (kind: training or report), then note that it was sent.

    Raises what the broker raised: the job stays queued and unsent, and the sweep (`sweep`)
    sends it once the broker answers. A message sent twice is harmless: the job's lease
    runs it once.
    """
    celery.send_task(JOB_TASKS[kind], args=[model_id])
    try:
        with session_scope(url) as session:
            repo.mark_dispatched(session, model_id)
    except SQLAlchemyError as exc:  # sent, but not noted: the sweep sends it once more
        log.warning("model %s: %s task sent, not recorded as sent: %s", model_id, kind, exc)


def sweep(settings: Settings, celery: Celery, send_grace_s: float = SEND_GRACE_S) -> list[str]:
    """Requeue the jobs whose lease expired (their worker is gone) and send every queued job
    whose message was never sent; return the model ids sent."""
    url = settings.sqlalchemy_url
    with session_scope(url) as session:
        requeued = repo.requeue_expired(session)
    if requeued:
        log.warning("leases expired (their workers are gone): requeued models %s", requeued)
    with session_scope(url) as session:
        jobs = repo.undispatched(session, older_than_s=send_grace_s)
    sent = []
    for kind, model_id in jobs:
        try:
            dispatch(celery, url, kind, model_id)
        except Exception as exc:
            log.warning("broker unreachable; %d queued jobs wait to be sent: %s", len(jobs), exc)
            break
        sent.append(model_id)
    if sent:
        log.info("sent queued jobs of models %s", sent)
    return sent


def requeue_interrupted(settings: Settings) -> list[str]:
    """Requeue at once every job a stopped embedded worker (the only worker there is) left
    running, without waiting for its lease to expire; send queued jobs never sent."""
    with session_scope(settings.sqlalchemy_url) as session:
        repo.expire_leases(session)
    return sweep(settings, make_celery(settings), send_grace_s=0.0)

"""The job queue: task names, the Celery app factory and every broker option.

The gateway only sends tasks by name; the workers register them (workers/tasks.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from celery import Celery

from core.db import repo
from core.db.session import session_scope
from core.settings import Settings

TRAIN_TASK = "ganaug.train_model"
REPORT_TASK = "ganaug.build_report"

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
    # Redis redelivers an unacked task after this long: it must exceed the longest training.
    return {"visibility_timeout": settings.visibility_timeout_s}


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
    return app


def requeue_interrupted(settings: Settings) -> list[str]:
    """Queue again the trainings and reports a stopped embedded worker left running."""
    with session_scope(settings.sqlalchemy_url) as session:
        trainings, reports = repo.reset_running(session)
    celery = make_celery(settings)
    for model_id in trainings:
        celery.send_task(TRAIN_TASK, args=[model_id])
    for model_id in reports:
        celery.send_task(REPORT_TASK, args=[model_id])
    if trainings or reports:
        log.info("requeued interrupted trainings %s and reports %s", trainings, reports)
    return trainings + reports

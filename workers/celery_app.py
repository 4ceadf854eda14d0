"""The Celery application: every broker and worker option lives here."""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from service.settings import Settings, get_settings

TRAIN_TASK = "ganaug.train_model"
REPORT_TASK = "ganaug.build_report"


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


def make_celery(settings: Settings) -> Celery:
    """Build the Celery app for `settings` (the API only sends; the worker also runs tasks)."""
    app = Celery("ganaug", include=["workers.tasks"])
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


app = make_celery(get_settings())

"""The workers' Celery app (`celery -A workers.celery_app`): core's app with our tasks."""

from __future__ import annotations

from celery import signals

from core.logs import configure_logging
from core.queue import make_celery
from core.settings import get_settings

app = make_celery(get_settings(), include=["workers.tasks"])


@signals.setup_logging.connect
def _logging(**_kwargs: object) -> None:
    """With a receiver here Celery leaves logging alone: core.logs configures it (text or
    JSON, the same as the API's), also under `celery -A workers.celery_app worker`."""
    configure_logging(get_settings())

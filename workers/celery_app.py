"""The workers' Celery app (`celery -A workers.celery_app`): core's app with our tasks."""

from __future__ import annotations

from core.queue import make_celery
from core.settings import get_settings

app = make_celery(get_settings(), include=["workers.tasks"])

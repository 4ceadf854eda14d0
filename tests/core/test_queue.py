"""The Celery app core.queue builds: task events for Flower only where they are asked for."""

from __future__ import annotations

import pytest

from core.queue import make_celery
from core.settings import Settings

REDIS = "redis://redis:6379/0"


@pytest.mark.parametrize(
    ("env", "broker", "events"),
    [
        ({}, REDIS, False),  # off unless asked for
        ({"GANAUG_TASK_EVENTS": "true"}, REDIS, True),
        ({"GANAUG_TASK_EVENTS": "false"}, REDIS, False),
        ({"GANAUG_TASK_EVENTS": "true"}, "filesystem://", False),  # no broadcast to carry them
    ],
)
def test_task_events_follow_the_setting(monkeypatch, tmp_path, env, broker, events):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    conf = make_celery(Settings(broker_url=broker, data_dir=tmp_path)).conf
    assert conf.worker_send_task_events is events
    assert conf.task_send_sent_event is events

"""Per-tenant quotas, each a setting: queued + running jobs, datasets, stored bytes and the
training cost of queued + running trainings. A request that would pass one answers 403
`quota_exceeded`, naming the quota, its limit, what the tenant uses and what was asked
(`quota`, `limit`, `used`, `requested` in the error object).

Callers that insert what they checked lock the tenant's row first (`tenants.lock_tenant`),
so two requests of one tenant cannot both take the last place, and commit. Checks made
before slow work (ingesting an upload) are early answers only: they are made again under
the lock.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from core.db import tenants
from core.settings import Settings
from service.errors import ApiError
from training.config import TrainConfig


def training_cost(config: Mapping[str, Any]) -> int:
    """steps x batch_size x (g_channels + d_channels): the work a training asks for."""

    def option(name: str) -> int:  # configs stored before an option existed have its default
        return int(config.get(name, TrainConfig.model_fields[name].default))

    return option("steps") * option("batch_size") * (option("g_channels") + option("d_channels"))


def _exceeded(quota: str, limit: int, used: int, requested: int, unit: str, fix: str) -> ApiError:
    over = used + requested - limit
    return ApiError(
        403,
        "quota_exceeded",
        f"Quota exceeded: {quota} (GANAUG_QUOTA_{quota.upper()} = {limit:,} {unit}). The "
        f"tenant uses {used:,} and this request needs {requested:,} more: {over:,} over. {fix}",
        details={"quota": quota, "limit": limit, "used": used, "requested": requested},
    )


def check_datasets(settings: Settings, session: Session, tenant: str) -> None:
    """Room for one more dataset."""
    used = tenants.count_datasets(session, tenant)
    if used + 1 > settings.quota_datasets:
        raise _exceeded(
            "datasets", settings.quota_datasets, used, 1, "datasets", "Delete a dataset first."
        )


def stored_bytes(settings: Settings, session: Session, tenant: str) -> int:
    """Bytes on disk under the tenant's dataset and model folders."""
    dataset_ids, model_ids = tenants.stored_ids(session, tenant)
    folders = [settings.datasets_dir / i for i in dataset_ids]
    folders += [settings.models_dir / i for i in model_ids]
    return sum(folder_bytes(folder) for folder in folders)


def folder_bytes(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name), follow_symlinks=False).st_size
            except FileNotFoundError:  # a checkpoint replaced while we count
                continue
    return total


def check_storage(settings: Settings, session: Session, tenant: str, adding: int = 0) -> None:
    """Room for `adding` more bytes (0: the tenant must not be over its quota already)."""
    used = stored_bytes(settings, session, tenant)
    limit = settings.quota_stored_bytes
    if used + adding > limit or used >= limit:
        raise _exceeded(
            "stored_bytes", limit, used, adding, "bytes", "Delete datasets or models first."
        )


def check_jobs(
    settings: Settings, session: Session, tenant: str, *, config: Mapping[str, Any] | None
) -> None:
    """Room for one more job: a training with `config`, or a quality report (config None)."""
    jobs = tenants.active_jobs(session, tenant)
    if len(jobs) + 1 > settings.quota_jobs:
        raise _exceeded(
            "jobs",
            settings.quota_jobs,
            len(jobs),
            1,
            "queued or running trainings and reports",
            "Wait for one to finish, or cancel one.",
        )
    if config is None:
        return
    training = [m for m in jobs if m.status in ("queued", "running")]
    used = sum(training_cost(m.config) for m in training)
    cost = training_cost(config)
    if used + cost > settings.quota_training_cost:
        raise _exceeded(
            "training_cost",
            settings.quota_training_cost,
            used,
            cost,
            "steps x batch_size x (g_channels + d_channels) of queued and running trainings",
            "Ask for fewer steps, a smaller batch or narrower networks, or wait for a "
            "training to finish.",
        )

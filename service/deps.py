"""Request dependencies as Annotated aliases, so handlers stay a few lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from core.db.session import session_scope
from core.settings import Settings
from service.access import CALLER_SCOPE_KEY, Caller
from service.compute import Compute

# The dependencies that do not block are coroutines: FastAPI runs a plain `def` dependency
# on a worker thread, a hand-off per dependency per request.


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.settings.sqlalchemy_url) as session:
        yield session


async def _celery(request: Request) -> Celery:
    return request.app.state.celery


async def _compute(request: Request) -> Compute:
    return request.app.state.compute


async def _tenant(request: Request) -> str:
    """The caller's tenant, which service.access found from its API key (or anonymity)."""
    caller: Caller = request.scope[CALLER_SCOPE_KEY]
    return caller.tenant


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionDep = Annotated[Session, Depends(_session)]
CeleryDep = Annotated[Celery, Depends(_celery)]
TenantDep = Annotated[str, Depends(_tenant)]
ComputeDep = Annotated[Compute, Depends(_compute)]

# List paging. The offset bound keeps it within every database's integer (SQLite and
# PostgreSQL fail above 2**63 - 1) and far above any row count.
PageLimit = Annotated[int, Query(ge=1, le=500)]
PageOffset = Annotated[int, Query(ge=0, le=2**31 - 1)]

"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from core.db.session import ping
from service.access import auth_summary
from service.errors import error_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up and answers; says nothing of the database or the queue."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers, the broker accepts a connection and the embedded
    worker (when this process runs one) is up; `auth` says how callers are identified
    (anonymous mode is flagged with a warning)."""
    settings = request.app.state.settings
    checks: dict[str, str] = {}
    try:
        ping(settings.sqlalchemy_url)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        with request.app.state.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    if request.app.state.worker_status is not None:
        checks["worker"] = request.app.state.worker_status()
    failing = [name for name, state in checks.items() if state != "ok"]
    if failing:
        return error_response(
            503,
            "not_ready",
            "Not ready: " + "; ".join(f"{name} {checks[name]}" for name in failing),
        )
    return JSONResponse({"status": "ready", "checks": checks, "auth": auth_summary(settings)})

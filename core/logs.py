"""Logging for the API and the workers, configured in one place: text or JSON lines
(GANAUG_LOG_FORMAT), the request id of the request being served in every line, and the
noise of libraries (kombu's "No hostname was supplied" for the filesystem broker) dropped.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime

from core.settings import Settings

# The id of the request being served (service.telemetry sets it); "-" outside a request.
REQUEST_ID: ContextVar[str] = ContextVar("ganaug_request_id", default="-")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(processName)s] [%(request_id)s] %(message)s"
# (logger, message start) of lines that say nothing an operator can act on
_NOISE = (
    # the filesystem broker has no host; kombu says so on every connection
    ("kombu.connection", "No hostname was supplied"),
    # alembic's preamble to every migration check (its "Running upgrade" lines stay)
    ("alembic.runtime.migration", "Context impl"),
    ("alembic.runtime.migration", "Will assume"),
)


class _RequestContext(logging.Filter):
    """Adds `request_id` to every record, and drops the library noise of `_NOISE`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return not any(
            record.name == name and str(record.msg).startswith(start) for name, start in _NOISE
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, request_id, message (and the
    exception's traceback, when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(settings: Settings) -> None:
    """Send every logger's lines (ours, uvicorn's, Celery's) through one stderr handler in
    the chosen format, at GANAUG_LOG_LEVEL."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RequestContext())
    handler.setFormatter(
        JsonFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery"):
        logger = logging.getLogger(name)
        logger.handlers = []  # theirs would print each line a second time, in their format
        logger.propagate = True
    logging.captureWarnings(True)  # library warnings become log lines in the same format

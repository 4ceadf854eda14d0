"""`ganaug serve --workers N`: N uvicorn processes answering on one socket, one training
worker (docs/serving.md, "Several API processes").

uvicorn starts worker processes only from an import string, so each API process builds its
own app with `create_worker_app` (uvicorn's factory) from what the serve process leaves it
in the environment, which spawned processes inherit:
- the settings (GANAUG_*), with the command line's host and port, and the threads of each
  process (process_threads): N processes run at most as many generations at once as one;
- a folder made for this serve and removed when it ends: prometheus-client's multi-process
  files (PROMETHEUS_MULTIPROC_DIR: /metrics sums every process's counts) and the status
  the embedded worker publishes, which each API process's /readyz reads;
- the serve's pid: an API process ends with its serve, even a killed one.

The serve process migrated the database before (prepared=True). Per process, not shared:
ORT sessions and their warm-up (GANAUG_WARM_MODELS each), the compute pool, dynamic
batching, and rate limits counted in memory:// (a redis:// URL shares them).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from core.logs import configure_logging
from core.settings import Settings, get_settings
from service.telemetry import MULTIPROCESS_DIR_ENV

log = logging.getLogger("ganaug.cli")

RUN_DIR_ENV = "_GANAUG_SERVE_RUN_DIR"  # the serve's folder, for its API processes
PARENT_PID_ENV = "_GANAUG_SERVE_PID"
WORKER_STATUS_FILE = "worker-status.json"


def process_threads(settings: Settings) -> dict[str, int]:
    """Each API process's threads: the set ones, else a compute pool of its share of the
    cores (at least 1) and the one-process default for an ORT session, so the N processes
    run at most as many generations at once, of as many threads each, as one process."""
    from models.sampler import default_threads

    share = max(1, (os.cpu_count() or 1) // settings.serve_workers)
    return {
        "compute_threads": settings.compute_threads or share,
        "ort_threads": settings.ort_threads or default_threads(),
    }


def rate_limit_warning(settings: Settings) -> str | None:
    """What to tell the operator when N processes each count a key's rate limits."""
    from service.ratelimit import LIMITED_ROUTES

    limited = any(getattr(settings, f"rate_limit_{name}") for name in LIMITED_ROUTES)
    if settings.serve_workers == 1 or not limited:
        return None
    if not settings.rate_limit_storage_url.startswith("memory://"):
        return None
    return (
        f"each of the {settings.serve_workers} API processes counts rate limits on its own "
        f"(GANAUG_RATE_LIMIT_STORAGE_URL=memory://), so a key may make up to "
        f"{settings.serve_workers} times each GANAUG_RATE_LIMIT_*; set "
        "GANAUG_RATE_LIMIT_STORAGE_URL to a redis:// URL to share the counts"
    )


class ServeRun:
    """The folder and environment of one `ganaug serve --workers N` (N > 1)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.folder = Path(tempfile.mkdtemp(prefix="ganaug-serve-"))
        (self.folder / "metrics").mkdir()

    @property
    def worker_status_file(self) -> Path:
        return self.folder / WORKER_STATUS_FILE

    def serve(self, **uvicorn_options: Any) -> None:
        """Run uvicorn's N processes until the serve is stopped (SIGTERM, SIGINT)."""
        import uvicorn

        threads = process_threads(self.settings)
        os.environ.update(
            {
                "GANAUG_HOST": self.settings.host,
                "GANAUG_PORT": str(self.settings.port),
                "GANAUG_SERVE_WORKERS": str(self.settings.serve_workers),
                "GANAUG_COMPUTE_THREADS": str(threads["compute_threads"]),
                "GANAUG_ORT_THREADS": str(threads["ort_threads"]),
                MULTIPROCESS_DIR_ENV: str(self.folder / "metrics"),
                RUN_DIR_ENV: str(self.folder),
                PARENT_PID_ENV: str(os.getpid()),
            }
        )
        log.info(
            "%d API processes, each with a compute pool of %d threads and %d ORT threads "
            "per session",
            self.settings.serve_workers,
            threads["compute_threads"],
            threads["ort_threads"],
        )
        if warning := rate_limit_warning(self.settings):
            log.warning(warning)
        uvicorn.run(
            f"{__name__}:create_worker_app",
            factory=True,
            workers=self.settings.serve_workers,
            **uvicorn_options,
        )

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def create_worker_app() -> FastAPI:
    """The app of one API process of `ganaug serve --workers N` (uvicorn's factory)."""
    from ganaug.embedded import read_status
    from service.app import create_app
    from workers.lifecycle import die_with_parent

    die_with_parent(int(os.environ[PARENT_PID_ENV]))
    settings = get_settings()
    configure_logging(settings)
    status_file = Path(os.environ[RUN_DIR_ENV]) / WORKER_STATUS_FILE
    # The serve publishes its worker's status before it starts the API processes.
    worker_status = partial(read_status, status_file) if status_file.exists() else None
    return create_app(settings, worker_status=worker_status, prepared=True)

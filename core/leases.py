"""Job leases at run time: the heartbeat that keeps a running job's lease, and the sweep
that requeues jobs whose lease expired (docs/architecture.md, "Jobs: leases and resume").

The rows and their compare-and-set writes are core/db/repo.py's; this module runs them on
a clock, in threads of the worker processes.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from types import TracebackType

from sqlalchemy.exc import SQLAlchemyError

from core.db import repo
from core.db.session import session_scope
from core.queue import make_celery, sweep
from core.settings import Settings

log = logging.getLogger("ganaug.leases")


def lease_owner() -> str:
    """Who holds a lease, for people reading the row: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseKeeper:
    """Renews the lease `token` on model `model_id` every lease_heartbeat_s from a thread.

    `lost` is set, and renewing stops, when the lease is no longer ours (another worker took
    the job over, or the model was deleted) or when the database stayed unreachable for so
    long that the lease may have expired: the job must then stop without writing anything.
    """

    def __init__(self, settings: Settings, model_id: str, token: str) -> None:
        self.url, self.model_id, self.token = settings.sqlalchemy_url, model_id, token
        self.lease_s, self.heartbeat_s = settings.lease_s, settings.lease_heartbeat_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{model_id[:8]}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        renewed = time.monotonic()
        while not self._stop.wait(self.heartbeat_s):
            try:
                with session_scope(self.url) as session:
                    held = repo.renew_lease(session, self.model_id, self.token, self.lease_s)
            except SQLAlchemyError as exc:
                # Stop before the lease can expire, so two workers never run the job at once.
                if time.monotonic() - renewed > self.lease_s - self.heartbeat_s:
                    log.error(
                        "model %s: database unreachable, lease given up: %s", self.model_id, exc
                    )
                    self.lost.set()
                    return
                log.warning("model %s: lease not renewed, retrying: %s", self.model_id, exc)
                continue
            if not held:
                log.warning("model %s: the lease is no longer ours; stopping", self.model_id)
                self.lost.set()
                return
            renewed = time.monotonic()


class Sweeper:
    """Every lease_sweep_s: requeue jobs whose lease expired and send queued jobs never sent
    (core.queue.sweep). Every worker runs one; their compare-and-set writes make a job
    requeued once however many sweep."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        celery = make_celery(self.settings)  # its own connections, apart from the worker's
        while True:
            try:
                sweep(self.settings, celery)
            except Exception as exc:  # the database or broker is away: try at the next round
                log.warning("lease sweep failed: %s", exc)
            if self._stop.wait(self.settings.lease_sweep_s):
                return

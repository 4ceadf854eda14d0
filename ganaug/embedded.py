"""The worker process an embedded `ganaug serve` runs (or `ganaug serve --worker`):
supervised, counted in /readyz, stopped with the serve.

The worker lives in its own process group (so stopping it reaches its pool processes) and
dies with the serve however the serve ends (`ganaug worker --parent-pid`, see
workers/lifecycle.py). When it dies on its own it is restarted; in embedded mode its jobs
are put back in the queue at once, since it was the only worker and their leases need not
run out first. With several API processes (`ganaug serve --workers N`) its status is also
written to `status_file` at each change, where every API process's /readyz reads it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.queue import requeue_interrupted
from core.settings import Settings

log = logging.getLogger("ganaug.cli")

MAX_RESTART_DELAY_S = 60.0
STABLE_AFTER_S = 60.0  # a worker that ran this long restarts after the first delay again


class EmbeddedWorker:
    """Start `ganaug worker`, restart it when it dies, stop it (and its pool) on `stop`;
    `status_file`: where to publish `status()` at each change (see read_status)."""

    def __init__(self, settings: Settings, status_file: Path | None = None) -> None:
        self.settings = settings
        self.status_file = status_file
        self.restarts = 0
        self._proc: subprocess.Popen | None = None
        self._last_exit: str | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="embedded-worker", daemon=True)

    def start(self) -> EmbeddedWorker:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        argv = [sys.executable, "-m", "ganaug.cli", "worker", "--parent-pid", str(os.getpid())]
        self._proc = subprocess.Popen(argv, start_new_session=True)
        self._started = time.monotonic()
        self._publish()

    def status(self) -> str:
        """ "ok" while the worker process runs, else what happened to it (for /readyz)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            return "ok"
        exited = self._last_exit or "not started"
        return f"down: {exited}; restarting (restarts so far: {self.restarts})"

    def _publish(self) -> None:
        if self.status_file is None:
            return
        written = self.status_file.with_suffix(".tmp")
        written.write_text(json.dumps({"status": self.status()}))
        os.replace(written, self.status_file)  # readers see the old status or the new one

    def _supervise(self) -> None:
        delay = self.settings.worker_restart_delay_s
        while True:
            assert self._proc is not None
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            self._last_exit = f"exited with {_describe_exit(code)} at {time.strftime('%H:%M:%S')}"
            self._publish()
            log.error("embedded worker %s; restarting in %.0f s", self._last_exit, delay)
            _kill_group(self._proc.pid, signal.SIGKILL)  # pool processes it left, if any
            if time.monotonic() - self._started > STABLE_AFTER_S:
                delay = self.settings.worker_restart_delay_s
            if self._stopping.wait(delay):
                return
            if self.settings.embedded:  # else other workers may hold leases: the sweep waits
                try:
                    requeue_interrupted(self.settings)
                except Exception as exc:  # the new worker's sweep requeues them later
                    log.warning("could not requeue the dead worker's jobs now: %s", exc)
            with self._lock:
                if self._stopping.is_set():
                    return
                self._spawn()
                self.restarts += 1
            delay = min(delay * 2, MAX_RESTART_DELAY_S)

    def stop(self) -> None:
        """Stop the worker: TERM to it (its running job checkpoints and is requeued, see
        workers/lifecycle.py), then KILL to its whole group if it outlives its deadline.

        A job cut short is requeued and resumes from its checkpoint at the next start.
        """
        with self._lock:
            self._stopping.set()
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:  # the worker's own deadline comes first
                proc.wait(timeout=self.settings.worker_shutdown_grace_s + 5)
            except subprocess.TimeoutExpired:
                pass
        _kill_group(proc.pid, signal.SIGKILL)  # nothing of its group outlives it
        proc.wait()


def read_status(status_file: Path) -> str:
    """The status an EmbeddedWorker of another process published to `status_file`."""
    return json.loads(status_file.read_text())["status"]


def _kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"

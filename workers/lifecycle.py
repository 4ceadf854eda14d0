"""How worker processes start and stop: the lease sweeper, following the `ganaug serve`
that started an embedded worker, and a shutdown that checkpoints and ends in bounded time.

- Every worker's main process runs a lease sweeper (core.leases.Sweeper).
- A stopping worker (SIGTERM to its main process: warm shutdown) tells the pool processes
  that run a task, whose job saves a checkpoint and goes back to the queue (STOPPING);
  whatever is still alive `worker_shutdown_grace_s` later is killed, so a pool process
  that died or hangs mid-task cannot hold the worker in its warm shutdown. Idle pool
  processes are not signalled: billiard's handler would end them, and Celery's warm
  shutdown then waits for them forever (what the deadline guards against).
- An embedded worker dies with its `ganaug serve`, however that ends (die_with_parent).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from billiard.process import active_children
from celery import platforms
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutting_down,
)
from celery.worker import state as worker_state

from core.db.session import forget_inherited_connections
from core.leases import Sweeper
from core.settings import get_settings

log = logging.getLogger("ganaug.worker")

# Set in a process running tasks when its worker stops: the job checkpoints and is requeued.
STOPPING = threading.Event()


@worker_ready.connect
def _start_sweeper(**_: object) -> None:
    Sweeper(get_settings()).start()


_pool_process = False
_sigterm_before_task: list = []


@worker_process_init.connect
def _pool_process_started(**_: object) -> None:
    global _pool_process
    _pool_process = True
    forget_inherited_connections()  # the parent's pooled database connections stay its own


@task_prerun.connect
def _checkpoint_on_sigterm(**_: object) -> None:
    """While a pool process runs a task, SIGTERM asks the task to checkpoint and stop.
    (Set here: billiard installs its own handler after worker_process_init.)"""
    if _pool_process:
        _sigterm_before_task[:] = [signal.signal(signal.SIGTERM, lambda *_: STOPPING.set())]


@task_postrun.connect
def _restore_sigterm(**_: object) -> None:
    if _pool_process and _sigterm_before_task:
        signal.signal(signal.SIGTERM, _sigterm_before_task.pop())


@worker_shutting_down.connect
def _stop_pool(**_: object) -> None:
    STOPPING.set()  # the solo pool runs tasks in this process
    for request in list(worker_state.active_requests):
        if request.worker_pid:
            _signal(request.worker_pid, signal.SIGTERM)
    grace_s = get_settings().worker_shutdown_grace_s
    threading.Thread(
        target=_kill_after, args=(grace_s,), name="shutdown-deadline", daemon=True
    ).start()


def _kill_after(grace_s: float) -> None:
    time.sleep(grace_s)
    log.error("worker still stopping after %.0f s: killing its pool and exiting", grace_s)
    for child in active_children():
        if child.pid:
            _signal(child.pid, signal.SIGKILL)
    os._exit(1)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def die_with_parent(parent_pid: int) -> None:
    """End this process when `parent_pid` (its parent) ends, even by SIGKILL: the kernel
    signals it on Linux (PR_SET_PDEATHSIG), a watchdog thread checks elsewhere too. Pool
    processes die with this one (Celery sets the same signal in them)."""
    platforms.set_pdeathsig("SIGKILL")
    if os.getppid() != parent_pid:  # the parent was gone before we asked
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1)
        log.error("the process that started this worker (pid %d) is gone: exiting", parent_pid)
        for child in active_children():
            if child.pid:
                _signal(child.pid, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()

"""The worker `ganaug serve` runs in embedded mode: restarted when it dies, counted in
/readyz, and never outliving its serve, however the serve ends (real processes)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.api_flows import upload_and_train, wait_for_model
from tests.conftest import TINY_TRAINING, Api, service_env
from tests.servers import wait_for


def children(pid: int) -> list[int]:
    """Live child pids of `pid`, whichever of its threads started them."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return [p for p in found if alive(p)]


def alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def ready_worker(api: Api) -> tuple[int, list[int]]:
    """Once /readyz counts the worker ready and its pool runs: its pid and its pool's."""
    with api.client() as client:
        wait_for(lambda: client.get("/readyz").json()["checks"]["worker"] == "ok", 60, "worker")
    (worker,) = children(api.proc.pid)
    wait_for(lambda: children(worker), 60, "the worker's pool")
    return worker, children(worker)


def test_a_killed_worker_is_restarted_and_readyz_says_so(tmp_path, processes):
    api = Api(service_env(tmp_path / "data"), tmp_path / "serve.log").start()
    processes.append(api)
    worker, _pool = ready_worker(api)
    os.kill(worker, signal.SIGKILL)
    with api.client() as client:
        wait_for(lambda: client.get("/readyz").status_code == 503, 5, "/readyz to notice")
        error = client.get("/readyz").json()["error"]
        assert error["code"] == "not_ready" and "worker down" in error["message"], error
        assert "signal SIGKILL" in error["message"]
        wait_for(lambda: client.get("/readyz").status_code == 200, 60, "the restart")
        (restarted,) = children(api.proc.pid)
        assert restarted != worker and not alive(worker)
        created = upload_and_train(client, TINY_TRAINING)  # jobs run on the new worker
        wait_for_model(client, created["model"]["id"], {"succeeded"}, 300)


def test_a_worker_dies_with_its_serve_even_a_killed_one(tmp_path, processes):
    api = Api(service_env(tmp_path / "data"), tmp_path / "serve.log").start()
    processes.append(api)
    worker, pool = ready_worker(api)
    os.kill(api.proc.pid, signal.SIGKILL)  # no chance to stop anything itself
    api.proc.wait()
    wait_for(lambda: not any(alive(p) for p in [worker, *pool]), 10, "the worker to follow")

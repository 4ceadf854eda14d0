"""Jobs under faults, with real processes: Celery workers on a Redis broker, PostgreSQL, a
`ganaug serve`. A worker SIGKILLed mid-training, a duplicate delivery, a Redis restart and a
PostgreSQL restart: every job ends once, with continuous steps and one artifact.

All slow (make test-slow): each trains for tens of seconds. The fast tier covers the same
rules in-process: tests/core/test_leases.py, tests/training/test_loop.py (resume),
tests/service/test_jobs.py and tests/service/test_embedded_worker.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
import torch

from models.artifact import CHECKPOINT_FILE, GENERATOR_FILE, STATS_FILE
from tests.api_flows import upload_and_train, wait_for_model
from tests.conftest import TINY_TRAINING, Api, ServiceProcess, service_env
from tests.servers import PostgresServer, start_redis, stop_process, wait_for
from tests.service.test_embedded_worker import alive
from training.stats import REPORT_EVERY_STEPS

pytestmark = pytest.mark.slow

TIMEOUT = 300
LEASE_S = 6  # service_env's
LONG = {**TINY_TRAINING, "steps": 400, "checkpoint_every": 100_000}  # checkpoints by the clock


def start(
    tmp_path: Path, redis_url: str, database_url: str, processes: list, workers: int, **env: str
) -> tuple[list[ServiceProcess], Api]:
    environment = service_env(
        tmp_path / "data",
        GANAUG_BROKER_URL=redis_url,
        GANAUG_DATABASE_URL=database_url,
        GANAUG_QUEUE=f"faults-{uuid.uuid4().hex[:8]}",
        GANAUG_CHECKPOINT_INTERVAL_S="1",
        **env,
    )
    started = [
        ServiceProcess(["worker"], environment, tmp_path / f"worker{i}.log").start()
        for i in range(workers)
    ]
    processes.extend(started)
    api = Api(environment, tmp_path / "api.log").start()
    processes.append(api)
    return started, api


def job_row(database_url: str, model_id: str) -> dict:
    with psycopg.connect(database_url) as conn:
        cursor = conn.execute(
            "SELECT status, attempts, lease_owner, started_at FROM models WHERE id = %s",
            (model_id,),
        )
        names = [column.name for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


def wait_for_step(client: httpx.Client, model_id: str, step: int) -> dict:
    deadline = time.monotonic() + TIMEOUT
    while (model := client.get(f"/v1/models/{model_id}").json())["progress"]["step"] < step:
        assert model["status"] in ("queued", "running") and time.monotonic() < deadline, model
        time.sleep(0.2)
    return model


def one_running_one_queued(client: httpx.Client) -> tuple[str, str]:
    """A long training past step 20 and a tiny one queued behind it (one worker), as ids."""
    created = upload_and_train(client, LONG)
    running = created["model"]["id"]
    wait_for_step(client, running, 20)
    queued = client.post("/v1/models", json={"dataset_id": created["id"], **TINY_TRAINING}).json()[
        "id"
    ]
    return running, queued


def stats_lines(model_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (model_dir / STATS_FILE).read_text().splitlines()]


def check_continuous(model_dir: Path, steps: int) -> list[dict]:
    """Stats steps strictly increase without a gap wider than a report's, up to the end;
    one exported model and no half-written file."""
    lines = stats_lines(model_dir)
    numbers = [line["step"] for line in lines]
    assert numbers == sorted(set(numbers)), "a step repeats or goes back"
    assert numbers[-1] == steps and numbers[0] <= REPORT_EVERY_STEPS
    assert all(b - a <= REPORT_EVERY_STEPS for a, b in zip(numbers, numbers[1:], strict=False))
    files = sorted(p.name for p in model_dir.iterdir())
    assert files.count(GENERATOR_FILE) == 1 and not [f for f in files if f.endswith(".tmp")]
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["steps_completed"] == steps
    return lines


def test_a_killed_workers_job_resumes_on_another_worker(
    tmp_path, redis_url, postgres_url, processes
):
    workers, api = start(tmp_path, redis_url, postgres_url, processes, workers=2)
    with api.client() as client:
        model_id = upload_and_train(client, LONG)["model"]["id"]
        model_dir = tmp_path / "data" / "models" / model_id
        wait_for_step(client, model_id, 60)
        wait_for(lambda: (model_dir / CHECKPOINT_FILE).exists(), 30, "a checkpoint")
        host, pid = job_row(postgres_url, model_id)["lease_owner"].rsplit(":", 1)
        assert host == socket.gethostname()
        (victim,) = [w for w in workers if _parent(int(pid)) == w.proc.pid]
        os.kill(victim.proc.pid, signal.SIGKILL)  # the worker; its pool process follows
        killed_at = time.time()
        wait_for(lambda: not alive(int(pid)), 5, "the training process to die with it")
        checkpoint_step = torch.load(model_dir / CHECKPOINT_FILE)["step"]

        wait_for(lambda: job_row(postgres_url, model_id)["attempts"] == 2, 60, "a takeover")
        resumed_after = time.time() - killed_at
        print(f"resumed {resumed_after:.1f} s after the kill, from step {checkpoint_step}")
        assert resumed_after < LEASE_S + 10, f"resumed {resumed_after:.0f} s after the kill"
        wait_for_model(client, model_id, {"succeeded"}, TIMEOUT)
    row = job_row(postgres_url, model_id)
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("succeeded", 2, None)
    lines = check_continuous(model_dir, LONG["steps"])
    before = [line for line in lines if line["step"] <= checkpoint_step]
    after = [line for line in lines if line["step"] > checkpoint_step]
    assert before[-1]["step"] == checkpoint_step, "the checkpoint step has its stats line"
    assert all(line["time"] < killed_at for line in before), "lines up to the checkpoint kept"
    assert all(line["time"] > killed_at for line in after), "the lost run's later lines dropped"
    survivor = next(w for w in workers if w is not victim)
    assert f"model {model_id} resumes at step {checkpoint_step}" in survivor.log_path.read_text()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_duplicate_delivery_is_refused_and_runs_never_overlap(
    tmp_path, redis_url, postgres_url, processes
):
    """A visibility timeout far shorter than the job: Redis hands the message to the
    other worker while the first still trains; the lease refuses it."""
    workers, api = start(
        tmp_path, redis_url, postgres_url, processes, workers=2, GANAUG_VISIBILITY_TIMEOUT_S="3"
    )
    with api.client() as client:
        model_id = upload_and_train(client, LONG)["model"]["id"]
        seen, deadline = [], time.monotonic() + TIMEOUT
        while (model := client.get(f"/v1/models/{model_id}").json())["status"] != "succeeded":
            assert model["status"] in ("queued", "running") and time.monotonic() < deadline
            seen.append(model["progress"]["step"])
            time.sleep(0.2)
    assert seen == sorted(seen), "progress went back: two runs wrote it"
    refusals = [
        w for w in workers if f"model {model_id}: training not run by this delivery" in w.log()
    ]
    assert refusals, "the duplicate was never delivered: the test proved nothing"
    assert "leased by" in refusals[0].log()
    assert job_row(postgres_url, model_id)["attempts"] == 1
    lines = check_continuous(tmp_path / "data" / "models" / model_id, LONG["steps"])
    times = [line["time"] for line in lines]
    assert times == sorted(times), "stats lines of two runs interleave"


def test_a_redis_restart_loses_no_job(tmp_path, postgres_url, processes):
    """Append-only Redis, as docker-compose.yml runs it; a job runs, another is queued."""
    folder = tmp_path / "redis"
    folder.mkdir()
    redis_url, redis_proc = start_redis(folder, appendonly=True)
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    try:
        _workers, api = start(tmp_path, redis_url, postgres_url, processes, workers=1)
        with api.client() as client:
            running, queued = one_running_one_queued(client)
            assert client.get(f"/v1/models/{queued}").json()["status"] == "queued"
            stop_process(redis_proc)
            time.sleep(2)
            assert client.get("/readyz").status_code == 503
            redis_url, redis_proc = start_redis(folder, port=port, appendonly=True)
            wait_for(lambda: client.get("/readyz").status_code == 200, 30, "/readyz")
            for model_id, steps in ((running, LONG["steps"]), (queued, TINY_TRAINING["steps"])):
                model = wait_for_model(client, model_id, {"succeeded"}, TIMEOUT)
                assert model["progress"]["step"] == steps
                check_continuous(tmp_path / "data" / "models" / model_id, steps)
        assert job_row(postgres_url, running)["attempts"] == 1  # it ran through the restart
    finally:
        stop_process(redis_proc)


def test_a_postgres_restart_makes_readyz_503_then_recovers_losing_no_job(
    tmp_path, redis_url, processes
):
    server = PostgresServer().start()
    try:
        _workers, api = start(
            tmp_path, redis_url, server.url, processes, workers=1, GANAUG_LEASE_S="30"
        )
        with api.client() as client:
            running, queued = one_running_one_queued(client)
            server.stop("fast")
            wait_for(lambda: client.get("/readyz").status_code == 503, 10, "/readyz 503")
            error = client.get("/readyz").json()["error"]
            assert error["code"] == "not_ready" and "database unreachable" in error["message"]
            time.sleep(3)
            server.start()
            wait_for(lambda: client.get("/readyz").status_code == 200, 30, "/readyz 200")
            for model_id, steps in ((running, LONG["steps"]), (queued, TINY_TRAINING["steps"])):
                model = wait_for_model(client, model_id, {"succeeded"}, TIMEOUT)
                assert model["progress"]["step"] == steps
        assert job_row(server.url, running)["attempts"] == 1  # its lease outlived the outage
        check_continuous(tmp_path / "data" / "models" / running, LONG["steps"])
    finally:
        for process in reversed(processes):
            process.stop()
        server.remove()

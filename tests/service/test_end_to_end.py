"""The whole path a user walks, against real processes.

The fast tier runs the distributed and the embedded flow (and the pending report status);
cancelling, a lost worker process and a restart mid-training are marked slow.
Distributed: real Redis broker, real PostgreSQL, a `ganaug worker` process and a
`ganaug serve` process that is restarted between training and sampling.
Embedded: one `ganaug serve` with SQLite and the filesystem broker, nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from models.evaluator import EvaluatorScorer
from models.manifold import MANIFOLD_FILE
from tests.api_flows import (
    check_archive,
    check_auto_truncation,
    check_filters,
    check_one_seeding_rule,
    check_onnx,
    check_recommended_archive,
    check_report,
    check_samples,
    check_sampling_errors,
    upload_and_train,
    wait_for_model,
    wait_for_report,
)
from tests.conftest import TINY_TRAINING, Api, ServiceProcess, service_env
from tests.servers import wait_for
from tests.tiny_model import TINY_MODEL_CONFIG

TRAIN_TIMEOUT = 300


def start_distributed(
    data_dir: Path, redis_url: str, postgres_url: str, processes: list
) -> tuple[dict[str, str], ServiceProcess, Api]:
    """A `ganaug worker` and a `ganaug serve` on Redis + PostgreSQL with their own queue."""
    env = service_env(
        data_dir,
        GANAUG_BROKER_URL=redis_url,
        GANAUG_DATABASE_URL=postgres_url,
        GANAUG_QUEUE=f"test-{uuid.uuid4().hex[:8]}",
    )
    worker = ServiceProcess(["worker"], env, data_dir.parent / "worker.log").start()
    processes.append(worker)
    api = Api(env, data_dir.parent / "api.log").start()
    processes.append(api)
    return env, worker, api


def check_trained_model(client, model_id: str, data_dir: Path, steps: int) -> dict:
    model = wait_for_model(client, model_id, {"succeeded"}, TRAIN_TIMEOUT)
    progress = model["progress"]
    assert progress["step"] == progress["total_steps"] == steps
    assert progress["fraction"] == 1.0 and progress["losses"]
    assert model["started_at"] and model["finished_at"] and model["error"] is None
    files = {p.name for p in (data_dir / "models" / model_id).iterdir()}
    assert {"generator.onnx", "manifest.json", "checkpoint.pt", "samples.png"} <= files
    manifest = json.loads((data_dir / "models" / model_id / "manifest.json").read_text())
    assert manifest["classes"] == ["circle", "square", "triangle"]
    # the test machines train on their CPU (GPU runs: tests/training/test_cuda.py)
    assert model["device"] == manifest["device"] == {"type": "cpu", "name": None}
    return model


def check_eta_covers_the_report(client, model_id: str) -> None:
    """Followed until its report is done, the model's ETA counts the training left plus the
    report while training runs, and the report's own time left while it runs."""
    training, reporting = [], []
    deadline = time.monotonic() + TRAIN_TIMEOUT
    while time.monotonic() < deadline:
        model = client.get(f"/v1/models/{model_id}").json()
        if model["status"] == "running" and model["progress"]["eta_seconds"] is not None:
            training.append(model)
        if model["report"]["status"] == "running":
            reporting.append(model)
        if model["report"]["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.1)
    assert training and reporting, "never saw the training or the report running"
    for seen in training:
        report = seen["report"]
        assert report["status"] == "pending" and report["eta_seconds"] > 0
        assert seen["device"] == {"type": "cpu", "name": None}  # shown while it trains
        assert seen["eta_seconds"] == pytest.approx(
            seen["progress"]["eta_seconds"] + report["eta_seconds"], abs=0.2
        )
    assert all(seen["eta_seconds"] is not None for seen in reporting)
    assert all(seen["eta_seconds"] == seen["report"]["eta_seconds"] for seen in reporting)


def test_distributed_end_to_end(tmp_path, redis_url, postgres_url, processes):
    data_dir = tmp_path / "shared-data"
    env, _worker, api = start_distributed(data_dir, redis_url, postgres_url, processes)
    with api.client() as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
        created = upload_and_train(client, TINY_TRAINING)
        model_id = created["model"]["id"]
        check_trained_model(client, model_id, data_dir, TINY_TRAINING["steps"])
        params = {"class": "square", "n": 4, "format": "npz", "seed": 11, "truncation": 0.8}
        before = client.get(f"/v1/models/{model_id}/samples", params=params).content

    api.stop()  # metadata lives in PostgreSQL and files on the shared directory
    restarted = Api(env, tmp_path / "api2.log").start()
    processes.append(restarted)
    with restarted.client() as client:
        after = client.get(f"/v1/models/{model_id}/samples", params=params)
        assert after.status_code == 200 and after.content == before
        check_samples(client, model_id)
        check_sampling_errors(client, model_id)
        check_archive(client, model_id)
        check_onnx(client, model_id)
        listed = client.get("/v1/models", params={"dataset_id": created["id"]}).json()
        assert listed["count"] == 1 and listed["data"][0]["id"] == model_id

    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            "SELECT status, tenant_id FROM models WHERE id = %s", (model_id,)
        ).fetchone()
    assert row == ("succeeded", "default")


@pytest.mark.slow
def test_cancel_stops_training_within_seconds(tmp_path, redis_url, postgres_url, processes):
    _env, _worker, api = start_distributed(tmp_path / "data", redis_url, postgres_url, processes)
    with api.client() as client:
        created = upload_and_train(client, {**TINY_TRAINING, "steps": 100_000})
        model_id = created["model"]["id"]
        running = wait_for_model(client, model_id, {"running"}, TRAIN_TIMEOUT)
        assert running["status"] == "running"
        asked = time.monotonic()
        response = client.post(f"/v1/models/{model_id}/cancel")
        assert response.status_code == 202
        cancelled = wait_for_model(client, model_id, {"cancelled"}, 15)
        assert time.monotonic() - asked < 15
        assert cancelled["progress"]["step"] < 100_000 and cancelled["finished_at"]
        assert client.get(f"/v1/models/{model_id}/samples").status_code == 409


def test_embedded_end_to_end(tmp_path, processes):
    """`ganaug serve` alone: SQLite, filesystem broker and its own worker process; the
    tiny model's settings, so the report's filters have images to keep and to reject."""
    data_dir = tmp_path / "data"
    api = Api(service_env(data_dir), tmp_path / "serve.log").start()
    processes.append(api)
    with api.client() as client:
        assert client.get("/readyz").status_code == 200
        created = upload_and_train(client, TINY_MODEL_CONFIG)
        model_id = created["model"]["id"]
        check_eta_covers_the_report(client, model_id)
        check_trained_model(client, model_id, data_dir, TINY_MODEL_CONFIG["steps"])
        check_samples(client, model_id)
        check_archive(client, model_id, per_class=3)
        check_onnx(client, model_id)

        wait_for_report(client, model_id, TRAIN_TIMEOUT)
        check_report(client, model_id)
        model_dir = data_dir / "models" / model_id
        manifest = json.loads((model_dir / "manifest.json").read_text())
        evaluation = manifest["evaluation"]
        assert evaluation["t_star"] in [p["truncation"] for p in evaluation["truncation_sweep"]]
        check_auto_truncation(client, model_id, evaluation["t_star"])
        check_filters(client, model_id, EvaluatorScorer(model_dir))
        check_recommended_archive(client, model_id, evaluation["recipe"])
        (model_dir / MANIFOLD_FILE).unlink()  # as a report from before filter=manifold left it
        outdated = client.get(f"/v1/models/{model_id}/samples", params={"filter": "manifold"})
        assert outdated.status_code == 409
        assert outdated.json()["error"]["code"] == "report_outdated"
        assert "POST /v1/models/{id}/report" in outdated.json()["error"]["message"]
        again = client.post(f"/v1/models/{model_id}/report")
        assert again.status_code == 202 and again.json()["report"]["status"] == "queued"
        busy = client.post(f"/v1/models/{model_id}/report")
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "report_in_progress"
        assert (data_dir / "ganaug.db").exists()
        check_one_seeding_rule(client, model_id)


def test_report_not_ready_before_training(tmp_path, processes):
    """Without a worker nothing trains: the report and truncation=auto answer 409."""
    api = Api(service_env(tmp_path / "data"), tmp_path / "serve.log", ["--no-worker"]).start()
    processes.append(api)
    with api.client() as client:
        created = upload_and_train(client, {**TINY_TRAINING, "report": "fast"})
        model_id = created["model"]["id"]
        assert created["model"]["report"]["status"] == "pending"  # it follows training
        report = client.get(f"/v1/models/{model_id}/report")
        assert report.status_code == 409 and report.json()["error"]["code"] == "report_not_ready"
        compute = client.post(f"/v1/models/{model_id}/report")
        assert compute.status_code == 409 and compute.json()["error"]["code"] == "model_not_ready"


def test_deleting_a_model_stops_its_report_quietly(tmp_path, processes):
    """A running report keeps its dataset (409); deleting its model stops it without an error."""
    api = Api(service_env(tmp_path / "data"), tmp_path / "serve.log").start()
    processes.append(api)
    with api.client() as client:
        created = upload_and_train(client, {**TINY_TRAINING, "report": "standard"})
        dataset_id, model_id = created["id"], created["model"]["id"]
        deadline = time.monotonic() + TRAIN_TIMEOUT
        while (model := client.get(f"/v1/models/{model_id}").json())["report"]["status"] in (
            "pending",
            "queued",
        ):
            assert model["status"] != "failed" and time.monotonic() < deadline
            time.sleep(0.2)
        assert model["report"]["status"] == "running"  # the standard budget runs for minutes
        in_use = client.delete(f"/v1/datasets/{dataset_id}")
        assert in_use.status_code == 409, in_use.text
        assert in_use.json()["error"]["code"] == "dataset_in_use"
        assert "report" in in_use.json()["error"]["message"]
        assert client.delete(f"/v1/models/{model_id}").status_code == 204
        ended = f"report of model {model_id} "  # ... stopped: ..., or ... failed
        wait_for(lambda: ended in api.log_path.read_text(), 120, "the report to end")
        assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    log = api.log_path.read_text()
    assert f"report of model {model_id} stopped: the model was deleted" in log
    assert "Traceback" not in log and f"report of model {model_id} failed" not in log


@pytest.fixture(autouse=True)
def _show_logs_on_failure(request, processes):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for process in processes:
            print(f"--- {process.args[0]} log ---\n{process.log()}")


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.slow
def test_training_process_lost_is_requeued(tmp_path, redis_url, postgres_url, processes):
    """The pool process that trains is killed (as the OOM killer would): the job reruns."""
    _env, worker, api = start_distributed(tmp_path / "data", redis_url, postgres_url, processes)
    with api.client() as client:
        created = upload_and_train(client, {**TINY_TRAINING, "steps": 150})
        model_id = created["model"]["id"]
        deadline = time.monotonic() + TRAIN_TIMEOUT
        while (model := client.get(f"/v1/models/{model_id}").json())["progress"]["step"] < 10:
            assert model["status"] in ("queued", "running") and time.monotonic() < deadline
            time.sleep(0.2)
        assert model["progress"]["eta_seconds"] is not None
        first_start = model["started_at"]
        (training_pid,) = _children(worker.proc.pid)  # prefork pool of one
        os.kill(training_pid, signal.SIGKILL)
        finished = wait_for_model(client, model_id, {"succeeded"}, TRAIN_TIMEOUT)
        assert finished["started_at"] > first_start, "the job ran again after the loss"
        assert finished["progress"]["step"] == 150


def _processes_using(data_dir: Path) -> list[int]:
    """Pids of live processes whose environment points at data_dir (read-only scan)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"GANAUG_DATA_DIR={data_dir}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
def test_embedded_restart_mid_training_reruns_the_job(tmp_path, processes):
    """Stopping `ganaug serve` stops its worker too; the next start finishes the job."""
    data_dir = tmp_path / "data"
    env = service_env(data_dir)
    first = Api(env, tmp_path / "serve1.log").start()
    processes.append(first)
    with first.client() as client:
        created = upload_and_train(client, {**TINY_TRAINING, "steps": 200})
        model_id = created["model"]["id"]
        deadline = time.monotonic() + TRAIN_TIMEOUT
        while client.get(f"/v1/models/{model_id}").json()["progress"]["step"] < 5:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    first.stop()
    assert _processes_using(data_dir) == [], "serve left worker processes behind"

    second = Api(env, tmp_path / "serve2.log").start()
    processes.append(second)
    with second.client() as client:
        finished = wait_for_model(client, model_id, {"succeeded"}, TRAIN_TIMEOUT)
        assert finished["progress"]["step"] == 200

"""Scale-out: 1 and 2 Celery workers on one Redis draining a queue of N small training jobs.

    .venv/bin/python -m benchmarks.scale_out [--jobs 8] [--workers 1 2] [--rounds 2]

Private redis-server and PostgreSQL servers, as the test fixtures start them
(tests/servers.py), a `ganaug serve` API and `ganaug worker` processes (one training
process each, OMP_NUM_THREADS=1). Each round runs every worker count in turn on a fresh
queue and database: the API gets N jobs at once, all on one 16x16 shapes dataset with the
tests' tiny options (30 steps unless --steps, report none); the workers drain them.

jobs/hour = N / (last job's finished_at - first job's started_at): worker start-up is left
out (every worker is ready before the first job is queued). On a CPU machine the workers
share its cores; N GPU workers, one GPU each, are docs/training.md's "Several workers".
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from tests.conftest import TINY_TRAINING, Api, ServiceProcess, service_env
from tests.factories import shapes_zip_bytes
from tests.servers import fresh_database, start_postgres, start_redis, stop_process, wait_for

TIMEOUT_S = 900


def load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


@dataclass
class Drain:
    jobs_per_hour: float
    seconds: float  # from the first job's start to the last one's finish
    job_seconds: float  # mean of each job's own start-to-finish
    train_seconds: float  # mean of its training steps alone (progress.elapsed_seconds)
    per_worker: list[int]  # jobs each worker finished (from its log)


def drain(
    workers: int, jobs: int, options: dict, redis_url: str, database_url: str, work: Path
) -> Drain:
    """N = `jobs` jobs with training `options`, queued at once, drained by `workers`."""
    env = service_env(
        work / "data",
        GANAUG_BROKER_URL=redis_url,
        GANAUG_DATABASE_URL=database_url,
        GANAUG_QUEUE=f"scale-{uuid.uuid4().hex[:8]}",
    )
    work.mkdir(parents=True)
    started: list[ServiceProcess] = []
    try:
        api = Api(env, work / "api.log").start()  # migrates the database first
        started.append(api)
        started += [
            ServiceProcess(["worker"], env, work / f"worker{i}.log").start() for i in range(workers)
        ]
        for process in started[1:]:
            wait_for(lambda p=process: " ready." in p.log(), 120, "a worker")
        with api.client() as client:
            dataset_id = upload(client)
            ids = [
                client.post("/v1/models", json={"dataset_id": dataset_id, **options}).json()["id"]
                for _ in range(jobs)
            ]
            models = [wait_succeeded(client, model_id) for model_id in ids]
    finally:
        for process in reversed(started):
            process.stop()
    spans = [
        (datetime.fromisoformat(m["started_at"]), datetime.fromisoformat(m["finished_at"]))
        for m in models
    ]
    seconds = (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds()
    job_seconds = statistics.mean((end - start).total_seconds() for start, end in spans)
    per_worker = [
        process.log_path.read_text(errors="replace").count(" succeeded in ")
        for process in started[1:]
    ]
    train_seconds = statistics.mean(m["progress"]["elapsed_seconds"] for m in models)
    return Drain(jobs / seconds * 3600, seconds, job_seconds, train_seconds, per_worker)


def upload(client: httpx.Client) -> str:
    files = {"file": ("shapes.zip", shapes_zip_bytes(per_class=30, size=16), "application/zip")}
    response = client.post("/v1/datasets", files=files, data={"name": "shapes"})
    response.raise_for_status()
    return response.json()["id"]


def wait_succeeded(client: httpx.Client, model_id: str) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    while (model := client.get(f"/v1/models/{model_id}").json())["status"] != "succeeded":
        if model["status"] in ("failed", "cancelled") or time.monotonic() > deadline:
            raise RuntimeError(f"model {model_id} ended as {model['status']}: {model}")
        time.sleep(0.5)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=8, help="jobs queued per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=TINY_TRAINING["steps"], help="per job")
    args = parser.parse_args()
    options = TINY_TRAINING | {"steps": args.steps}
    print(f"{args.jobs} jobs per measurement, {options}, {os.cpu_count()} CPUs", flush=True)
    rates: dict[int, list[float]] = {n: [] for n in args.workers}
    with tempfile.TemporaryDirectory(prefix="ganaug-scale-") as tmp:
        redis_url, redis_proc = start_redis(Path(tmp))
        pg_url, stop_pg = start_postgres()
        try:
            for round_ in range(args.rounds):
                order = args.workers if round_ % 2 == 0 else list(reversed(args.workers))
                for workers in order:
                    work = Path(tmp) / f"r{round_}-w{workers}"
                    with fresh_database(pg_url) as database_url:
                        result = drain(workers, args.jobs, options, redis_url, database_url, work)
                    rates[workers].append(result.jobs_per_hour)
                    print(
                        f"round {round_}  {workers} worker(s)  {result.jobs_per_hour:7.0f} jobs/h"
                        f"  ({args.jobs} jobs in {result.seconds:.1f} s, {result.job_seconds:.1f}"
                        f" s each, {result.train_seconds:.1f} s of it training, per worker"
                        f" {result.per_worker})  {load()}",
                        flush=True,
                    )
        finally:
            stop_pg()
            stop_process(redis_proc)
    base = statistics.median(rates[args.workers[0]])
    for workers, values in rates.items():
        median = statistics.median(values)
        print(f"{workers} worker(s): median {median:.0f} jobs/h, x{median / base:.2f}")


if __name__ == "__main__":
    main()

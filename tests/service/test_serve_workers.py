"""`ganaug serve --workers N` (real processes): both API processes answer, with the samples
one process serves, /metrics totals and rate limits counted across processes, one embedded
worker whose status every process reports, and nothing left running after SIGTERM."""

from __future__ import annotations

import os
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from ganaug.serving import process_threads, rate_limit_warning
from service.app import create_app
from tests.conftest import Api, service_env
from tests.factories import SHAPES
from tests.servers import wait_for
from tests.service.served import upload_trained_model
from tests.service.test_embedded_worker import alive, children

SAMPLE_LIMIT = 30  # GANAUG_RATE_LIMIT_SAMPLES per minute, shared through Redis
REFERENCE = [  # one of each format, compared byte for byte with one process's answer
    {"class": "square", "n": 1, "seed": 5, "format": "png"},
    {"class": 1, "n": 9, "seed": 6, "format": "grid"},
    {"n": 4, "seed": 7, "format": "npz"},
    {"n": 2, "seed": 8, "format": "zip", "truncation": "0.7"},
]
BURST = [{"class": "circle", "n": 1, "seed": seed, "format": "png"} for seed in range(40)]


def images(params: dict) -> int:
    """Images a samples request asks for: n of its class, or n of each class."""
    return params["n"] * (1 if "class" in params else len(SHAPES))


def scrape(base_url: str) -> dict[tuple[str, tuple], float]:
    """/metrics parsed as Prometheus parses it: {(sample name, sorted labels): value}."""
    answer = httpx.get(f"{base_url}/metrics", timeout=30)
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def by_process(metrics: dict[tuple[str, tuple], float]) -> dict[int, float]:
    """Requests answered by each API process, by pid."""
    return {
        int(dict(labels)["pid"]): value
        for (name, labels), value in metrics.items()
        if name == "ganaug_api_process_requests"
    }


def answered_by(base_url: str, requests: list[tuple[str, dict]]) -> tuple[list, dict[int, float]]:
    """Send `requests` (path, params) 8 at a time, each on a new connection (so the kernel
    hands them to either process); returns the answers and how many each process took."""
    before = by_process(scrape(base_url))

    def get(request: tuple[str, dict]) -> httpx.Response:
        path, params = request
        return httpx.get(f"{base_url}{path}", params=params, timeout=60)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(get, requests))
    after = by_process(scrape(base_url))
    return answers, {pid: after[pid] - before.get(pid, 0) for pid in after}


def from_every_process(
    base_url: str,
    request: tuple[str, dict],
    took: dict[int, float] | None = None,
    processes: int = 2,
    rounds: int = 20,
) -> tuple[list, dict[int, float]]:
    """Send `request` in rounds of 16 until `processes` API processes have each answered
    some, counting those that already answered in `took` (the kernel may hand a whole round
    to one process when the machine is loaded); at most `rounds` rounds. Returns the new
    answers and how many each process took in all."""
    answers: list = []
    took = Counter({pid: count for pid, count in (took or {}).items() if count > 0})
    for _ in range(rounds):
        if len(took) >= processes:
            break
        more, counts = answered_by(base_url, [request] * 16)
        answers += more
        took.update({pid: count for pid, count in counts.items() if count > 0})
    return answers, dict(took)


def test_each_process_gets_its_share_of_the_threads_and_a_warning_for_memory_limits(tmp_path):
    cores = os.cpu_count() or 1
    one = Settings(data_dir=tmp_path, serve_workers=1)
    assert process_threads(one) == {"compute_threads": cores, "ort_threads": min(4, cores)}
    shared = Settings(data_dir=tmp_path, serve_workers=2 * cores)
    assert process_threads(shared) == {"compute_threads": 1, "ort_threads": min(4, cores)}
    chosen = Settings(data_dir=tmp_path, serve_workers=4, ort_threads=3, compute_threads=5)
    assert process_threads(chosen) == {"compute_threads": 5, "ort_threads": 3}

    assert rate_limit_warning(one) is None
    warning = rate_limit_warning(Settings(data_dir=tmp_path, serve_workers=3))
    assert warning is not None and "up to 3 times" in warning and "redis://" in warning
    redis = Settings(data_dir=tmp_path, serve_workers=3, rate_limit_storage_url="redis://r:6379")
    assert rate_limit_warning(redis) is None


@pytest.fixture
def trained(tiny_model, tmp_path) -> tuple[Path, str, dict[int, bytes]]:
    """A data directory with a trained model, and the bytes one in-process gateway (the
    `ganaug serve` of one process) answers to REFERENCE and BURST."""
    settings = Settings(data_dir=tmp_path / "data")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        model_id = upload_trained_model(client, settings, tiny_model)
        expected = {}
        for index, params in enumerate(REFERENCE + BURST):
            answer = client.get(f"/v1/models/{model_id}/samples", params=params)
            assert answer.status_code == 200, answer.text
            expected[index] = answer.content
    return settings.data_dir, model_id, expected


def test_two_processes_serve_the_same_bytes_share_limits_and_metrics_and_stop(
    trained, redis_url, tmp_path, processes
):
    data_dir, model_id, expected = trained
    run_tmp = tmp_path / "tmp"  # where the serve makes its run folder
    run_tmp.mkdir()
    limits_url = redis_url.rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(limits_url).flushdb()  # no counts of an earlier run
    env = service_env(
        data_dir,
        GANAUG_RATE_LIMIT_STORAGE_URL=limits_url,
        GANAUG_RATE_LIMIT_SAMPLES=f"{SAMPLE_LIMIT}/minute",
        TMPDIR=str(run_tmp),
    )
    api = Api(env, tmp_path / "serve.log", ["--workers", "2", "--no-worker"]).start()
    processes.append(api)
    assert "rate limits on its own" not in api.log()
    samples = f"/v1/models/{model_id}/samples"

    answers, _ = answered_by(api.base_url, [(samples, params) for params in REFERENCE])
    assert [a.status_code for a in answers] == [200] * len(REFERENCE)
    assert [a.content for a in answers] == [expected[i] for i in range(len(REFERENCE))]

    # The burst goes over the limit: the processes admit SAMPLE_LIMIT in all, not each.
    answers, took = answered_by(api.base_url, [(samples, params) for params in BURST])
    statuses = Counter(a.status_code for a in answers)
    admitted = SAMPLE_LIMIT - len(REFERENCE)
    assert statuses == {200: admitted, 429: len(BURST) - admitted}, statuses
    # Until both processes have answered part of it, more of the burst: all over the limit.
    more, took = from_every_process(api.base_url, (samples, BURST[-1]), took)
    refusals = [(a.status_code, a.json()["error"]["code"]) for a in more]
    assert refusals == [(429, "rate_limited")] * len(more), refusals
    refused = len(BURST) - admitted + len(more)
    assert len(took) == 2, took
    api_pids = set(took)
    assert api_pids <= set(children(api.proc.pid))
    for index, answer in enumerate(answers, start=len(REFERENCE)):
        if answer.status_code == 200:
            assert answer.content == expected[index]
        else:
            assert answer.json()["error"]["code"] == "rate_limited"

    # Whichever process answers the scrape, it reports both processes' counts.
    for _ in range(4):
        metrics = scrape(api.base_url)
        route = (("method", "GET"), ("route", "/v1/models/{model_id}/samples"))
        assert metrics[("ganaug_http_requests_total", (*route, ("status", "200")))] == SAMPLE_LIMIT
        assert metrics[("ganaug_http_requests_total", (*route, ("status", "429")))] == refused
        served = metrics[("ganaug_samples_generated_total", (("route", "samples"),))]
        assert served == sum(images(params) for params in REFERENCE) + admitted
        all_requests = sum(
            value for (name, _), value in metrics.items() if name == "ganaug_http_requests_total"
        )
        assert sum(by_process(metrics).values()) == all_requests
        assert set(by_process(metrics)) == api_pids

    (run_folder,) = run_tmp.glob("ganaug-serve-*")
    assert list((run_folder / "metrics").glob("*.db")), "no multi-process metric files"
    everything = [api.proc.pid, *children(api.proc.pid)]
    api.proc.send_signal(signal.SIGTERM)
    assert api.proc.wait(timeout=60) == 0, api.log()
    # multiprocessing's resource tracker ends once its pipe closes, just after the serve
    wait_for(lambda: not any(alive(pid) for pid in everything), 10, "every process to end")
    assert not run_folder.exists(), "the run folder outlived the serve"


def test_every_process_reports_the_one_embedded_worker_and_dies_with_the_serve(tmp_path, processes):
    env = service_env(  # TMPDIR: the run folder a kill leaves; a down worker stays down 10 s
        tmp_path / "data", TMPDIR=str(tmp_path), GANAUG_WORKER_RESTART_DELAY_S="10"
    )
    api = Api(env, tmp_path / "serve.log", ["--workers", "2"]).start()
    processes.append(api)

    def workers() -> list[int]:
        return [
            pid
            for pid in children(api.proc.pid)
            if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        ]

    wait_for(lambda: httpx.get(f"{api.base_url}/readyz").status_code == 200, 60, "readyz")
    (worker,) = workers()
    answers, took = from_every_process(api.base_url, ("/readyz", {}))
    assert [a.json()["checks"]["worker"] for a in answers] == ["ok"] * len(answers)
    assert len(took) == 2, took

    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: httpx.get(f"{api.base_url}/readyz").status_code == 503, 5, "readyz down")
    answers, took = from_every_process(api.base_url, ("/readyz", {}))
    messages = [a.json()["error"]["message"] for a in answers]
    assert all("worker down" in m and "signal SIGKILL" in m for m in messages), messages
    assert len(took) == 2, took
    wait_for(lambda: httpx.get(f"{api.base_url}/readyz").status_code == 200, 60, "restart")
    (restarted,) = workers()
    assert restarted != worker

    everything = [api.proc.pid, *children(api.proc.pid)]
    os.kill(api.proc.pid, signal.SIGKILL)  # no chance to stop anything itself
    api.proc.wait()
    wait_for(lambda: not any(alive(p) for p in everything), 15, "its processes to follow")

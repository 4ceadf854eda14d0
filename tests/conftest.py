"""Shared fixtures: real Redis and PostgreSQL servers, API and worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from tests.servers import (
    free_port,
    fresh_database,
    start_postgres,
    start_redis,
    stop_process,
    wait_for,
)

REPO = Path(__file__).resolve().parent.parent

# Small networks and few steps: a real training run that finishes in seconds on 2 cores.
TINY_TRAINING = {
    "steps": 30,
    "batch_size": 16,
    "g_channels": 16,
    "d_channels": 16,
    "z_dim": 16,
    "report": "none",
}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A tiny GAN trained on shapes with its fast quality report, built once per session.

    Tests must not change its files: copy `model_dir` first.
    """
    import torch

    from tests.tiny_model import build_tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and fastest for tiny networks on shared cores
    try:
        return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny networks gain nothing from threads, and on shared cores they oversubscribe: a
    module marked `usefixtures("one_torch_thread")` runs torch on one thread."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("GANAUG_TEST_REDIS_URL"):
        yield url
        return
    url, proc = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    if url := os.environ.get("GANAUG_TEST_DATABASE_URL"):
        yield url
        return
    url, stop = start_postgres()
    yield url
    stop()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    with fresh_database(postgres_server) as url:
        yield url


def service_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of an API or worker process of ours (GANAUG_* only from here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GANAUG_")}
    env.update(
        {
            "GANAUG_DATA_DIR": str(data_dir),
            "GANAUG_PROGRESS_INTERVAL_S": "0.2",
            "GANAUG_CANCEL_POLL_S": "0.2",
            # a lost worker's job is requeued within seconds, not a minute
            "GANAUG_LEASE_S": "6",
            "GANAUG_LEASE_HEARTBEAT_S": "1",
            "GANAUG_LEASE_SWEEP_S": "1",
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
        }
    )
    env.update(overrides)
    return env


class ServiceProcess:
    """A `ganaug` subcommand running in the background, logging to a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log_path = args, env, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ganaug.cli", *self.args],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=45)  # serve gives its worker 2 x 10 s to stop

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


class Api(ServiceProcess):
    def __init__(self, env: dict[str, str], log: Path, extra: list[str] | None = None) -> None:
        self.port = free_port()
        super().__init__(["serve", "--port", str(self.port), *(extra or [])], env, log)
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self) -> Api:
        super().start()

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"API exited:\n{self.log()}")
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200

        try:
            wait_for(up, 60, "API")
        except (TimeoutError, RuntimeError) as exc:
            raise AssertionError(f"{exc}\n{self.log()}") from exc
        return self

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=60)


@pytest.fixture
def processes() -> Iterator[list[ServiceProcess]]:
    """Register started processes here; they are stopped (by pid) at teardown."""
    started: list[ServiceProcess] = []
    yield started
    for process in reversed(started):
        process.stop()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Expose each phase's report on the test item (rep_call), for log dumps on failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report

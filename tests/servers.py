"""Throw-away Redis and PostgreSQL servers for tests, and process helpers.

Like pytest-redis / pytest-postgresql: a URL from the environment wins
(GANAUG_TEST_REDIS_URL, GANAUG_TEST_DATABASE_URL); else a private server is started from
the `redis-server` / `initdb` + `pg_ctl` binaries on a free port; else the test fails with
what to install. Only processes started here are stopped, by pid.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate a process we started, by pid; kill it if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        pytest.fail(
            f"'{name}' not found: install {package} (e.g. apt-get install {package}) "
            "or point the tests at a server: GANAUG_TEST_REDIS_URL / GANAUG_TEST_DATABASE_URL"
        )
    return found


def start_redis(
    folder: Path, *, port: int | None = None, appendonly: bool = False
) -> tuple[str, subprocess.Popen]:
    """A private redis-server; `appendonly` keeps its queue across a restart on the same
    folder and port, as docker-compose.yml's redis does."""
    exe = _binary("redis-server", "redis-server")
    port = port or free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if appendonly else "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    wait_for(lambda: redis.Redis(port=port).ping(), 20, "redis-server")
    return f"redis://127.0.0.1:{port}/0", proc


def _as_postgres_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PostgresServer:
    """A private PostgreSQL cluster (initdb + pg_ctl) that can be stopped and started again."""

    def __init__(self) -> None:
        initdb, self.pg_ctl = _binary("initdb", "postgresql"), _binary("pg_ctl", "postgresql")
        # Not under pytest's 0700 temp root: the postgres user must reach it when we are root.
        self.folder = Path(tempfile.mkdtemp(prefix="ganaug-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres")
        self.data, self.port = self.folder / "data", free_port()
        subprocess.run(
            _as_postgres_user(
                [initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "log")
        subprocess.run(
            _as_postgres_user(
                [self.pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "start"]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return self

    def stop(self, mode: str = "immediate") -> None:
        subprocess.run(
            _as_postgres_user([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"]),
            check=False,
            stdout=subprocess.DEVNULL,
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> tuple[str, Callable[[], None]]:
    server = PostgresServer().start()
    return server.url, server.remove


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on a PostgreSQL test server, dropped after the block."""
    import psycopg

    name = f"ganaug_test_{uuid.uuid4().hex[:12]}"
    admin = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class LiveServer:
    """uvicorn serving `app` on a free loopback port from a thread; stopped on exit."""

    def __init__(self, app) -> None:
        import uvicorn

        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, 30, "uvicorn")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

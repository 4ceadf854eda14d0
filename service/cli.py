"""The `ganaug` command: serve the API, run a training worker, migrate the database."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Annotated

import typer

from service.settings import get_settings

app = typer.Typer(
    help="ganaug: class-conditional GAN data augmentation service.", no_args_is_help=True
)
log = logging.getLogger("ganaug.cli")


@app.command()
def migrate() -> None:
    """Apply the database migrations (idempotent)."""
    from service.db.migrate import upgrade_database

    upgrade_database(get_settings().sqlalchemy_url)
    typer.echo("database is at the newest schema")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (GANAUG_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (GANAUG_PORT)")] = None,
    worker: Annotated[
        bool | None,
        typer.Option(
            "--worker/--no-worker", help="start a worker process; default: in embedded mode"
        ),
    ] = None,
) -> None:
    """Serve the REST API; in embedded mode also start a training worker process."""
    import uvicorn

    from service.db.migrate import upgrade_database
    from workers.celery_app import prepare_embedded_broker

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare_embedded_broker(settings)
    upgrade_database(settings.sqlalchemy_url)
    start_worker = settings.embedded if worker is None else worker
    child = (
        subprocess.Popen([sys.executable, "-m", "service.cli", "worker"]) if start_worker else None
    )
    try:
        uvicorn.run(
            "service.app:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            log_level="info",
        )
    finally:
        if child is not None:
            _stop(child)


def _stop(child: subprocess.Popen) -> None:
    """Stop the worker we started (by pid): warm shutdown first, then kill."""
    child.terminate()
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@app.command("worker")
def run_worker(
    concurrency: Annotated[
        int | None, typer.Option(help="parallel training jobs (GANAUG_WORKER_CONCURRENCY)")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
) -> None:
    """Run a Celery worker that trains models (on CUDA when available)."""
    from service.db.migrate import upgrade_database
    from workers.celery_app import app as celery_app
    from workers.celery_app import prepare_embedded_broker

    settings = get_settings()
    prepare_embedded_broker(settings)
    upgrade_database(settings.sqlalchemy_url)
    argv = [
        "worker",
        f"--loglevel={loglevel}",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--queues={settings.queue}",
        "--hostname=ganaug@%h",
    ]
    if settings.embedded:  # the filesystem broker has no broadcast: no mingle/gossip/heartbeat
        argv += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    celery_app.worker_main(argv)


if __name__ == "__main__":
    app()

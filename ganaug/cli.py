"""The `ganaug` command: serve the API, run a training worker, migrate the database.

It composes the gateway (`service`) and the workers (`workers`), which import only `core`.
"""

from __future__ import annotations

import logging
import signal
from typing import Annotated

import typer

from core.settings import get_settings
from core.startup import prepare

app = typer.Typer(
    help="ganaug: class-conditional GAN data augmentation service.", no_args_is_help=True
)
log = logging.getLogger("ganaug.cli")


@app.command()
def migrate() -> None:
    """Apply the database migrations (idempotent)."""
    from core.db.migrate import upgrade_database

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
    """Serve the REST API; in embedded mode also run a supervised training worker process."""
    import uvicorn

    from ganaug.embedded import EmbeddedWorker
    from service.app import create_app

    settings = get_settings()
    prepare(settings)
    start_worker = settings.embedded if worker is None else worker
    embedded = None
    if start_worker:
        if settings.embedded:  # our own worker was the only one: its unfinished jobs rerun
            from core.queue import requeue_interrupted

            requeue_interrupted(settings)
        embedded = EmbeddedWorker(settings).start()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it under the previous handler:
    # this one turns it into SystemExit, so the `finally` below stops the worker.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        uvicorn.run(
            create_app(settings, worker_status=embedded.status if embedded else None),
            host=host or settings.host,
            port=port or settings.port,
            log_level="info",
        )
    finally:
        if embedded is not None:
            embedded.stop()


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@app.command("worker")
def run_worker(
    concurrency: Annotated[
        int | None, typer.Option(help="parallel training jobs (GANAUG_WORKER_CONCURRENCY)")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
    parent_pid: Annotated[
        int | None,
        typer.Option(hidden=True, help="exit when this process ends (set by ganaug serve)"),
    ] = None,
) -> None:
    """Run a Celery worker that trains models (on CUDA when available)."""
    from workers.celery_app import app as celery_app

    if parent_pid is not None:
        from workers.lifecycle import die_with_parent

        die_with_parent(parent_pid)
    settings = get_settings()
    prepare(settings)
    logging.getLogger("ganaug").setLevel(loglevel.upper())  # our INFO lines next to Celery's
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

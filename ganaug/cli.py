"""The `ganaug` command: serve the API, run a training worker, migrate the database, manage
API keys, build example datasets; `datasets` and `models` (ganaug.commands) use the API,
and its everyday commands (upload, train, watch, ...) are top-level too.

It composes the gateway (`service`) and the workers (`workers`), which import only `core`.
"""

from __future__ import annotations

import logging
import signal
import warnings
from pathlib import Path
from typing import Annotated

import typer

from core.logs import configure_logging
from core.settings import get_settings
from core.startup import prepare
from ganaug.commands import add_shortcuts, datasets_app, models_app

app = typer.Typer(
    help="ganaug: class-conditional GAN data augmentation service.", no_args_is_help=True
)
log = logging.getLogger("ganaug.cli")
keys_app = typer.Typer(help="API keys: each names its tenant; shown once, stored hashed.")
app.add_typer(keys_app, name="keys")
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
add_shortcuts(app)  # ganaug upload, train, watch, samples, archive, report, classify


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
    workers: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="API processes on the port (GANAUG_SERVE_WORKERS)"),
    ] = None,
) -> None:
    """Serve the REST API; in embedded mode also run a supervised training worker process
    (one, whatever the number of API processes)."""
    import uvicorn

    from ganaug.embedded import EmbeddedWorker
    from ganaug.serving import ServeRun
    from service.access import startup_refusal

    settings = get_settings()
    # The app decides from the address it is bound to whether callers may be anonymous.
    settings = settings.model_copy(
        update={
            "host": host or settings.host,
            "port": port or settings.port,
            "serve_workers": workers or settings.serve_workers,
        }
    )
    configure_logging(settings)
    prepare(settings)
    if refusal := startup_refusal(settings):
        typer.echo(refusal, err=True)
        raise typer.Exit(2)
    start_worker = settings.embedded if worker is None else worker
    run = ServeRun(settings) if settings.serve_workers > 1 else None
    embedded = None
    if start_worker:
        if settings.embedded:  # our own worker was the only one: its unfinished jobs rerun
            from core.queue import requeue_interrupted

            requeue_interrupted(settings)
        embedded = EmbeddedWorker(settings, run.worker_status_file if run else None).start()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it under the previous handler:
    # this one turns it into SystemExit, so the `finally` below stops the worker. (With
    # several processes uvicorn's supervisor takes SIGTERM, stops them and returns.)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": settings.access_log,
        "log_config": None,  # uvicorn's lines go through core.logs like ours
    }
    try:
        if run is None:
            from service.app import create_app  # several processes each build their own

            status = embedded.status if embedded else None
            uvicorn.run(create_app(settings, worker_status=status, prepared=True), **options)
        else:
            run.serve(**options)
    finally:
        if embedded is not None:
            embedded.stop()
        if run is not None:
            run.close()


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


@app.command("worker")
def run_worker(
    concurrency: Annotated[
        int | None, typer.Option(help="parallel training jobs (GANAUG_WORKER_CONCURRENCY)")
    ] = None,
    loglevel: Annotated[
        str | None, typer.Option(help="log level (GANAUG_LOG_LEVEL, default INFO)")
    ] = None,
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
    settings = settings.model_copy(update={"log_level": loglevel or settings.log_level})
    configure_logging(settings)  # workers.celery_app keeps Celery from configuring its own
    prepare(settings)
    # Celery warns at every start when run as root (containers often are); the Dockerfile's
    # user is not root. The warning is a line of noise per start, not something to act on.
    warnings.filterwarnings("ignore", message="You're running the worker with superuser")
    argv = [
        "--quiet",  # no banner: the lines below say what it is connected to
        "worker",
        f"--loglevel={settings.log_level.upper()}",
        f"--concurrency={concurrency or settings.worker_concurrency}",
        f"--queues={settings.queue}",
        "--hostname=ganaug@%h",
    ]
    if settings.embedded:  # the filesystem broker has no broadcast: no mingle/gossip/heartbeat
        argv += ["--without-mingle", "--without-gossip", "--without-heartbeat"]
    celery_app.worker_main(argv)


@app.command()
def example(
    name: Annotated[str, typer.Argument(help="fashion-mnist or digits")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the zip to write")],
    per_class: Annotated[int, typer.Option(help="images of each class")] = 50,
    seed: Annotated[int, typer.Option(help="which images are drawn")] = 0,
) -> None:
    """Build an example dataset zip (class folders of PNGs) to upload, e.g. the README's
    `ganaug example fashion-mnist --per-class 50 --out fashion500.zip`."""
    from ganaug.examples import ExampleUnavailable, build_example

    try:
        counts = build_example(name, out, per_class=per_class, seed=seed)
    except (ExampleUnavailable, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {out}: {sum(counts.values())} images, classes {', '.join(counts)}")


@keys_app.command("create")
def create_key(
    tenant: Annotated[str, typer.Option(help="the tenant the key acts for (created if new)")],
    name: Annotated[str, typer.Option(help="a label, e.g. who holds the key")] = "",
) -> None:
    """Create an API key and print it: it is shown this once and stored only hashed."""
    from core.db import tenants

    with _keys_session() as session:
        try:
            new = tenants.create_key(session, tenant, name)
        except ValueError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(2) from None
        key_id = new.row.id
    typer.echo(f"id:     {key_id}\ntenant: {tenant}\nkey:    {new.secret}")
    typer.echo("Keep the key now: it is not stored and cannot be shown again.", err=True)


@keys_app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option(help="only this tenant's keys")] = None,
) -> None:
    """List API keys (id, tenant, first characters, created, revoked); never the keys."""
    from core.db import tenants

    with _keys_session() as session:
        rows = tenants.list_keys(session, tenant)
        lines = [
            f"{r.id}  {r.tenant_id:<16} {r.prefix}...  {r.created_at:%Y-%m-%d %H:%M}  "
            f"{'revoked ' + f'{r.revoked_at:%Y-%m-%d %H:%M}' if r.revoked_at else 'active':<24}"
            f"{r.name}"
            for r in rows
        ]
    typer.echo("\n".join(lines) if lines else "no API keys")


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="the key's id (ganaug keys list)")]):
    """Revoke an API key: requests with it answer 401 from now on."""
    from core.db import tenants

    with _keys_session() as session:
        row = tenants.revoke_key(session, key_id)
        if row is None:
            typer.echo(f"no API key with id '{key_id}'; see `ganaug keys list`", err=True)
            raise typer.Exit(1)
    typer.echo(f"revoked {key_id} (tenant {row.tenant_id})")


def _keys_session():
    from core.db.migrate import upgrade_database
    from core.db.session import session_scope

    url = get_settings().sqlalchemy_url
    upgrade_database(url)  # keys may be made before the service ever started
    return session_scope(url)


if __name__ == "__main__":
    app()

"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core.queue import make_celery
from core.settings import Settings, get_settings
from core.startup import prepare
from service.access import AccessMiddleware, auth_summary, startup_refusal, trusted_hosts
from service.compute import Compute
from service.docs import install_docs
from service.errors import install_error_handlers
from service.limits import BodySizeLimitMiddleware, RefuseNulMiddleware
from service.openapi import install_openapi, operation_id
from service.ratelimit import RateLimits
from service.routes import datasets, health, models, reports
from service.routes.dashboard import install_dashboard
from service.telemetry import Metrics, MetricsMiddleware, RequestIdMiddleware
from service.telemetry import router as metrics_router
from service.warmup import build_routes, warm_models

log = logging.getLogger("ganaug.api")


def create_app(
    settings: Settings | None = None,
    worker_status: Callable[[], str] | None = None,
    *,
    prepared: bool = False,
) -> FastAPI:
    """Build the gateway for `settings` (default: from the environment); `worker_status`
    says how the embedded worker is ("ok" or what is wrong), counted by /readyz. `prepared`:
    the caller already ran core.startup.prepare (as `ganaug serve` does), so start-up does
    not migrate again."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not prepared:
            prepare(settings)
        if refusal := startup_refusal(settings):
            raise RuntimeError(refusal)
        auth = auth_summary(settings)
        if auth["mode"] == "anonymous":
            log.warning("anonymous mode: %s", auth["warning"])
        else:
            log.info("API keys required; trusted hosts: %s", ", ".join(trusted_hosts(settings)))
        build_routes(app)
        warm_models(settings)
        yield
        app.state.compute.close()

    app = FastAPI(
        title="ganaug",
        version="0.1.0",
        description="Class-conditional GAN data augmentation: upload, train, sample.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        docs_url=None,  # service.docs serves /docs and /redoc from local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.celery = make_celery(settings)
    app.state.worker_status = worker_status
    app.state.rate_limits = RateLimits(settings)
    app.state.compute = Compute(
        settings.compute_threads, settings.batch_wait_ms, settings.batch_max_images
    )
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes, path_prefix="/"
    )
    app.add_middleware(RefuseNulMiddleware)
    # Added last, so it runs first: nothing is read from a request it refuses.
    app.add_middleware(AccessMiddleware, settings=settings)
    # ... except for these two: every answer, refusals too, is counted and has a request id
    app.state.metrics = Metrics(settings)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(RequestIdMiddleware)
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    for router in (health.router, metrics_router, datasets.router, models.router, reports.router):
        app.include_router(router)
    install_dashboard(app)  # the web pages at / and /ui/, outside the schema
    logging.getLogger("ganaug").setLevel(logging.INFO)
    return app

"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from core.queue import make_celery
from core.settings import Settings, get_settings
from core.startup import prepare
from service.errors import install_error_handlers
from service.limits import BodySizeLimitMiddleware, RefuseNulMiddleware
from service.openapi import install_openapi, operation_id
from service.routes import datasets, health, models, reports


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the gateway for `settings` (default: from the environment)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare(settings)
        yield

    app = FastAPI(
        title="ganaug",
        version="0.1.0",
        description="Class-conditional GAN data augmentation: upload, train, sample.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    app.state.celery = make_celery(settings)
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes, path_prefix="/"
    )
    app.add_middleware(RefuseNulMiddleware)
    install_error_handlers(app)
    install_openapi(app)
    for router in (health.router, datasets.router, models.router, reports.router):
        app.include_router(router)
    logging.getLogger("ganaug").setLevel(logging.INFO)
    return app

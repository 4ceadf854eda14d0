"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from service.db.migrate import upgrade_database
from service.errors import install_error_handlers
from service.limits import BodySizeLimitMiddleware
from service.routes import datasets, health, models, reports
from service.settings import Settings, get_settings
from workers.celery_app import make_celery, prepare_embedded_broker


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the gateway for `settings` (default: from the environment)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        prepare_embedded_broker(settings)
        upgrade_database(settings.sqlalchemy_url)
        yield

    app = FastAPI(
        title="ganaug",
        version="0.1.0",
        description="Class-conditional GAN data augmentation: upload, train, sample.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.celery = make_celery(settings)
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes, path_prefix="/"
    )
    install_error_handlers(app)
    for router in (health.router, datasets.router, models.router, reports.router):
        app.include_router(router)
    logging.getLogger("ganaug").setLevel(logging.INFO)
    return app

"""Start-up work done before the server accepts requests, so the first request is not the
one that pays for it (issue 12: the first grid after start took 3-4x a warm one): build the
routes, and open and run the generator sessions of the newest succeeded models (bounded by
settings.warm_models). Nothing here fails start-up."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import select

from core.db.session import session_scope
from core.db.tables import Model
from core.settings import Settings
from models.drawing import CHUNK, DrawSpec
from models.images import encode_png, image_grid
from service import generation

log = logging.getLogger("ganaug.api")


def build_routes(app: FastAPI) -> int:
    """Build every route's dependency tree and validators; returns how many routes.

    FastAPI >= 0.137 includes a router lazily and builds its routes on the first request
    that reaches it: for /v1/models that was 45-115 ms of the first request (pydantic type
    adapters of each route's parameters), the largest part of what the warm-up left
    (benchmarks/results/serving.md). Walking the routes builds them once, as the OpenAPI
    schema does, without its cost.
    """
    try:
        return sum(1 for _ in iter_route_contexts(app.routes))
    except Exception:  # a route that cannot build fails its own requests, not start-up
        log.exception("building the routes at start-up failed")
        return 0


def newest_model_ids(settings: Settings, limit: int) -> list[str]:
    """The ids of the `limit` most recently finished succeeded models, all tenants."""
    with session_scope(settings.sqlalchemy_url) as session:
        query = (
            select(Model.id)
            .where(Model.status == "succeeded")
            .order_by(Model.finished_at.desc())
            .limit(limit)
        )
        ids = list(session.scalars(query))
        for model_id in ids:  # the query each request makes (SQLAlchemy compiles it once)
            session.get(Model, model_id)
        return ids


def warm_models(settings: Settings) -> None:
    """Load each newest model's sampler, run it once (ORT allocates on the first run) and
    encode a grid (the PNG encoder's first use imports and sets up)."""
    if settings.warm_models == 0:
        return
    for model_id in newest_model_ids(settings, settings.warm_models):
        try:
            sampler = generation.load_sampler(
                settings.models_dir / model_id, settings.ort_threads, settings.ort_spinning
            )
            # latents as a request draws them (numpy's first draw sets up), then a block of
            # CHUNK rows, the largest one call gets: ORT sizes its buffers now
            labels, z = generation.sample_latents(sampler.manifest.z_dim, [0], CHUNK, 0, DrawSpec())
            images = sampler.generate(labels, z)
            encode_png(image_grid(images[:64], ncols=16), settings.png_compress_level)
        except Exception:  # a model that cannot load fails its own requests, not start-up
            log.exception("warm-up of model %s failed", model_id)

"""/v1/models: queue training, status, training stats, cancel, samples, archives, the ONNX
generator, classification of uploaded images."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Query, Response, UploadFile
from fastapi.responses import FileResponse, StreamingResponse

from core.db import repo
from core.db.session import session_scope
from core.db.tables import Model
from core.settings import Settings
from models.artifact import GENERATOR_FILE, read_stats
from models.drawing import DrawSpec, FilterExhausted
from models.evaluator import EvaluatorScorer
from models.image_classifier import ImageClassifier
from models.sampler import GeneratorSampler
from service import catalog, classify, draws, generation
from service.deps import (
    CeleryDep,
    ComputeDep,
    PageLimit,
    PageOffset,
    SessionDep,
    SettingsDep,
    TenantDep,
)
from service.errors import ApiError
from service.ratelimit import RateLimitedRoute, rate_limited
from service.schemas import (
    ClassificationsPublic,
    ClassifierHead,
    DatasetPublic,
    LabelDatasetCreate,
    ModelCreate,
    ModelPublic,
    ModelsPublic,
    ModelStatus,
    TrainingStatsPublic,
)
from service.telemetry import SAMPLES_SERVED

T = TypeVar("T")
router = APIRouter(prefix="/v1/models", tags=["models"], route_class=RateLimitedRoute)

DrawQueryDep = Annotated[draws.DrawQuery, Depends(draws.draw_query)]
Seed = Annotated[int | None, Query(ge=0, le=2**63 - 1, description="random when omitted")]
MEDIA = {
    "grid": "image/png",
    "png": "image/png",
    "zip": "application/zip",
    "npz": "application/octet-stream",
}


@router.post("", status_code=202, response_model=ModelPublic)
@rate_limited("training")
def create_model(
    body: ModelCreate,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    tenant: TenantDep,
    celery: CeleryDep,
) -> ModelPublic:
    """Queue a model to train on a dataset with the given training options (all optional;
    see docs/training.md). Answers at once with the queued model; follow it at the URL in
    `Location` (`progress`, with an ETA while it runs).
    """
    dataset = catalog.get_dataset_or_404(session, tenant, body.dataset_id)
    config = catalog.parse_train_config(body.model_dump(exclude={"dataset_id"}))
    model = catalog.queue_model(
        settings, celery, session, tenant_id=tenant, dataset=dataset, config=config
    )
    response.headers["Location"] = f"/v1/models/{model.id}"
    return ModelPublic.from_row(model)


@router.get("", response_model=ModelsPublic)
def list_models(
    session: SessionDep,
    tenant: TenantDep,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
    dataset_id: str | None = None,
    status: ModelStatus | None = None,
) -> ModelsPublic:
    """The caller's models, newest first, a page at a time; filter by dataset or status."""
    rows, count = repo.list_models(
        session, tenant, limit=limit, offset=offset, dataset_id=dataset_id, status=status
    )
    return ModelsPublic(
        data=[ModelPublic.from_row(r) for r in rows], count=count, limit=limit, offset=offset
    )


@router.get("/{model_id}", response_model=ModelPublic)
def get_model(model_id: str, session: SessionDep, tenant: TenantDep) -> ModelPublic:
    """A model: its status, training progress and ETA, classes, options, and the status of
    its quality report.
    """
    return ModelPublic.from_row(catalog.get_model_or_404(session, tenant, model_id))


@router.get("/{model_id}/stats", response_model=TrainingStatsPublic)
def get_training_stats(
    model_id: str,
    settings: SettingsDep,
    session: SessionDep,
    tenant: TenantDep,
    max_points: Annotated[
        int, Query(ge=2, le=10_000, description="at most this many lines, evenly spaced")
    ] = 500,
) -> TrainingStatsPublic:
    """The training run's averaged losses over time (its stats.jsonl), for loss curves:
    at most `max_points` lines from first to last. Empty until training reports its first
    steps; grows while it runs.
    """
    model = catalog.get_model_or_404(session, tenant, model_id)
    return TrainingStatsPublic.from_lines(
        model.id, read_stats(settings.models_dir / model.id), max_points
    )


@router.post("/{model_id}/cancel", status_code=202, response_model=ModelPublic)
def cancel_model(model_id: str, session: SessionDep, tenant: TenantDep) -> ModelPublic:
    """Ask a queued or running model to stop; it ends `cancelled` within a few seconds.
    Refused (409) once the model has ended.
    """
    model = catalog.get_model_or_404(session, tenant, model_id)
    if model.status in repo.FINISHED:
        raise ApiError(409, "model_finished", f"The model already ended ({model.status}).")
    repo.request_cancel(session, model)
    session.commit()
    return ModelPublic.from_row(model)


@router.delete("/{model_id}", status_code=204)
def delete_model(
    model_id: str, settings: SettingsDep, session: SessionDep, tenant: TenantDep
) -> Response:
    """Delete a model that has ended (succeeded, failed or cancelled) with its files."""
    model = catalog.get_model_or_404(session, tenant, model_id)
    catalog.delete_model(settings, session, model)
    return Response(status_code=204)


def _ready_model(
    session: SessionDep, tenant: str, model_id: str, purpose: str = "samples exist"
) -> Model:
    model = catalog.get_model_or_404(session, tenant, model_id)
    if model.status != "succeeded":
        raise ApiError(
            409,
            "model_not_ready",
            f"The model is {model.status}; {purpose} only once it has succeeded.",
        )
    return model


def _class_index(model: Model, value: str) -> int:
    """A class name, else its index in ASCII digits (not "²" or "١"; at most 9 of them, so
    int() never meets a number too long to convert)."""
    names = [c["name"] for c in model.classes]
    if value in names:
        return names.index(value)
    if value.isascii() and value.isdigit() and len(value) <= 9 and int(value) < len(names):
        return int(value)
    found = (
        f" (the clusters it discovered with P(C) >= {model.clusters['min_class_probability']})"
        if model.clusters
        else ""
    )
    raise ApiError(
        422,
        "unknown_class",
        f"Unknown class '{value}'; use a name or index of: {', '.join(names)}{found}.",
    )


def _check_image_count(
    what: str, counts: list[int], cap: int, setting: str, parameter: str
) -> None:
    """422 when a response would hold more than `cap` generated images (all classes)."""
    total = sum(counts)
    if total <= cap:
        return
    raise ApiError(
        422,
        "too_many_images_requested",
        f"The {what} would hold {total:,} generated images ({len(counts)} classes), "
        f"{total - cap:,} over the cap of {cap:,} per response ({setting}); lower {parameter}"
        + (" or ask for one class." if what == "samples" and len(counts) > 1 else "."),
        details={"limit": cap, "requested": total},
    )


@router.get("/{model_id}/samples")
@rate_limited("samples")
async def get_samples(
    model_id: str,
    settings: SettingsDep,
    tenant: TenantDep,
    compute: ComputeDep,
    draw_query: DrawQueryDep,
    class_: Annotated[
        str | None, Query(alias="class", description="name or index; all when omitted")
    ] = None,
    n: Annotated[int, Query(ge=1, description="images (per class when class is omitted)")] = 16,
    seed: Seed = None,
    format: Literal["grid", "png", "zip", "npz"] = "grid",
    scale: Annotated[
        int, Query(ge=1, le=8, description="format=grid: tiles enlarged this many times")
    ] = 1,
    labels: Annotated[
        bool, Query(description="format=grid: each class's name left of its row")
    ] = False,
) -> Response:
    """Synthetic images of one class (`class`) or of every class, `n` each, from a
    succeeded model. `format`: `grid` (one PNG, a row per class; `scale` enlarges its tiles,
    `labels=true` writes the class names at the left), `png` (one image: needs
    `class` and `n=1`), `zip` (PNGs in class folders) or `npz` (`x`, `y`, `classes` and soft
    labels `p`). The same `seed` gives the same images; `truncation`, `filter` and their
    options change how latents are drawn and which images are kept (`auto` and the filters
    need the quality report: 409 before it).
    """
    if format != "grid" and (scale != 1 or labels):
        raise ApiError(
            422, "invalid_format", f"scale and labels draw the grid; drop them for format={format}."
        )
    check = functools.partial(_sample_classes, settings, class_, n, format)
    model, sampler, indices = await compute.run(_ready_sampler, settings, tenant, model_id, check)
    model_dir = settings.models_dir / model.id
    draw = draws.make_draw(sampler.manifest, draw_query, settings.max_truncation)
    seed = seed if seed is not None else random.randrange(2**31)
    if draw.needs_scorer:
        images, classes = await compute.run(_filtered, sampler, model_dir, indices, n, seed, draw)
    else:  # latents from the request's seed; the generator call may be shared (batching)
        classes, latents = generation.sample_latents(sampler.manifest.z_dim, indices, n, seed, draw)
        images = await compute.generate(sampler, classes, latents)
    SAMPLES_SERVED.labels("samples").inc(len(images))
    labeller = (
        await compute.run(generation.load_soft_labeller, model_dir) if format == "npz" else None
    )
    parts = generation.render(
        images,
        classes,
        sampler.manifest.classes,
        format,
        n,
        labeller,
        settings.png_compress_level,
        scale=scale,
        captions=labels,
    )
    headers = _draw_headers(seed, draw)
    if format in ("zip", "npz"):
        return StreamingResponse(compute.iterate(parts), media_type=MEDIA[format], headers=headers)
    body = await compute.run(b"".join, parts)
    return Response(body, media_type=MEDIA[format], headers=headers)


def _sample_classes(
    settings: Settings, class_: str | None, n: int, format: str, model: Model
) -> list[int]:
    """The class indices a samples request asks for, once its options are checked (422)."""
    if format == "png" and (n != 1 or class_ is None):
        raise ApiError(422, "invalid_format", "format=png returns one image: pass class and n=1.")
    indices = (
        [_class_index(model, class_)] if class_ is not None else list(range(len(model.classes)))
    )
    _check_image_count(
        "samples", [n] * len(indices), settings.max_samples, "GANAUG_MAX_SAMPLES", "n"
    )
    return indices


def _ready_sampler(
    settings: Settings,
    tenant: str,
    model_id: str,
    check: Callable[[Model], T] = lambda model: None,
) -> tuple[Model, GeneratorSampler, T]:
    """The succeeded model's row, its generator's session and what `check` (the request's
    options against the row) returns, checked before the session is opened. Blocking: the
    database, and opening the session the first time."""
    with session_scope(settings.sqlalchemy_url) as session:
        model = _ready_model(session, tenant, model_id)
    checked = check(model)
    sampler = generation.load_sampler(
        settings.models_dir / model.id, settings.ort_threads, settings.ort_spinning
    )
    return model, sampler, checked


def _filtered(
    sampler: GeneratorSampler,
    model_dir: Path,
    indices: list[int],
    n: int,
    seed: int,
    draw: DrawSpec,
) -> tuple[np.ndarray, np.ndarray]:
    """Images kept by the draw's filter (generated and scored a block at a time)."""
    try:
        return generation.generate(sampler, _scorer_for(draw, model_dir), indices, n, seed, draw)
    except FilterExhausted as exc:
        raise ApiError(422, "filter_exhausted", str(exc)) from exc


@router.get("/{model_id}/archive")
@rate_limited("archive")
async def get_archive(
    model_id: str,
    settings: SettingsDep,
    tenant: TenantDep,
    compute: ComputeDep,
    draw_query: DrawQueryDep,
    per_class: Annotated[
        str | None,
        Query(
            pattern=r"^(\d{1,9}|proportional)$",
            description="synthetic images per class (100), or proportional: `total` images "
            "shared by the model's class probabilities (vcagan's P(C); else the real counts)",
        ),
    ] = None,
    total: Annotated[
        # bounded like the other counts: numpy shares it out in int64
        int | None,
        Query(ge=0, le=2**31 - 1, description="per_class=proportional: all synthetic images"),
    ] = None,
    recipe: Annotated[
        Literal["recommended"] | None,
        Query(description="per-class counts, truncation and filter from the quality report"),
    ] = None,
    seed: Seed = None,
    include_real: bool = True,
) -> StreamingResponse:
    """A zip to train a classifier on: each class folder holds its real images (unless
    `include_real=false`) and `per_class` synthetic ones, with labels.csv (soft labels of
    synthetic images) and manifest.json (what was drawn, and whether the archive is
    complete). `recipe=recommended` takes the counts, truncation and filter the quality
    report measured best. Streamed as it is generated.
    """
    model, sampler, _ = await compute.run(_ready_sampler, settings, tenant, model_id)
    model_dir = settings.models_dir / model.id
    if recipe is not None:
        if per_class is not None or total is not None or draw_query != draws.DrawQuery():
            raise ApiError(
                422,
                "recipe_conflict",
                "recipe=recommended sets per_class, truncation and filter; drop those parameters.",
            )
        counts, draw, recipe_used = draws.recommended(
            sampler.manifest, [c["count"] for c in model.classes]
        )
    else:
        counts = draws.per_class_counts(sampler.manifest, model.classes, per_class, total)
        recipe_used = None
        draw = draws.make_draw(sampler.manifest, draw_query, settings.max_truncation)
    _check_image_count(
        "archive", counts, settings.max_archive_images, "GANAUG_MAX_ARCHIVE_IMAGES", "per_class"
    )
    seed = seed if seed is not None else random.randrange(2**31)
    SAMPLES_SERVED.labels("archive").inc(sum(counts))
    request = generation.ArchiveRequest(counts, draw, seed, include_real, recipe_used)
    scorer, labeller = await compute.run(_archive_graphs, draw, model_dir)
    chunks = generation.stream_archive(
        sampler,
        scorer,
        settings.datasets_dir / model.dataset_id,
        model.id,
        request,
        labeller,
        settings.png_compress_level,
    )
    headers = {
        "Content-Disposition": f'attachment; filename="ganaug-{model.id}.zip"',
        **_draw_headers(seed, draw),
    }
    return StreamingResponse(compute.iterate(chunks), media_type="application/zip", headers=headers)


def _archive_graphs(
    draw: DrawSpec, model_dir: Path
) -> tuple[EvaluatorScorer | None, ImageClassifier | None]:
    """The evaluator (filters only) and soft labeller of an archive (blocking: loading)."""
    return _scorer_for(draw, model_dir), generation.load_soft_labeller(model_dir)


def _draw_headers(seed: int, draw: DrawSpec) -> dict[str, str]:
    """The seed and the truncation actually used (truncation=auto resolves to the model's t*)."""
    truncation = "none" if draw.truncation is None else repr(draw.truncation)
    return {"X-Seed": str(seed), "X-Truncation": truncation}


def _scorer_for(draw: DrawSpec, model_dir: Path) -> EvaluatorScorer | None:
    """The report's evaluator when the draw filters, else None (not loaded)."""
    if not draw.needs_scorer:
        return None
    scorer = generation.load_scorer(model_dir)
    if scorer is None:
        raise ApiError(
            409, "report_not_ready", f"filter={draw.filter} needs the report's evaluator."
        )
    if draw.filter == "manifold" and scorer.manifold is None:
        raise ApiError(
            409,
            "report_outdated",
            "filter=manifold needs the real class manifold, which reports made before it "
            "existed did not save; rebuild the report with POST /v1/models/{id}/report.",
        )
    return scorer


@router.get("/{model_id}/generator.onnx")
def get_generator(
    model_id: str, settings: SettingsDep, session: SessionDep, tenant: TenantDep
) -> FileResponse:
    """The model's generator as an ONNX file, for sampling without the service: inputs
    `latent` float32 (B, z_dim) and `class` int64 (B,), output `image` float32 (B, C, H, W).
    """
    model = _ready_model(session, tenant, model_id)
    return FileResponse(
        settings.models_dir / model.id / GENERATOR_FILE,
        media_type="application/octet-stream",
        filename=f"ganaug-{model.id}.onnx",
    )


@router.post(
    "/{model_id}/label-dataset",
    status_code=201,
    response_model=DatasetPublic,
    response_model_exclude_none=True,
)
def label_dataset(
    model_id: str,
    response: Response,
    settings: SettingsDep,
    session: SessionDep,
    tenant: TenantDep,
    body: LabelDatasetCreate | None = None,
) -> DatasetPublic:
    """A new labelled dataset from a vcagan model: each image in the cluster it was assigned."""
    model = _ready_model(session, tenant, model_id, "it can label its dataset")
    name = body.name if body is not None else None
    dataset = catalog.label_dataset(settings, session, tenant_id=tenant, model=model, name=name)
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return DatasetPublic.from_row(dataset)


@router.post("/{model_id}/classify", response_model=ClassificationsPublic)
@rate_limited("classify")
def classify_images(
    model_id: str,
    settings: SettingsDep,
    session: SessionDep,
    tenant: TenantDep,
    file: Annotated[
        UploadFile, File(description="one png/jpg/bmp/webp image, a zip or tar of images, or .npz")
    ],
    head: Annotated[
        ClassifierHead | None,
        Form(
            description="critic (its class head; vcagan: Q) or evaluator (the report's); "
            "default: evaluator when the report exists, else critic (vcagan: critic first)"
        ),
    ] = None,
) -> ClassificationsPublic:
    """Class probabilities of uploaded images (one image, a zip or tar of images, or an
    .npz with `x`), resized to the model's image size, under the critic's class head or the
    quality report's evaluator.
    """
    model = _ready_model(session, tenant, model_id, "it can classify")
    # Starlette has spooled the body to a temporary file already: read it there, not a copy.
    return classify.classify_upload(settings, model, file.file, file.filename or "upload", head)

"""/v1/datasets: upload (optionally start training), list, get, example images, rename
classes, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from core.db import repo
from service import catalog, quotas
from service.deps import CeleryDep, PageLimit, PageOffset, SessionDep, SettingsDep, TenantDep
from service.errors import ApiError
from service.ratelimit import RateLimitedRoute, rate_limited
from service.schemas import DatasetPublic, DatasetsPublic, DatasetUpdate

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=RateLimitedRoute)


@router.post("", status_code=201, response_model=DatasetPublic, response_model_exclude_none=True)
@rate_limited("datasets")
def upload_dataset(
    settings: SettingsDep,
    session: SessionDep,
    tenant: TenantDep,
    celery: CeleryDep,
    file: Annotated[UploadFile, File(description="zip/tar/tar.gz of class folders, or .npz")],
    name: Annotated[str | None, Form(max_length=255)] = None,
    train: Annotated[bool, Form(description="queue a model on this dataset")] = False,
    config: Annotated[str | None, Form(description="JSON object of training options")] = None,
    image_size: Annotated[int | None, Form(description="square training size, 8-128")] = None,
    channels: Annotated[int | None, Form(description="1 or 3; default from the images")] = None,
) -> DatasetPublic:
    """Upload a labelled image dataset: a zip or tar(.gz) with one folder per class, or an
    .npz with uint8 images `x`, int labels `y` and optional `classes`. Images are resized to
    `image_size` and converted to `channels`. Nothing is kept when the file is refused: the
    error's code names the problem (413 over a limit, 415 a format the service cannot read,
    422 anything else to fix). With `train=true` a model is queued too (`config` holds its
    training options as JSON) and returned under `model`.
    """
    train_config = catalog.parse_train_config(config)
    if config and not train:
        raise ApiError(
            422, "invalid_config", "config was given without train=true; add train=true."
        )
    if train:  # answered before the upload is ingested; checked again when queued
        quotas.check_jobs(settings, session, tenant, config=train_config.model_dump())
    # Starlette has spooled the body to a temporary file already: read it there, not a copy.
    dataset = catalog.create_dataset(
        settings,
        session,
        tenant_id=tenant,
        upload=file.file,
        filename=file.filename or "upload",
        name=name,
        image_size=image_size,
        channels=channels,
    )
    model = None
    if train:
        try:
            model = catalog.queue_model(
                settings, celery, session, tenant_id=tenant, dataset=dataset, config=train_config
            )
        except ApiError:
            catalog.delete_dataset(settings, session, dataset)
            raise
    return DatasetPublic.from_row(dataset, model)


@router.get("", response_model=DatasetsPublic, response_model_exclude_none=True)
def list_datasets(
    session: SessionDep,
    tenant: TenantDep,
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> DatasetsPublic:
    """The caller's datasets, newest first, a page at a time."""
    rows, count = repo.list_datasets(session, tenant, limit=limit, offset=offset)
    return DatasetsPublic(
        data=[DatasetPublic.from_row(r) for r in rows], count=count, limit=limit, offset=offset
    )


@router.get("/{dataset_id}", response_model=DatasetPublic, response_model_exclude_none=True)
def get_dataset(dataset_id: str, session: SessionDep, tenant: TenantDep) -> DatasetPublic:
    """A dataset: its classes with their image counts, and the image size models train at."""
    return DatasetPublic.from_row(catalog.get_dataset_or_404(session, tenant, dataset_id))


@router.get("/{dataset_id}/examples.png", response_class=Response)
def get_dataset_examples(
    dataset_id: str,
    settings: SettingsDep,
    session: SessionDep,
    tenant: TenantDep,
    per_class: Annotated[int, Query(ge=1, le=32, description="images per class (a row)")] = 8,
) -> Response:
    """Real images of the dataset as one PNG: the first `per_class` images of each class, a
    row per class in class order (an unlabelled dataset: one row of its first images).
    """
    dataset = catalog.get_dataset_or_404(session, tenant, dataset_id)
    return Response(catalog.example_grid(settings, dataset, per_class), media_type="image/png")


@router.patch("/{dataset_id}", response_model=DatasetPublic, response_model_exclude_none=True)
def update_dataset(
    dataset_id: str,
    body: DatasetUpdate,
    settings: SettingsDep,
    session: SessionDep,
    tenant: TenantDep,
) -> DatasetPublic:
    """Rename classes, e.g. the clusters of a dataset labelled by a vcagan model."""
    dataset = catalog.get_dataset_or_404(session, tenant, dataset_id)
    return DatasetPublic.from_row(catalog.rename_classes(settings, session, dataset, body.classes))


@router.delete("/{dataset_id}", status_code=204)
def delete_dataset(
    dataset_id: str, settings: SettingsDep, session: SessionDep, tenant: TenantDep
) -> Response:
    """Delete a dataset, its files and its finished models. Refused (409) while one of its
    models is queued or training, or one of their reports is being computed.
    """
    dataset = catalog.get_dataset_or_404(session, tenant, dataset_id)
    catalog.delete_dataset(settings, session, dataset)
    return Response(status_code=204)

"""Dataset and model operations that span files, rows and the broker, kept consistent.

Routes call these; a failure anywhere leaves no files and no rows behind.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import unicodedata
from pathlib import Path
from typing import Any, BinaryIO

from celery import Celery
from pydantic import ValidationError
from sqlalchemy.orm import Session

from core.db import repo
from core.db.tables import Dataset, Model
from core.queue import TRAIN_TASK
from core.settings import Settings
from service.errors import ApiError, not_found, upload_refused
from service.ingest import IngestError, IngestLimits, ingest
from training.config import TrainConfig

log = logging.getLogger("ganaug.api")


def ingest_limits(settings: Settings) -> IngestLimits:
    return IngestLimits(
        max_members=settings.max_archive_members,
        max_uncompressed_bytes=settings.max_uncompressed_bytes,
        max_compression_ratio=settings.max_compression_ratio,
        max_image_pixels=settings.max_image_pixels,
        default_size=settings.default_image_size,
    )


def parse_train_config(raw: str | dict[str, Any] | None) -> TrainConfig:
    """Validate training options (a JSON string from a form, or a dict); 422 says what to fix."""
    if raw is None or raw == "":
        data: Any = {}
    elif isinstance(raw, str):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ApiError(422, "invalid_config", f"config is not valid JSON: {exc}") from exc
    else:
        data = raw
    if not isinstance(data, dict):
        raise ApiError(422, "invalid_config", "config must be a JSON object of training options.")
    try:
        config = TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
        )
        raise ApiError(422, "invalid_config", f"Invalid training options: {problems}") from exc
    if config.seed is None:  # recorded, so a model can be reproduced from its stored config
        config = config.model_copy(update={"seed": random.randrange(2**31)})
    return config


def create_dataset(
    settings: Settings,
    session: Session,
    *,
    tenant_id: str,
    upload: BinaryIO,
    filename: str,
    name: str | None,
    image_size: int | None,
    channels: int | None,
) -> Dataset:
    """Ingest an uploaded file (read in place) into the dataset store and commit its row."""
    dataset_id = repo.new_id()
    name = dataset_name(name, filename, dataset_id)
    dest = settings.datasets_dir / dataset_id
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        info = ingest(
            upload,
            filename,
            dest,
            limits=ingest_limits(settings),
            image_size=image_size,
            channels=channels,
        )
    except IngestError as exc:
        raise upload_refused(exc) from exc
    try:
        row = repo.add_dataset(
            session,
            tenant_id=tenant_id,
            dataset_id=dataset_id,
            name=name,
            info=info,
        )
        session.commit()
        return row
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _without_controls(text: str) -> str:
    return "".join(c for c in text if unicodedata.category(c) != "Cc")


def dataset_name(name: str | None, filename: str, dataset_id: str) -> str:
    """The name given, else the upload's file name without its extension; control characters
    (NUL, newlines) are refused in a name given and dropped from a file name."""
    if name and _without_controls(name) != name:
        raise ApiError(
            422,
            "invalid_name",
            f"name holds control characters (such as NUL or a newline): {name!r}; "
            "use printable text.",
        )
    return name or _without_controls(Path(filename).stem) or dataset_id


def delete_dataset(settings: Settings, session: Session, dataset: Dataset) -> None:
    """Delete a dataset with its finished models; refuse while one of them trains or reports."""
    if repo.count_active_models(session, dataset.id):
        raise ApiError(
            409,
            "dataset_in_use",
            "A model of this dataset is queued or training; cancel it first.",
        )
    if repo.count_active_reports(session, dataset.id):
        raise ApiError(
            409,
            "dataset_in_use",
            "A quality report of a model of this dataset is in progress (queued or running); "
            "wait for it to finish, or delete that model first.",
        )
    model_ids = repo.dataset_model_ids(session, dataset.id)
    repo.delete_dataset(session, dataset)
    session.commit()  # rows first: a failed commit must not leave rows without their files
    for model_id in model_ids:
        shutil.rmtree(settings.models_dir / model_id, ignore_errors=True)
    shutil.rmtree(settings.datasets_dir / dataset.id, ignore_errors=True)


def delete_model(settings: Settings, session: Session, model: Model) -> None:
    """Delete a finished model's row and files; refuse while it is queued or training."""
    if model.status in repo.ACTIVE:
        raise ApiError(409, "model_active", "The model is queued or training; cancel it first.")
    repo.delete_model(session, model)
    session.commit()
    shutil.rmtree(settings.models_dir / model.id, ignore_errors=True)


def queue_model(
    celery: Celery, session: Session, *, tenant_id: str, dataset: Dataset, config: TrainConfig
) -> Model:
    """Insert a queued model row (committed, so the worker sees it) and send its task."""
    model = repo.add_model(
        session,
        tenant_id=tenant_id,
        model_id=repo.new_id(),
        dataset=dataset,
        config=config.model_dump(mode="json"),
    )
    session.commit()
    try:
        celery.send_task(TRAIN_TASK, args=[model.id])
    except Exception as exc:
        log.exception("could not queue model %s", model.id)
        repo.delete_model(session, model)
        session.commit()
        raise ApiError(
            503, "broker_unavailable", "The job queue is unreachable; retry later."
        ) from exc
    return model


def get_dataset_or_404(session: Session, tenant_id: str, dataset_id: str) -> Dataset:
    row = repo.get_dataset(session, tenant_id, dataset_id)
    if row is None:
        raise not_found("dataset", dataset_id)
    return row


def get_model_or_404(session: Session, tenant_id: str, model_id: str) -> Model:
    row = repo.get_model(session, tenant_id, model_id)
    if row is None:
        raise not_found("model", model_id)
    return row

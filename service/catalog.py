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

import numpy as np
from celery import Celery
from pydantic import ValidationError
from sqlalchemy.orm import Session

from core.db import repo, tenants
from core.db.tables import Dataset, Model
from core.queue import TRAIN_TASK
from core.settings import Settings
from models.artifact import Manifest
from models.images import encode_png, image_grid
from service import quotas
from service.errors import ApiError, not_found, upload_refused
from service.ingest import IngestError, IngestLimits, ingest
from training.config import UNSUPERVISED_METHODS, TrainConfig
from training.dataset import StoredDataset

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
        message = f"Invalid training options: {config_problems(exc)}"
        raise ApiError(422, "invalid_config", message) from exc
    if config.seed is None:  # recorded, so a model can be reproduced from its stored config
        config = config.model_copy(update={"seed": random.randrange(2**31)})
    return config


def config_problems(exc: ValidationError) -> str:
    """Each invalid training option and what is wrong with it, on one line."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors()
    )


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
    """Ingest an uploaded file (read in place) into the dataset store and commit its row,
    within the tenant's dataset and storage quotas."""
    quotas.check_datasets(settings, session, tenant_id)
    quotas.check_storage(settings, session, tenant_id)
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
        tenants.lock_tenant(session, tenant_id)
        quotas.check_datasets(settings, session, tenant_id)
        quotas.check_storage(settings, session, tenant_id, adding=quotas.folder_bytes(dest))
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
    """Delete a model's row and files; refuse while it is queued or training (a model whose
    worker died, its lease expired, is not training)."""
    if repo.is_active(session, model):
        raise ApiError(409, "model_active", "The model is queued or training; cancel it first.")
    repo.delete_model(session, model)
    session.commit()
    shutil.rmtree(settings.models_dir / model.id, ignore_errors=True)


def queue_model(
    settings: Settings,
    celery: Celery,
    session: Session,
    *,
    tenant_id: str,
    dataset: Dataset,
    config: TrainConfig,
) -> Model:
    """Insert a queued model row (committed, so the worker sees it) and send its task;
    422 unlabelled_dataset when a labelled method is asked to train on an unlabelled set;
    within the tenant's job, training cost and storage quotas."""
    if not dataset.labelled and config.method not in UNSUPERVISED_METHODS:
        raise ApiError(
            422,
            "unlabelled_dataset",
            f"Dataset '{dataset.id}' has no labels, which {config.method} needs; train method "
            "vcagan, which discovers the classes, or upload the images in class folders.",
        )
    tenants.lock_tenant(session, tenant_id)
    quotas.check_storage(settings, session, tenant_id)
    quotas.check_jobs(settings, session, tenant_id, config=config.model_dump())
    model = repo.add_model(
        session,
        tenant_id=tenant_id,
        model_id=repo.new_id(),
        dataset=dataset,
        config=config.model_dump(mode="json"),
    )
    session.commit()  # first, so the worker finds the row its task names
    try:
        send_job(celery, session, TRAIN_TASK, model)
    except ApiError:
        repo.delete_model(session, model)
        session.commit()
        raise
    return model


def send_job(celery: Celery, session: Session, task: str, model: Model) -> None:
    """Send the committed, queued job's task and note that it was sent; 503 when the broker
    is unreachable (the caller undoes the queuing, so nothing waits for a lost message)."""
    try:
        celery.send_task(task, args=[model.id])
    except Exception as exc:
        log.exception("could not send %s for model %s", task, model.id)
        raise ApiError(
            503, "broker_unavailable", "The job queue is unreachable; retry in a minute."
        ) from exc
    repo.mark_dispatched(session, model.id)
    session.commit()


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


def label_dataset(
    settings: Settings, session: Session, *, tenant_id: str, model: Model, name: str | None
) -> Dataset:
    """A new labelled dataset: the model's dataset with each image in the class its vcagan
    classifier assigned it (clusters.npy; clusters without images are left out), within the
    tenant's dataset and storage quotas; 409 for models without discovered classes."""
    model_dir = settings.models_dir / model.id
    manifest = Manifest.load(model_dir)
    if manifest.clusters is None:
        raise ApiError(
            409,
            "no_clusters",
            f"Model '{model.id}' was trained with {manifest.method}, whose classes are the "
            "dataset's own; only a vcagan model labels a dataset with the classes it discovered.",
        )
    source = StoredDataset.load(settings.datasets_dir / model.dataset_id)
    labels = source.labels_of_model(model_dir)
    # clusters no image was assigned to have nothing to learn from: left out
    used = np.flatnonzero(np.bincount(labels, minlength=len(manifest.classes)))
    index = np.full(len(manifest.classes), -1)
    index[used] = np.arange(len(used))
    classes = [manifest.classes[c] for c in used]
    dataset_id = repo.new_id()
    dest = settings.datasets_dir / dataset_id
    tenants.lock_tenant(session, tenant_id)
    quotas.check_datasets(settings, session, tenant_id)
    StoredDataset.save(dest, source.x, index[labels], classes=classes, source_format="model")
    try:
        quotas.check_storage(settings, session, tenant_id, adding=quotas.folder_bytes(dest))
        row = repo.add_dataset(
            session,
            tenant_id=tenant_id,
            dataset_id=dataset_id,
            name=name or f"{model.id}-clusters",
            info=StoredDataset.load(dest).info,
        )
        session.commit()
        return row
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def rename_classes(
    settings: Settings, session: Session, dataset: Dataset, renames: dict[str, str]
) -> Dataset:
    """Rename some of a labelled dataset's classes (old name -> new name), in its files and
    row; 422 for an unlabelled dataset, unknown names or a clash, 409 while it is in use."""
    names = [c["name"] for c in dataset.classes]
    if not dataset.labelled:
        raise ApiError(
            422,
            "unlabelled_dataset",
            f"Dataset '{dataset.id}' has no classes to rename; train vcagan on it and make a "
            "labelled dataset with POST /v1/models/{id}/label-dataset.",
        )
    unknown = sorted(set(renames) - set(names))
    if unknown:
        raise ApiError(
            422,
            "unknown_class",
            f"Unknown classes {unknown}; the dataset's classes are: {', '.join(names)}.",
        )
    new_names = [renames.get(name, name).strip() for name in names]
    if not all(new_names) or len(set(new_names)) != len(new_names):
        raise ApiError(
            422,
            "invalid_class_names",
            f"The classes would be named {new_names}; give every class a distinct, non-empty name.",
        )
    if repo.count_active_models(session, dataset.id) or repo.count_active_reports(
        session, dataset.id
    ):
        raise ApiError(
            409,
            "dataset_in_use",
            "A model of this dataset is training or reporting; rename its classes once it ends.",
        )
    StoredDataset.rename_classes(settings.datasets_dir / dataset.id, new_names)
    repo.rename_classes(session, dataset, new_names)
    session.commit()
    return dataset


def example_grid(settings: Settings, dataset: Dataset, per_class: int) -> bytes:
    """A PNG of a dataset's first `per_class` images of each class, a row per class in class
    order (black where a class has fewer); an unlabelled dataset: one row of its first images."""
    stored = StoredDataset.load(settings.datasets_dir / dataset.id)
    if stored.y is None:
        rows = [np.arange(min(per_class, len(stored)))]
    else:
        rows = [np.flatnonzero(stored.y == c)[:per_class] for c in range(len(stored.classes))]
    tiles = np.zeros((len(rows) * per_class, *stored.image_shape), dtype=np.uint8)
    for r, indices in enumerate(rows):
        tiles[r * per_class : r * per_class + len(indices)] = stored.x[indices]
    return encode_png(image_grid(tiles, ncols=per_class))

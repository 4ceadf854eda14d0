"""Every read and write of datasets and models rows. Callers own the session."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db.tables import Dataset, Model, utcnow

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
# Report statuses: none, pending (training runs, a report follows), queued, running,
# succeeded, failed. While queued or running a worker reads the model's and dataset's files.
REPORT_ACTIVE = ("queued", "running")


def new_id() -> str:
    return uuid.uuid4().hex


# ---------------------------------------------------------------- datasets


def add_dataset(
    session: Session, *, tenant_id: str, dataset_id: str, name: str, info: Any
) -> Dataset:
    """Insert a dataset row from a `training.dataset.DatasetInfo`."""
    row = Dataset(
        id=dataset_id,
        tenant_id=tenant_id,
        name=name,
        num_images=info.num_images,
        classes=[
            {"index": i, "name": n, "count": c}
            for i, (n, c) in enumerate(zip(info.classes, info.counts, strict=True))
        ],
        image={"height": info.height, "width": info.width, "channels": info.channels},
        source_format=info.source_format,
        labelled=info.labelled,
    )
    session.add(row)
    session.flush()
    return row


def get_dataset(session: Session, tenant_id: str, dataset_id: str) -> Dataset | None:
    row = session.get(Dataset, dataset_id)
    return row if row is not None and row.tenant_id == tenant_id else None


def list_datasets(
    session: Session, tenant_id: str, *, limit: int, offset: int
) -> tuple[list[Dataset], int]:
    where = Dataset.tenant_id == tenant_id
    count = session.scalar(select(func.count()).select_from(Dataset).where(where)) or 0
    rows = session.scalars(
        select(Dataset)
        .where(where)
        .order_by(Dataset.created_at.desc(), Dataset.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), count


def dataset_model_ids(session: Session, dataset_id: str) -> list[str]:
    return list(session.scalars(select(Model.id).where(Model.dataset_id == dataset_id)).all())


def count_active_models(session: Session, dataset_id: str) -> int:
    query = (
        select(func.count())
        .select_from(Model)
        .where(Model.dataset_id == dataset_id, Model.status.in_(ACTIVE))
    )
    return session.scalar(query) or 0


def count_active_reports(session: Session, dataset_id: str) -> int:
    query = (
        select(func.count())
        .select_from(Model)
        .where(Model.dataset_id == dataset_id, Model.report_status.in_(REPORT_ACTIVE))
    )
    return session.scalar(query) or 0


def delete_dataset(session: Session, dataset: Dataset) -> None:
    """Delete a dataset row and its (finished) models' rows."""
    for model in session.scalars(select(Model).where(Model.dataset_id == dataset.id)):
        session.delete(model)
    session.flush()
    session.delete(dataset)


# ---------------------------------------------------------------- models


def add_model(
    session: Session, *, tenant_id: str, model_id: str, dataset: Dataset, config: dict[str, Any]
) -> Model:
    """Insert a queued model for `dataset` trained with `config`."""
    row = Model(
        id=model_id,
        tenant_id=tenant_id,
        dataset_id=dataset.id,
        method=config["method"],
        status="queued",
        config=config,
        progress={"step": 0, "total_steps": config["steps"], "losses": {}},
        cancel_requested=False,
        report_status="none" if config["report"] == "none" else "pending",
        classes=dataset.classes,
        image=dataset.image,
    )
    session.add(row)
    session.flush()
    return row


def get_model(session: Session, tenant_id: str, model_id: str) -> Model | None:
    row = session.get(Model, model_id)
    return row if row is not None and row.tenant_id == tenant_id else None


def list_models(
    session: Session,
    tenant_id: str,
    *,
    limit: int,
    offset: int,
    dataset_id: str | None = None,
    status: str | None = None,
) -> tuple[list[Model], int]:
    conditions = [Model.tenant_id == tenant_id]
    if dataset_id is not None:
        conditions.append(Model.dataset_id == dataset_id)
    if status is not None:
        conditions.append(Model.status == status)
    count = session.scalar(select(func.count()).select_from(Model).where(*conditions)) or 0
    rows = session.scalars(
        select(Model)
        .where(*conditions)
        .order_by(Model.created_at.desc(), Model.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), count


def delete_model(session: Session, model: Model) -> None:
    session.delete(model)


def request_cancel(session: Session, model: Model) -> Model:
    """Cancel a queued model at once; ask a running one to stop (the worker finishes it)."""
    if model.status == "queued":
        model.status, model.finished_at, model.report_status = "cancelled", utcnow(), "none"
    model.cancel_requested = True
    session.flush()
    return model


# ---------------------------------------------------------------- worker side


def claim_model(session: Session, model_id: str) -> Model | None:
    """Mark a queued model running; a running one is redelivered work (its worker died)."""
    row = session.get(Model, model_id, with_for_update=True)
    if row is None or row.status in FINISHED:
        return None
    if row.cancel_requested:
        row.status, row.finished_at, row.report_status = "cancelled", utcnow(), "none"
        return None
    row.status = "running"
    row.started_at = utcnow()
    row.error = None
    session.flush()
    return row


def reset_running(session: Session) -> tuple[list[str], list[str]]:
    """Put running trainings and reports back to queued; return their model ids."""
    trainings = list(session.scalars(select(Model).where(Model.status == "running")))
    for row in trainings:
        row.status = "queued"
    reports = list(
        session.scalars(
            select(Model).where(Model.status == "succeeded", Model.report_status == "running")
        )
    )
    for row in reports:
        row.report_status = "queued"
    session.flush()
    return [r.id for r in trainings], [r.id for r in reports]


def record_progress(session: Session, model_id: str, progress: dict[str, Any]) -> None:
    row = session.get(Model, model_id)
    if row is not None:
        row.progress = progress


def cancel_requested(session: Session, model_id: str) -> bool:
    flag = session.scalar(select(Model.cancel_requested).where(Model.id == model_id))
    return bool(flag) if flag is not None else True  # a deleted model stops too


def finish_model(
    session: Session,
    model_id: str,
    *,
    status: str,
    error: str | None = None,
    final_losses: dict[str, float] | None = None,
    report: bool = False,
    discovered: tuple[list[dict[str, Any]], dict[str, Any]] | None = None,
) -> None:
    """Record how training ended; `report` queues the quality report, else there is none.
    `discovered`: a vcagan model's classes ({index, name, count, probability}) and clusters."""
    row = session.get(Model, model_id)
    if row is None:
        return
    row.status = status
    row.error = error
    row.finished_at = utcnow()
    if final_losses is not None:
        row.progress = {**row.progress, "losses": final_losses}
    if discovered is not None:
        row.classes, row.clusters = discovered
    if report:
        queue_report(session, row)
    else:
        row.report_status = "none"


# ---------------------------------------------------------------- quality report


def queue_report(session: Session, model: Model) -> None:
    model.report_status = "queued"
    model.report_progress = {"stage": "queued", "fraction": 0.0}
    model.report_error = None
    session.flush()


def claim_report(session: Session, model_id: str) -> Model | None:
    """Mark a queued (or redelivered running) report running; None when there is nothing to do."""
    row = session.get(Model, model_id, with_for_update=True)
    if row is None or row.status != "succeeded" or row.report_status not in REPORT_ACTIVE:
        return None
    row.report_status = "running"
    session.flush()
    return row


def record_report_progress(session: Session, model_id: str, stage: str, fraction: float) -> None:
    row = session.get(Model, model_id)
    if row is not None:
        row.report_progress = {"stage": stage, "fraction": round(fraction, 4)}


def finish_report(
    session: Session, model_id: str, *, status: str, error: str | None = None
) -> None:
    row = session.get(Model, model_id)
    if row is None:
        return
    row.report_status = status
    row.report_error = error
    if status == "succeeded":
        row.report_progress = {"stage": "done", "fraction": 1.0}


def rename_classes(session: Session, dataset: Dataset, names: list[str]) -> None:
    """Give a dataset's classes new names, in the same order."""
    dataset.classes = [c | {"name": name} for c, name in zip(dataset.classes, names, strict=True)]
    session.flush()


def model_exists(session: Session, model_id: str) -> bool:
    return session.get(Model, model_id) is not None

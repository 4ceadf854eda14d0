"""Every read and write of datasets and models rows. Callers own the session."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from core.db.tables import Dataset, Model, utcnow

Row = TypeVar("Row", Dataset, Model)

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
    return _newest_first(session, Dataset, [Dataset.tenant_id == tenant_id], limit, offset)


def dataset_model_ids(session: Session, dataset_id: str) -> list[str]:
    return list(session.scalars(select(Model.id).where(Model.dataset_id == dataset_id)).all())


def count_active_models(session: Session, dataset_id: str) -> int:
    """Models of the dataset queued or training under a live lease."""
    return _count_active(session, dataset_id, Model.status)


def count_active_reports(session: Session, dataset_id: str) -> int:
    """Reports of the dataset's models queued or running under a live lease."""
    return _count_active(session, dataset_id, Model.report_status)


def _count_active(session: Session, dataset_id: str, status: InstrumentedAttribute[str]) -> int:
    """The dataset's models whose `status` column is queued, or running under a live lease
    (training and the report share the model's lease)."""
    alive = Model.lease_expires_at >= db_now(session)
    query = (
        select(func.count())
        .select_from(Model)
        .where(
            Model.dataset_id == dataset_id,
            or_(status == "queued", and_(status == "running", alive)),
        )
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
    return _newest_first(session, Model, conditions, limit, offset)


def _newest_first(
    session: Session,
    table: type[Row],
    conditions: list[ColumnElement[bool]],
    limit: int,
    offset: int,
) -> tuple[list[Row], int]:
    """One page of the rows that meet `conditions`, newest first (id breaks ties), and how
    many meet them in all."""
    count = session.scalar(select(func.count()).select_from(table).where(*conditions)) or 0
    rows = session.scalars(
        select(table)
        .where(*conditions)
        .order_by(table.created_at.desc(), table.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), count


def delete_model(session: Session, model: Model) -> None:
    session.delete(model)


def is_active(session: Session, model: Model) -> bool:
    """Queued, or running under a live lease (a worker that died holds none)."""
    return model.status == "queued" or (
        model.status == "running" and lease_alive(model, db_now(session))
    )


def request_cancel(session: Session, model: Model) -> Model:
    """Cancel a queued model, or one whose worker died, at once; ask a running one to stop
    (its worker ends it within seconds)."""
    if not is_active(session, model) or model.status == "queued":
        model.status, model.finished_at, model.report_status = "cancelled", utcnow(), "none"
        model.lease_token = model.lease_owner = model.lease_expires_at = None
    model.cancel_requested = True
    session.flush()
    return model


# ---------------------------------------------------------------- leases
#
# A worker runs a model's job (its training, later its report) under a lease: a random token
# written by a compare-and-set UPDATE, renewed by heartbeats until `lease_expires_at`. Every
# write a worker makes names its token, so a worker that lost its lease changes nothing; a
# lease that was not renewed in time puts the job back in the queue (requeue_expired).
# Writes that must be atomic are single UPDATE statements: SQLite has no row locks.

TRAINING, REPORT = "training", "report"


def db_now(session: Session) -> datetime:
    """The database's clock on PostgreSQL (every host agrees on lease times), else ours."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalar(select(func.now()))
    return utcnow()


def _expired(now: datetime) -> ColumnElement[bool]:
    return or_(Model.lease_expires_at.is_(None), Model.lease_expires_at < now)


def lease_alive(model: Model, now: datetime) -> bool:
    return model.lease_expires_at is not None and model.lease_expires_at >= now


def _update(session: Session, *where: Any, **values: Any) -> bool:
    """UPDATE models SET values WHERE where; True when a row matched."""
    result = session.execute(
        update(Model).where(*where).values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def _lease_values(now: datetime, token: str, owner: str, lease_s: float) -> dict[str, Any]:
    return {
        "lease_token": token,
        "lease_owner": owner[:255],
        "lease_expires_at": now + timedelta(seconds=lease_s),
        "attempts": Model.attempts + 1,
    }


_NO_LEASE = {"lease_token": None, "lease_owner": None, "lease_expires_at": None}


def claim_model(session: Session, model_id: str, *, owner: str, lease_s: float) -> Model | None:
    """Lease a queued training (or one whose lease expired: its worker died) and mark it
    running; None when there is nothing to run: finished, gone, cancelled, or held by a live
    lease (a second delivery of a job that runs elsewhere)."""
    now = db_now(session)
    lost = or_(Model.status == "queued", and_(Model.status == "running", _expired(now)))
    if _update(
        session,
        Model.id == model_id,
        lost,
        Model.cancel_requested.is_(True),
        status="cancelled",
        finished_at=now,
        report_status="none",
        **_NO_LEASE,
    ):
        return None
    token = new_id()
    claimed = _update(
        session,
        Model.id == model_id,
        lost,
        status="running",
        started_at=now,
        error=None,
        **_lease_values(now, token, owner, lease_s),
    )
    return _leased_row(session, model_id, token) if claimed else None


def claim_report(session: Session, model_id: str, *, owner: str, lease_s: float) -> Model | None:
    """Lease a queued report (or one whose lease expired) and mark it running; None when
    there is nothing to do or a live lease holds it."""
    now = db_now(session)
    token = new_id()
    claimed = _update(
        session,
        Model.id == model_id,
        Model.status == "succeeded",
        or_(
            Model.report_status == "queued",
            and_(Model.report_status == "running", _expired(now)),
        ),
        report_status="running",
        **_lease_values(now, token, owner, lease_s),
    )
    return _leased_row(session, model_id, token) if claimed else None


def _leased_row(session: Session, model_id: str, token: str) -> Model | None:
    row = session.get(Model, model_id, populate_existing=True)
    return row if row is not None and row.lease_token == token else None


def renew_lease(session: Session, model_id: str, token: str, lease_s: float) -> bool:
    """Extend the lease `token` by lease_s from now; False when it is no longer held."""
    now = db_now(session)
    return _update(
        session,
        Model.id == model_id,
        Model.lease_token == token,
        lease_expires_at=now + timedelta(seconds=lease_s),
    )


def lease_holder(session: Session, model_id: str) -> str:
    """Who holds the model's lease and until when, for logs."""
    row = session.get(Model, model_id, populate_existing=True)
    if row is None:
        return "the model is gone"
    if row.lease_token is None:
        return f"status {row.status}, report {row.report_status}, no lease"
    until = f"{row.lease_expires_at:%H:%M:%S}" if row.lease_expires_at else "now"
    return f"leased by {row.lease_owner} until {until} (attempt {row.attempts})"


def release_lease(session: Session, model_id: str, token: str, kind: str) -> bool:
    """Give an interrupted job back to the queue (its worker is stopping): training resumes
    from its checkpoint, a report starts again; the caller sends its task."""
    status = {"status": "queued"} if kind == TRAINING else {"report_status": "queued"}
    return _update(
        session,
        Model.id == model_id,
        Model.lease_token == token,
        dispatched_at=None,
        **status,
        **_NO_LEASE,
    )


def expire_leases(session: Session) -> None:
    """End every lease now: at an embedded start, the only worker there was is gone."""
    _update_all(session, Model.lease_token.is_not(None), lease_expires_at=None)


def _update_all(session: Session, *where: Any, **values: Any) -> int:
    result = session.execute(
        update(Model).where(*where).values(**values).execution_options(synchronize_session=False)
    )
    return result.rowcount


def requeue_expired(session: Session) -> list[str]:
    """Jobs whose lease expired go back to the queue (training resumes from its checkpoint),
    unless a cancel was asked for: those end cancelled. Returns the requeued model ids."""
    now = db_now(session)
    _update_all(
        session,
        Model.status == "running",
        _expired(now),
        Model.cancel_requested.is_(True),
        status="cancelled",
        finished_at=now,
        report_status="none",
        **_NO_LEASE,
    )
    expired = list(
        session.scalars(
            select(Model.id).where(
                or_(
                    Model.status == "running",
                    and_(Model.status == "succeeded", Model.report_status == "running"),
                ),
                _expired(now),
            )
        )
    )
    requeued = []
    for model_id in expired:  # one compare-and-set each: two sweepers requeue a job once
        if _update(
            session,
            Model.id == model_id,
            Model.status == "running",
            _expired(now),
            status="queued",
            dispatched_at=None,
            **_NO_LEASE,
        ) or _update(
            session,
            Model.id == model_id,
            Model.status == "succeeded",
            Model.report_status == "running",
            _expired(now),
            report_status="queued",
            dispatched_at=None,
            **_NO_LEASE,
        ):
            requeued.append(model_id)
    return requeued


def undispatched(session: Session, older_than_s: float = 0.0) -> list[tuple[str, str]]:
    """(kind, model id) of queued jobs whose message was never handed to the broker, queued
    at least `older_than_s` ago (younger ones are likely being sent right now)."""
    queued_before = utcnow() - timedelta(seconds=older_than_s)  # updated_at is our clock's
    rows = session.execute(
        select(Model.id, Model.status).where(
            Model.dispatched_at.is_(None),
            Model.updated_at <= queued_before,
            or_(
                Model.status == "queued",
                and_(Model.status == "succeeded", Model.report_status == "queued"),
            ),
        )
    ).all()
    return [(TRAINING if status == "queued" else REPORT, model_id) for model_id, status in rows]


def mark_dispatched(session: Session, model_id: str) -> None:
    _update(
        session, Model.id == model_id, Model.dispatched_at.is_(None), dispatched_at=db_now(session)
    )


def record_progress(session: Session, model_id: str, token: str, progress: dict[str, Any]) -> bool:
    return _update(session, Model.id == model_id, Model.lease_token == token, progress=progress)


def cancel_requested(session: Session, model_id: str) -> bool:
    flag = session.scalar(select(Model.cancel_requested).where(Model.id == model_id))
    return bool(flag) if flag is not None else True  # a deleted model stops too


def finish_model(
    session: Session,
    model_id: str,
    token: str,
    *,
    status: str,
    error: str | None = None,
    progress: dict[str, Any] | None = None,
    report: bool = False,
    discovered: tuple[list[dict[str, Any]], dict[str, Any]] | None = None,
) -> bool:
    """Record how training ended and end the lease; `report` queues the quality report,
    else there is none. `discovered`: a vcagan model's classes ({index, name, count,
    probability}) and clusters. False when `token` no longer holds the lease (nothing
    written)."""
    values: dict[str, Any] = {"status": status, "error": error, "finished_at": db_now(session)}
    if progress is not None:
        values["progress"] = progress
    if discovered is not None:
        values["classes"], values["clusters"] = discovered
    values |= _queued_report() if report else {"report_status": "none"}
    return _update(session, Model.id == model_id, Model.lease_token == token, **values, **_NO_LEASE)


# ---------------------------------------------------------------- quality report


def _queued_report() -> dict[str, Any]:
    return {
        "report_status": "queued",
        "report_progress": {"stage": "queued", "fraction": 0.0},
        "report_error": None,
        "dispatched_at": None,
    }


def queue_report(session: Session, model: Model) -> None:
    for key, value in _queued_report().items():
        setattr(model, key, value)
    session.flush()


def record_report_progress(
    session: Session,
    model_id: str,
    token: str,
    stage: str,
    fraction: float,
    *,
    elapsed_s: float | None = None,
    eta_s: float | None = None,
) -> bool:
    progress = {
        "stage": stage,
        "fraction": round(fraction, 4),
        "elapsed_s": None if elapsed_s is None else round(elapsed_s, 1),
        "eta_s": None if eta_s is None else round(eta_s, 1),
        "time": round(time.time(), 3),
    }
    return _update(
        session, Model.id == model_id, Model.lease_token == token, report_progress=progress
    )


def finish_report(
    session: Session, model_id: str, token: str, *, status: str, error: str | None = None
) -> bool:
    values: dict[str, Any] = {"report_status": status, "report_error": error}
    if status == "succeeded":
        values["report_progress"] = {"stage": "done", "fraction": 1.0}
    return _update(session, Model.id == model_id, Model.lease_token == token, **values, **_NO_LEASE)


def rename_classes(session: Session, dataset: Dataset, names: list[str]) -> None:
    """Give a dataset's classes new names, in the same order."""
    dataset.classes = [c | {"name": name} for c, name in zip(dataset.classes, names, strict=True)]
    session.flush()


def model_exists(session: Session, model_id: str) -> bool:
    return session.get(Model, model_id) is not None

"""Every read and write of tenants and API keys rows, and what a tenant uses. Callers own
the session.

A key is `gak_` + 43 URL-safe characters (32 random bytes from `secrets`), shown once when
created. Only its SHA-256 is stored: a key carries 256 bits of entropy, so a fast hash is
as safe as a slow one (nobody can enumerate 2**256 candidates, which is what a slow,
salted hash guards low-entropy passwords against), and it lets each request find its key
by an indexed lookup instead of trying every stored hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.db.tables import ApiKey, Dataset, Model, Tenant, utcnow

KEY_PREFIX = "gak_"
SHOWN_PREFIX = 12  # characters of a key kept to tell keys apart in lists: gak_ + 8
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class NewKey:
    row: ApiKey
    secret: str  # the key itself: shown once, never stored


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def ensure_tenant(session: Session, tenant_id: str) -> Tenant:
    """The tenant `tenant_id`, created if new (its id is its name)."""
    if not TENANT_NAME.fullmatch(tenant_id):
        raise ValueError(
            f"tenant name '{tenant_id}' is not allowed: use 1-64 lower-case letters, digits, "
            "'-' or '_', starting with a letter or digit"
        )
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        tenant = Tenant(id=tenant_id, name=tenant_id)
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, tenant_id: str, name: str = "") -> NewKey:
    """A new random key for `tenant_id` (created if new); the secret is in the result only."""
    ensure_tenant(session, tenant_id)
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        id=uuid.uuid4().hex,
        tenant_id=tenant_id,
        key_hash=hash_key(secret),
        prefix=secret[:SHOWN_PREFIX],
        name=name,
    )
    session.add(row)
    session.flush()
    return NewKey(row, secret)


def find_active_key(session: Session, secret: str) -> ApiKey | None:
    """The unrevoked key `secret` is, or None."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    return row if row is not None and row.revoked_at is None else None


def list_keys(session: Session, tenant_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    return list(session.scalars(query))


def revoke_key(session: Session, key_id: str) -> ApiKey | None:
    """Revoke the key with id `key_id` (idempotent); None when there is no such key."""
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def count_active_keys(session: Session) -> int:
    query = select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
    return session.scalar(query) or 0


def lock_tenant(session: Session, tenant_id: str) -> None:
    """Hold the tenant's row until commit, so concurrent quota checks of one tenant queue up
    (PostgreSQL; SQLite serialises writers anyway)."""
    session.get(Tenant, tenant_id, with_for_update=True)


# ---------------------------------------------------------------- usage


def active_jobs(session: Session, tenant_id: str) -> list[Model]:
    """The tenant's queued or running trainings and quality reports (a model may be both
    counted once as a training and, later, once as a report)."""
    query = select(Model).where(
        Model.tenant_id == tenant_id,
        Model.status.in_(("queued", "running")) | Model.report_status.in_(("queued", "running")),
    )
    return list(session.scalars(query))


def count_datasets(session: Session, tenant_id: str) -> int:
    query = select(func.count()).select_from(Dataset).where(Dataset.tenant_id == tenant_id)
    return session.scalar(query) or 0


def stored_ids(session: Session, tenant_id: str) -> tuple[list[str], list[str]]:
    """The ids of the tenant's datasets and models, whose folders hold what it stores."""
    datasets = session.scalars(select(Dataset.id).where(Dataset.tenant_id == tenant_id))
    models = session.scalars(select(Model.id).where(Model.tenant_id == tenant_id))
    return list(datasets), list(models)

"""Tenants with API keys for in-process API tests, and the uploads they make."""

from __future__ import annotations

import io
import json

import numpy as np
from fastapi.testclient import TestClient

from core.db import tenants
from core.db.migrate import upgrade_database
from core.db.session import session_scope
from core.settings import Settings
from tests.factories import SHAPES, shapes_arrays


def create_keys(settings: Settings, *names: str) -> dict[str, str]:
    """One new API key per tenant name (tenants created as needed): name -> key."""
    upgrade_database(settings.sqlalchemy_url)
    with session_scope(settings.sqlalchemy_url) as session:
        return {name: tenants.create_key(session, name).secret for name in names}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def shapes_npz(per_class: int = 6, size: int = 16) -> bytes:
    x, y = shapes_arrays(per_class=per_class, size=size)
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y, classes=np.asarray(SHAPES))
    return buffer.getvalue()


def upload(
    client: TestClient, key: str | None, *, train: dict | None = None, payload: bytes | None = None
):
    """POST a shapes dataset (as `key`'s tenant; anonymous without), optionally training."""
    data = {"train": "true", "config": json.dumps(train)} if train is not None else {}
    return client.post(
        "/v1/datasets",
        files={"file": ("shapes.npz", payload or shapes_npz())},
        data=data,
        headers=bearer(key) if key else {},
    )

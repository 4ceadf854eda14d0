"""Put a trained model in place as the worker leaves it, for in-process API tests (no worker
runs under TestClient): its files under models/<id>, its rows moved by the repository
functions the worker calls."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from fastapi.testclient import TestClient

from core.db import repo
from core.db.session import session_scope
from core.settings import Settings
from tests.factories import SHAPES


def end_training(
    settings: Settings,
    model_id: str,
    status: str,
    *,
    report: bool = False,
    discovered: tuple[list[dict], dict] | None = None,
) -> None:
    """Lease the model's training and end it as the worker records it (`discovered`: a
    vcagan model's classes and clusters)."""
    with session_scope(settings.sqlalchemy_url) as session:
        row = repo.claim_model(session, model_id, owner="test", lease_s=settings.lease_s)
        assert row is not None and row.lease_token is not None, "the training was not claimable"
        assert repo.finish_model(
            session, model_id, row.lease_token, status=status, report=report, discovered=discovered
        )


def lease_report(settings: Settings, model_id: str) -> str:
    """Lease the model's queued report as a worker would; returns the lease token."""
    with session_scope(settings.sqlalchemy_url) as session:
        row = repo.claim_report(session, model_id, owner="test", lease_s=settings.lease_s)
        assert row is not None and row.lease_token is not None, "the report was not claimable"
        return row.lease_token


def install_trained_model(
    settings: Settings, model_id: str, model_dir: Path, *, report: bool = False
) -> None:
    """Copy model_dir in as model_id's files; training succeeded (and its report, if `report`),
    recorded as the worker records it (a vcagan model's discovered classes too)."""
    from workers.tasks import discovered_classes

    shutil.copytree(model_dir, settings.models_dir / model_id)
    discovered = discovered_classes(settings.models_dir / model_id)
    end_training(settings, model_id, "succeeded", report=report, discovered=discovered)
    if report:
        token = lease_report(settings, model_id)
        with session_scope(settings.sqlalchemy_url) as session:
            assert repo.finish_report(session, model_id, token, status="succeeded")


def shapes_npz(tiny_model: SimpleNamespace) -> bytes:
    """The tiny model's training images as an uploadable npz (x, y, class names)."""
    buffer = io.BytesIO()
    np.savez(buffer, x=tiny_model.x, y=tiny_model.y, classes=np.asarray(SHAPES))
    return buffer.getvalue()


def upload_trained_model(
    client: TestClient,
    settings: Settings,
    tiny_model: SimpleNamespace,
    config: dict | None = None,
    *,
    report: bool = False,
) -> str:
    """Upload the tiny model's images with a training (`config`, default 5 steps) and put
    the tiny trained model in place as its result; returns the model's id."""
    upload = client.post(
        "/v1/datasets",
        files={"file": ("shapes.npz", shapes_npz(tiny_model))},
        data={"train": "true", "config": json.dumps(config or {"steps": 5})},
    )
    assert upload.status_code == 201, upload.text
    model_id = upload.json()["model"]["id"]
    install_trained_model(settings, model_id, tiny_model.model_dir, report=report)
    return model_id

"""Put a trained model in place as the worker leaves it, for in-process API tests (no worker
runs under TestClient): its files under models/<id>, its rows moved by the repository
functions the worker calls."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.db import repo
from core.db.session import session_scope
from core.settings import Settings


def install_trained_model(
    settings: Settings, model_id: str, model_dir: Path, *, report: bool = False
) -> None:
    """Copy model_dir in as model_id's files; training succeeded (and its report, if `report`)."""
    shutil.copytree(model_dir, settings.models_dir / model_id)
    with session_scope(settings.sqlalchemy_url) as session:
        repo.claim_model(session, model_id)
        repo.finish_model(session, model_id, status="succeeded", report=report)
        if report:
            repo.claim_report(session, model_id)
            repo.finish_report(session, model_id, status="succeeded")

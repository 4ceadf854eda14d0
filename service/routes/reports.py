"""/v1/models/{id}/report: the quality report (JSON and pictures), recomputed on demand."""

from __future__ import annotations

import re

from fastapi import APIRouter
from fastapi.responses import FileResponse

from core.db import repo, tenants
from core.queue import REPORT_TASK
from models.artifact import REPORT_FILE, REPORT_PICTURES_DIR, read_report
from service import catalog, quotas
from service.deps import CeleryDep, SessionDep, SettingsDep, TenantDep
from service.errors import ApiError
from service.ratelimit import RateLimitedRoute, rate_limited
from service.schemas import ModelPublic

router = APIRouter(prefix="/v1/models", tags=["reports"], route_class=RateLimitedRoute)


def _model_with_report(session: SessionDep, tenant: str, model_id: str):
    model = catalog.get_model_or_404(session, tenant, model_id)
    if model.status != "succeeded":
        raise ApiError(
            409,
            "report_not_ready",
            f"No report yet: the model is {model.status}; a report follows successful training.",
        )
    if model.report_status != "succeeded":
        detail = {
            "none": f"no report was computed; POST /v1/models/{model_id}/report to compute one.",
            "queued": "the report is queued.",
            "running": "the report is being computed ({stage}, {fraction:.0%}).",
            "failed": "computing the report failed: {error}",
        }[model.report_status]
        progress = model.report_progress or {}
        message = detail.format(
            stage=progress.get("stage"),
            fraction=progress.get("fraction", 0.0),
            error=model.report_error,
        )
        raise ApiError(409, "report_not_ready", f"No report yet: {message}")
    return model


@router.get("/{model_id}/report")
def get_report(
    model_id: str, settings: SettingsDep, session: SessionDep, tenant: TenantDep
) -> dict:
    """The quality report of a succeeded model: fidelity and diversity metrics, the chosen
    truncation t*, the recommended augmentation recipe, and `picture_urls` of its pictures.
    409 until the report has been computed.
    """
    model = _model_with_report(session, tenant, model_id)
    report = read_report(settings.models_dir / model.id / REPORT_FILE)
    pictures = sorted(
        p.stem for p in (settings.models_dir / model.id / REPORT_PICTURES_DIR).glob("*.png")
    )
    report["picture_urls"] = {name: f"/v1/models/{model.id}/report/{name}.png" for name in pictures}
    return report


@router.get("/{model_id}/report/{name}.png")
def get_report_picture(
    model_id: str, name: str, settings: SettingsDep, session: SessionDep, tenant: TenantDep
) -> FileResponse:
    """One of the report's pictures (listed in the report's `picture_urls`), as PNG."""
    model = _model_with_report(session, tenant, model_id)
    path = settings.models_dir / model.id / REPORT_PICTURES_DIR / f"{name}.png"
    if not re.fullmatch(r"[a-z0-9_]+", name) or not path.is_file():
        raise ApiError(404, "picture_not_found", f"The report has no picture '{name}'.")
    return FileResponse(path, media_type="image/png")


@router.post("/{model_id}/report", status_code=202, response_model=ModelPublic)
@rate_limited("reports")
def compute_report(
    model_id: str, settings: SettingsDep, session: SessionDep, tenant: TenantDep, celery: CeleryDep
) -> ModelPublic:
    """(Re)compute the quality report of a succeeded model (standard budget if it had none)."""
    model = catalog.get_model_or_404(session, tenant, model_id)
    if model.status != "succeeded":
        raise ApiError(
            409, "model_not_ready", f"The model is {model.status}; reports need a trained model."
        )
    if model.report_status in repo.REPORT_ACTIVE:
        raise ApiError(409, "report_in_progress", "A report is already queued or running.")
    tenants.lock_tenant(session, tenant)
    quotas.check_jobs(settings, session, tenant, config=None)
    before = (model.report_status, model.report_progress, model.report_error)
    repo.queue_report(session, model)
    session.commit()
    try:
        catalog.send_job(celery, session, REPORT_TASK, model)
    except ApiError:  # as it was: the old report (if any) stays, and a retry may queue again
        model.report_status, model.report_progress, model.report_error = before
        session.commit()
        raise
    session.refresh(model)
    return ModelPublic.from_row(model)

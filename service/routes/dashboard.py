"""The web dashboard: server-rendered pages at / and /ui/, with their scripts and styles.

The pages hold no data: their script (service/web/static/dashboard.js) reads and changes
everything through the /v1 API, same-origin, with the API key the user gives it (sent as
X-API-Key), so the dashboard follows the API's auth, tenancy and limits exactly. Nothing is
fetched from another site: it works offline.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
STATIC_PATH = "/ui/static"
# Scripts, styles and images from this origin only (images also from blob: URLs the script
# makes of authenticated responses); no framing, so no other site can overlay its buttons.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

templates = Jinja2Templates(directory=WEB_DIR / "templates")
router = APIRouter(include_in_schema=False)


def _page(request: Request, template: str, **context: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"static": STATIC_PATH, **context}, headers=PAGE_HEADERS
    )


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    return _page(request, "home.html", page="home")


@router.get("/ui/datasets/{dataset_id}", response_class=HTMLResponse)
def dataset_page(request: Request, dataset_id: str) -> HTMLResponse:
    return _page(request, "dataset.html", page="dataset", dataset_id=dataset_id)


@router.get("/ui/models/{model_id}", response_class=HTMLResponse)
def model_page(request: Request, model_id: str) -> HTMLResponse:
    return _page(request, "model.html", page="model", model_id=model_id)


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard's pages and static files on `app` (outside the OpenAPI schema)."""
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=WEB_DIR / "static"), name="ui-static")

"""/docs and /redoc render offline: every script, style and icon they load is served here."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("docs") / "data"))
    with TestClient(app, base_url="http://localhost") as client:
        yield client


def referenced_urls(html: str) -> list[str]:
    """Every URL the page loads or calls: src/href attributes and quoted URLs in its script."""
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""(?:url|oauth2RedirectUrl|spec-url)\s*[:=]\s*["']([^"']+)["']""", html)
    return urls


@pytest.mark.parametrize(
    ("page", "kind"),
    [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")],
)
def test_docs_pages_load_only_local_assets_that_are_served(client, page, kind):
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "cdn." not in html and "fonts.googleapis" not in html, html
    urls = referenced_urls(html)
    assert any(url.endswith(kind) for url in urls), urls
    assert "/openapi.json" in urls
    for url in urls:
        absolute = urljoin(f"http://localhost{page}", url)
        assert urlsplit(absolute).netloc == "localhost", f"{page} loads {url} from elsewhere"
        asset = client.get(urlsplit(absolute).path)
        assert asset.status_code == 200, url
        assert len(asset.content) > 100, url
    script = client.get(f"/docs/assets/{kind}")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert len(script.content) > 500_000  # the real bundle, not a stub


def test_docs_need_no_api_key_where_keys_are_required(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", allow_anonymous=False)
    # no lifespan: it refuses to start without a key
    keyless = TestClient(create_app(settings), base_url="http://localhost")
    assert keyless.get("/v1/datasets").status_code == 401
    assert keyless.get("/docs").status_code == 200
    assert keyless.get("/docs/assets/swagger-ui.css").status_code == 200

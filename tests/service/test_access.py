"""Where requests may come from: trusted Host names (DNS rebinding is refused), no work
started by another site's page, anonymous callers only on loopback (and flagged), and a
service on any other address that refuses to start without API keys."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.access import auth_summary, startup_refusal
from service.app import create_app
from tests.conftest import REPO, Api, service_env
from tests.servers import free_port
from tests.service.tenancy import create_keys, shapes_npz


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data", trusted_hosts=["api.example.com", "*.corp.example"])


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="http://localhost:8000") as test_client:
        yield test_client


def stored(settings: Settings) -> list[str]:
    folder = settings.datasets_dir
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def post_form(client, **headers: str):
    """What a web page's <form enctype="multipart/form-data" method="post"> sends."""
    return client.post(
        "/v1/datasets",
        files={"file": ("shapes.npz", shapes_npz())},
        data={"train": "true"},
        headers=headers,
    )


def test_only_trusted_host_names_are_answered(client):
    for host in ("attacker.example", "attacker.example:8000", "127.0.0.1.attacker.example"):
        refused = client.get("/v1/datasets", headers={"Host": host})
        assert refused.status_code == 400, host
        assert refused.json()["error"]["code"] == "untrusted_host"
        assert "GANAUG_TRUSTED_HOSTS" in refused.json()["error"]["message"]
        assert client.get("/docs", headers={"Host": host}).status_code == 400
    assert client.get("/healthz", headers={"Host": "attacker.example"}).status_code == 200
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "api.example.com", "a.corp.example"):
        answered = client.get("/v1/datasets", headers={"Host": host})
        assert answered.status_code == 200 and answered.json()["count"] == 0, host


def test_another_sites_page_cannot_start_work(client, settings):
    cross_site = [
        {"Origin": "http://attacker.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://attacker.example"},  # a browser without Fetch metadata
        {"Origin": "null"},  # a sandboxed frame
        {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"},  # another port
    ]
    for headers in cross_site:
        refused = post_form(client, **headers)
        assert refused.status_code == 403, headers
        assert refused.json()["error"]["code"] == "cross_site_request"
    assert stored(settings) == []
    assert client.get("/v1/models").json()["count"] == 0, "no training was queued"
    embedded = client.get("/v1/datasets", headers={"Sec-Fetch-Site": "cross-site"})
    assert embedded.status_code == 403, "no cross-site reads either (an <img> of samples)"
    # the service's own pages (/docs), and clients that are not browsers, may
    same_origin = {"Origin": "http://localhost:8000", "Sec-Fetch-Site": "same-origin"}
    assert post_form(client, **same_origin).status_code == 201
    assert post_form(client, Origin="http://localhost:8000").status_code == 201
    assert post_form(client).status_code == 201
    assert len(stored(settings)) == 3


def test_anonymous_mode_only_on_loopback_or_when_allowed(tmp_path):
    assert Settings(host="127.0.0.1").anonymous and Settings(host="::1").anonymous
    assert not Settings(host="0.0.0.0").anonymous and not Settings(host="10.1.2.3").anonymous
    assert not Settings(host="127.0.0.1", allow_anonymous=False).anonymous
    allowed = Settings(data_dir=tmp_path / "data", host="0.0.0.0", allow_anonymous=True)
    assert startup_refusal(allowed) is None
    assert auth_summary(allowed)["mode"] == "anonymous"


def test_embedded_anonymous_mode_is_flagged(tmp_path, processes):
    """A real `ganaug serve` on 127.0.0.1 without keys: it says so, and still refuses DNS
    rebinding and cross-site form posts."""
    api = Api(service_env(tmp_path / "data"), tmp_path / "serve.log", ["--no-worker"]).start()
    processes.append(api)
    assert "anonymous mode" in api.log() and "tenant 'default'" in api.log()
    with api.client() as client:
        ready = client.get("/readyz").json()
        assert ready["status"] == "ready" and ready["auth"]["mode"] == "anonymous"
        assert ready["auth"]["tenant"] == "default" and "API key" in ready["auth"]["warning"]
        rebound = client.get("/v1/datasets", headers={"Host": f"rebind.example:{api.port}"})
        assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "untrusted_host"
        form = post_form(
            client, Origin="http://attacker.example", **{"Sec-Fetch-Site": "cross-site"}
        )
        assert form.status_code == 403 and form.json()["error"]["code"] == "cross_site_request"
        assert client.get("/v1/datasets").json()["count"] == 0


def test_other_addresses_need_keys_to_start(tmp_path, processes):
    data_dir = tmp_path / "data"
    env = service_env(data_dir)
    serve = [sys.executable, "-m", "ganaug.cli", "serve", "--host", "0.0.0.0"]
    refused = subprocess.run(
        [*serve, "--port", str(free_port()), "--no-worker"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "Refusing to start" in refused.stderr and "GANAUG_ALLOW_ANONYMOUS" in refused.stderr

    key = create_keys(Settings(data_dir=data_dir), "alice")["alice"]
    api = Api(env, tmp_path / "serve.log", ["--host", "0.0.0.0", "--no-worker"]).start()
    processes.append(api)
    with api.client() as client:
        assert client.get("/readyz").json()["auth"] == {"mode": "api_keys"}
        anonymous = client.get("/v1/datasets")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        keyed = client.get("/v1/datasets", headers={"X-API-Key": key})
        assert keyed.status_code == 200 and keyed.json()["count"] == 0
        assert client.get("/healthz").json() == {"status": "ok"}, "probes need no key"

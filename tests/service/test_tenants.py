"""Tenants and API keys: every route is scoped to the caller's tenant (another tenant's id
answers exactly like an unknown id), lists show the caller's rows only, and requests without
a valid key answer 401. Keys are made, listed and revoked with `ganaug keys`.

In-process HTTP (TestClient) against PostgreSQL, with the session's tiny trained model in
place as the worker leaves it.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from core.settings import Settings
from service.app import create_app
from tests.conftest import REPO, TINY_TRAINING, service_env
from tests.service.served import install_trained_model
from tests.service.tenancy import bearer, create_keys, shapes_npz, upload


@pytest.fixture
def world(tiny_model, postgres_url, tmp_path) -> Iterator[SimpleNamespace]:
    """Tenants alice and bob with a key each; alice owns a dataset and a trained model."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=postgres_url, allow_anonymous=False
    )
    keys = create_keys(settings, "alice", "bob")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        created = upload(client, keys["alice"], train={"steps": 5, "report": "fast"})
        assert created.status_code == 201, created.text
        dataset_id, model_id = created.json()["id"], created.json()["model"]["id"]
        install_trained_model(settings, model_id, tiny_model.model_dir, report=True)
        yield SimpleNamespace(
            client=client, settings=settings, keys=keys, dataset_id=dataset_id, model_id=model_id
        )


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (16, 16), 200).save(buffer, format="PNG")
    return buffer.getvalue()


# (method, path, request options, alice's status) for every route that takes an id; alice's
# own requests come first and show each route works for its owner. State changes last.
MODEL_ROUTES = [
    ("GET", "/v1/models/{id}", {}, 200),
    ("GET", "/v1/models/{id}/stats", {}, 200),
    ("GET", "/v1/models/{id}/samples", {"params": {"n": 2, "seed": 1}}, 200),
    ("GET", "/v1/models/{id}/archive", {"params": {"per_class": 1, "seed": 1}}, 200),
    ("GET", "/v1/models/{id}/generator.onnx", {}, 200),
    ("POST", "/v1/models/{id}/classify", {"files": {"file": ("a.png", png_bytes())}}, 200),
    ("GET", "/v1/models/{id}/report", {}, 200),
    ("GET", "/v1/models/{id}/report/embedding.png", {}, 200),
    ("POST", "/v1/models/{id}/cancel", {}, 409),  # it has finished: alice sees that
    ("POST", "/v1/models/{id}/label-dataset", {}, 409),  # a cgan model: no clusters
    ("POST", "/v1/models/{id}/report", {}, 202),
    ("DELETE", "/v1/models/{id}", {}, None),  # alice's is not deleted: checked after
]
DATASET_ROUTES = [
    ("GET", "/v1/datasets/{id}", {}, 200),
    ("GET", "/v1/datasets/{id}/examples.png", {}, 200),
    ("PATCH", "/v1/datasets/{id}", {"json": {"classes": {"zzz": "y"}}}, 422),  # no class zzz
    ("DELETE", "/v1/datasets/{id}", {}, None),
]


def test_the_cross_tenant_table_names_every_route_that_takes_an_id():
    paths = create_app(Settings()).openapi()["paths"]
    routes = {
        (method.upper(), path.replace("{model_id}", "{id}").replace("{dataset_id}", "{id}"))
        for path, operations in paths.items()
        if path.startswith("/v1/") and "{" in path
        for method in operations
    }
    assert len(routes) >= 12, routes  # the table below is checked against something
    tabled = {(method, path) for method, path, _, _ in MODEL_ROUTES + DATASET_ROUTES}
    # report pictures: one route, {name} in the path; the table tries embedding.png
    tabled |= {("GET", "/v1/models/{id}/report/{name}.png")}
    assert routes <= tabled, routes - tabled


def comparable(response, ident: str) -> tuple:
    """What a caller sees, with the id it asked for replaced: status, type, body (less the
    request id, which differs on every request)."""
    request_id = response.headers["x-request-id"]
    return (
        response.status_code,
        response.headers["content-type"],
        response.text.replace(ident, "<id>").replace(request_id, "<request id>"),
    )


def test_another_tenants_ids_answer_exactly_like_unknown_ids(world):
    alice, bob = bearer(world.keys["alice"]), bearer(world.keys["bob"])
    unknown = uuid.uuid4().hex
    cases = [(r, world.model_id) for r in MODEL_ROUTES]
    cases += [(r, world.dataset_id) for r in DATASET_ROUTES]
    for (method, path, options, owner_status), ident in cases:
        theirs = world.client.request(method, path.format(id=ident), headers=bob, **options)
        missing = world.client.request(method, path.format(id=unknown), headers=bob, **options)
        assert theirs.status_code == 404, (method, path, theirs.text)
        assert theirs.json()["error"]["code"].endswith("_not_found"), theirs.text
        assert comparable(theirs, ident) == comparable(missing, unknown), (method, path)
        if owner_status is not None:
            own = world.client.request(method, path.format(id=ident), headers=alice, **options)
            assert own.status_code == owner_status, (method, path, own.text)
    # bob's deletes and cancel changed nothing of alice's
    model = world.client.get(f"/v1/models/{world.model_id}", headers=alice).json()
    assert model["status"] == "succeeded" and model["report"]["status"] == "queued"
    assert world.client.get(f"/v1/datasets/{world.dataset_id}", headers=alice).status_code == 200
    assert (world.settings.models_dir / world.model_id / "generator.onnx").is_file()

    # training on another tenant's dataset: the same 404 as an unknown dataset
    body = {"steps": 5, "report": "none"}
    theirs = world.client.post(
        "/v1/models", json={**body, "dataset_id": world.dataset_id}, headers=bob
    )
    missing = world.client.post("/v1/models", json={**body, "dataset_id": unknown}, headers=bob)
    assert theirs.status_code == 404
    assert comparable(theirs, world.dataset_id) == comparable(missing, unknown)


def test_lists_show_only_the_callers_rows(world):
    alice, bob = bearer(world.keys["alice"]), bearer(world.keys["bob"])
    bobs = upload(world.client, world.keys["bob"], train=TINY_TRAINING)
    assert bobs.status_code == 201, bobs.text
    listed = {
        name: (
            world.client.get("/v1/datasets", headers=headers).json(),
            world.client.get("/v1/models", headers=headers).json(),
        )
        for name, headers in (("alice", alice), ("bob", bob))
    }
    datasets, models = listed["alice"]
    assert [d["id"] for d in datasets["data"]] == [world.dataset_id] and datasets["count"] == 1
    assert [m["id"] for m in models["data"]] == [world.model_id] and models["count"] == 1
    datasets, models = listed["bob"]
    assert [d["id"] for d in datasets["data"]] == [bobs.json()["id"]] and datasets["count"] == 1
    assert [m["id"] for m in models["data"]] == [bobs.json()["model"]["id"]]
    # filtering by another tenant's dataset finds nothing
    filtered = world.client.get("/v1/models", params={"dataset_id": world.dataset_id}, headers=bob)
    assert filtered.json()["count"] == 0 and filtered.json()["data"] == []


def assert_unauthorized(response, code: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == code
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_requests_without_a_valid_key_answer_401(world):
    client = world.client
    assert_unauthorized(client.get("/v1/datasets"), "missing_api_key")
    assert_unauthorized(client.get(f"/v1/models/{world.model_id}"), "missing_api_key")
    refused = client.post("/v1/datasets", files={"file": ("shapes.npz", shapes_npz())})
    assert_unauthorized(refused, "missing_api_key")
    assert sorted(p.name for p in world.settings.datasets_dir.iterdir()) == [world.dataset_id]
    wrong = bearer("gak_" + "x" * 43)
    assert_unauthorized(client.get("/v1/datasets", headers=wrong), "invalid_api_key")
    basic = {"Authorization": "Basic YWxpY2U6c2VjcmV0"}
    assert_unauthorized(client.get("/v1/datasets", headers=basic), "invalid_api_key")
    # X-API-Key is the other way to send a key
    listed = client.get("/v1/datasets", headers={"X-API-Key": world.keys["alice"]})
    assert listed.status_code == 200 and listed.json()["count"] == 1
    # the probes and the API's description stay open
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["auth"] == {"mode": "api_keys"}
    assert client.get("/openapi.json").status_code == 200


def ganaug(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ganaug.cli", *args],
        env=service_env(data_dir),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_are_created_listed_and_revoked_with_the_command(tmp_path):
    data_dir = tmp_path / "data"
    created = ganaug(data_dir, "keys", "create", "--tenant", "carol", "--name", "laptop")
    assert created.returncode == 0, created.stderr
    key = re.search(r"^key:\s+(gak_\S+)$", created.stdout, re.M).group(1)
    key_id = re.search(r"^id:\s+(\w+)$", created.stdout, re.M).group(1)
    listed = ganaug(data_dir, "keys", "list").stdout
    row = next(line for line in listed.splitlines() if line.startswith(key_id))
    assert "carol" in row and "active" in row and key[:12] in row and "laptop" in row
    assert key not in listed, "the key itself is shown only once"

    settings = Settings(data_dir=data_dir, allow_anonymous=False)
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        assert upload(client, key).status_code == 201
        assert client.get("/v1/datasets", headers=bearer(key)).json()["count"] == 1
        revoked = ganaug(data_dir, "keys", "revoke", key_id)
        assert revoked.returncode == 0 and "carol" in revoked.stdout, revoked.stderr
        assert_unauthorized(client.get("/v1/datasets", headers=bearer(key)), "invalid_api_key")
    listed = ganaug(data_dir, "keys", "list", "--tenant", "carol").stdout
    assert "revoked" in next(line for line in listed.splitlines() if line.startswith(key_id))
    unknown = ganaug(data_dir, "keys", "revoke", "0" * 32)
    assert unknown.returncode == 1 and "no API key" in unknown.stderr
    bad_name = ganaug(data_dir, "keys", "create", "--tenant", "Not A Name")
    assert bad_name.returncode == 2 and "not allowed" in bad_name.stderr

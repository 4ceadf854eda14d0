"""Per-tenant quotas (jobs, datasets, stored bytes, training cost), caps on the images one
response generates, and per-key rate limits: each enforced with an error that says what was
exceeded and by how much, and counted for its own tenant or key only.

In-process HTTP (TestClient) on SQLite; no worker runs, so queued jobs stay queued.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.app import create_app
from service.quotas import folder_bytes
from tests.conftest import TINY_TRAINING
from tests.factories import SHAPES
from tests.service.served import install_trained_model
from tests.service.tenancy import bearer, create_keys, shapes_npz, upload

COST = TINY_TRAINING["steps"] * TINY_TRAINING["batch_size"] * 32  # g_channels + d_channels


def api(tmp_path, **limits) -> Iterator[SimpleNamespace]:
    settings = Settings(data_dir=tmp_path / "data", allow_anonymous=False, **limits)
    keys = create_keys(settings, "alice", "bob")
    with TestClient(create_app(settings), base_url="http://localhost") as client:
        yield SimpleNamespace(client=client, settings=settings, keys=keys)


def assert_quota(response, quota: str, limit: int, used: int, requested: int) -> str:
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert (error["quota"], error["limit"], error["used"], error["requested"]) == (
        quota,
        limit,
        used,
        requested,
    )
    over = used + requested - limit
    assert f"GANAUG_QUOTA_{quota.upper()}" in error["message"]
    assert f"{over:,} over" in error["message"], error["message"]
    return error["message"]


def dataset_ids(served) -> set[str]:
    folder = served.settings.datasets_dir
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


@pytest.fixture
def two_datasets(tmp_path):
    yield from api(tmp_path, quota_datasets=2)


def test_datasets_quota(two_datasets):
    served, alice = two_datasets, two_datasets.keys["alice"]
    assert upload(served.client, alice).status_code == 201
    assert upload(served.client, alice).status_code == 201
    kept = dataset_ids(served)
    assert_quota(upload(served.client, alice), "datasets", 2, 2, 1)
    assert dataset_ids(served) == kept, "a refused upload stores nothing"
    assert upload(served.client, served.keys["bob"]).status_code == 201, "bob has his own quota"


@pytest.fixture
def small_storage(tmp_path):
    yield from api(tmp_path, quota_stored_bytes=20_000)


def test_stored_bytes_quota(small_storage):
    served, alice = small_storage, small_storage.keys["alice"]
    first = upload(served.client, alice, payload=shapes_npz(per_class=6))
    assert first.status_code == 201, first.text
    used = folder_bytes(served.settings.datasets_dir / first.json()["id"])
    assert 0 < used < 20_000
    refused = upload(served.client, alice, payload=shapes_npz(per_class=30))
    requested = 30 * len(SHAPES) * 16 * 16  # the new x.npy's pixels, plus headers and labels
    error = refused.json()["error"]
    assert error["requested"] > requested, error
    assert_quota(refused, "stored_bytes", 20_000, used, error["requested"])
    assert dataset_ids(served) == {first.json()["id"]}, "the refused dataset's files are gone"
    assert upload(served.client, served.keys["bob"]).status_code == 201


@pytest.fixture
def one_job(tmp_path):
    yield from api(tmp_path, quota_jobs=1)


def test_jobs_quota(one_job):
    served, alice = one_job, one_job.keys["alice"]
    first = upload(served.client, alice, train=TINY_TRAINING)
    assert first.status_code == 201 and first.json()["model"]["status"] == "queued"
    again = served.client.post(
        "/v1/models",
        json={"dataset_id": first.json()["id"], **TINY_TRAINING},
        headers=bearer(alice),
    )
    assert_quota(again, "jobs", 1, 1, 1)
    with_training = upload(served.client, alice, train=TINY_TRAINING)
    assert_quota(with_training, "jobs", 1, 1, 1)
    assert dataset_ids(served) == {first.json()["id"]}, "refused before the upload is stored"
    listed = served.client.get("/v1/models", headers=bearer(alice)).json()
    assert listed["count"] == 1
    assert upload(served.client, served.keys["bob"], train=TINY_TRAINING).status_code == 201


@pytest.fixture
def low_cost(tmp_path):
    yield from api(tmp_path, quota_training_cost=COST * 3 // 2, quota_jobs=10)


def test_training_cost_quota(low_cost):
    served, alice = low_cost, low_cost.keys["alice"]
    first = upload(served.client, alice, train=TINY_TRAINING)
    assert first.status_code == 201, first.text
    body = {"dataset_id": first.json()["id"], **TINY_TRAINING}
    second = served.client.post("/v1/models", json=body, headers=bearer(alice))
    message = assert_quota(second, "training_cost", COST * 3 // 2, COST, COST)
    assert "steps x batch_size x (g_channels + d_channels)" in message
    huge = {**body, "steps": 200_000, "batch_size": 1024, "g_channels": 512, "d_channels": 512}
    refused = served.client.post("/v1/models", json=huge, headers=bearer(alice))
    assert_quota(refused, "training_cost", COST * 3 // 2, COST, 200_000 * 1024 * 1024)
    # cancelling the queued training frees its cost
    model_id = first.json()["model"]["id"]
    assert served.client.post(f"/v1/models/{model_id}/cancel", headers=bearer(alice)).json()[
        "status"
    ] == ("cancelled")
    assert served.client.post("/v1/models", json=body, headers=bearer(alice)).status_code == 202


@pytest.fixture
def trained(tiny_model, tmp_path):
    """alice's tiny trained model, with low caps and rate limits."""
    for served in api(
        tmp_path,
        max_samples=2 * len(SHAPES),
        max_archive_images=len(SHAPES),
        rate_limit_samples="5/minute",
        rate_limit_datasets="2/minute",
    ):
        alice = served.keys["alice"]
        created = upload(served.client, alice, train={"steps": 5, "report": "fast"})
        model_id = created.json()["model"]["id"]
        install_trained_model(served.settings, model_id, tiny_model.model_dir, report=True)
        served.model_id = model_id
        yield served


def test_images_per_response_are_capped(trained):
    alice = bearer(trained.keys["alice"])
    samples = f"/v1/models/{trained.model_id}/samples"
    every_class = trained.client.get(samples, params={"n": 3, "seed": 1}, headers=alice)
    assert every_class.status_code == 422, every_class.text
    error = every_class.json()["error"]
    assert error["code"] == "too_many_images_requested"
    assert (error["limit"], error["requested"]) == (6, 9)
    assert "9 generated images (3 classes), 3 over the cap of 6" in error["message"]
    assert "GANAUG_MAX_SAMPLES" in error["message"]
    one_class = trained.client.get(
        samples, params={"n": 3, "class": "circle", "seed": 1, "format": "npz"}, headers=alice
    )
    assert one_class.status_code == 200, one_class.text

    archive = f"/v1/models/{trained.model_id}/archive"
    refused = trained.client.get(archive, params={"per_class": 2}, headers=alice)
    assert refused.status_code == 422
    assert (refused.json()["error"]["limit"], refused.json()["error"]["requested"]) == (3, 6)
    assert "GANAUG_MAX_ARCHIVE_IMAGES" in refused.json()["error"]["message"]
    assert trained.client.get(archive, params={"per_class": 1}, headers=alice).status_code == 200


def test_rate_limits_per_key_answer_429_with_retry_after(trained):
    alice, bob = bearer(trained.keys["alice"]), bearer(trained.keys["bob"])
    samples = f"/v1/models/{trained.model_id}/samples"
    params = {"n": 1, "class": "circle", "seed": 1}
    # the fixture's upload was one datasets request; the limit there is 2 a minute
    assert upload(trained.client, trained.keys["alice"]).status_code == 201
    stored = dataset_ids(trained)
    too_many = upload(trained.client, trained.keys["alice"])
    assert too_many.status_code == 429, too_many.text
    assert dataset_ids(trained) == stored, "a refused upload stores nothing"
    statuses = [trained.client.get(samples, params=params, headers=alice) for _ in range(6)]
    assert [r.status_code for r in statuses] == [200] * 5 + [429]
    refused = statuses[-1]
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["limit"] == 5
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert error["retry_after_s"] == int(refused.headers["retry-after"])
    assert "GANAUG_RATE_LIMIT_SAMPLES" in error["message"]
    # another key has its own count; cheap routes are not limited
    assert trained.client.get(samples, params=params, headers=bob).status_code == 404
    assert trained.client.get(f"/v1/models/{trained.model_id}", headers=alice).status_code == 200

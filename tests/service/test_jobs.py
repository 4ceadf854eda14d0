"""Jobs the API queues: a broker failure leaves no stuck row, and a job whose worker died
can be cancelled and deleted (in-process API, real database; no worker runs here)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from core.db import repo
from core.db.session import session_scope
from core.db.tables import Model
from core.settings import Settings
from service.app import create_app
from tests.factories import shapes_zip_bytes
from tests.servers import free_port
from tests.service.served import end_training


def make_client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), base_url="http://localhost")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def client(settings) -> Iterator[TestClient]:
    with make_client(settings) as test_client:
        yield test_client


def upload(client: TestClient, train: bool = True):
    data = {"train": "true", "config": json.dumps({"steps": 5})} if train else {}
    return client.post(
        "/v1/datasets", files={"file": ("s.zip", shapes_zip_bytes(per_class=3))}, data=data
    )


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "broker_unavailable" and "retry" in error["message"]


class Uploaded:
    def __init__(self, dataset_id: str, model_id: str) -> None:
        self.dataset_id, self.model_id = dataset_id, model_id


def upload_dataset_and_model(settings: Settings) -> Uploaded:
    with make_client(settings) as client:
        body = upload(client).json()
    return Uploaded(body["id"], body["model"]["id"])


def test_a_broker_failure_answers_503_and_leaves_nothing_stuck(settings):
    up = upload_dataset_and_model(settings)  # queued while the broker ran
    down = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/0"})
    with make_client(down) as client:
        assert_unavailable(upload(client))  # dataset + training in one request
        assert client.get("/v1/datasets").json()["count"] == 1  # only the earlier one
        assert_unavailable(client.post("/v1/models", json={"dataset_id": up.dataset_id}))
        assert client.get("/v1/models").json()["count"] == 1

        end_training(settings, up.model_id, "succeeded")  # report: none in its config
        for _ in range(2):  # retryable: the second answer is 503 again, not 409
            assert_unavailable(client.post(f"/v1/models/{up.model_id}/report"))
            model = client.get(f"/v1/models/{up.model_id}").json()
            assert model["report"]["status"] == "none"
    with make_client(settings) as client:  # the broker is back
        queued = client.post(f"/v1/models/{up.model_id}/report")
        assert queued.status_code == 202 and queued.json()["report"]["status"] == "queued"
    with session_scope(settings.sqlalchemy_url) as session:
        assert repo.undispatched(session) == []  # sent and recorded as sent


def lease_and_lose(settings: Settings, model_id: str, *, expired: bool) -> None:
    """A worker leases the training; with `expired`, it died and its lease ran out."""
    with session_scope(settings.sqlalchemy_url) as session:
        assert repo.claim_model(session, model_id, owner="w", lease_s=60) is not None
        if expired:
            past = repo.db_now(session) - timedelta(seconds=1)
            session.execute(update(Model).where(Model.id == model_id).values(lease_expires_at=past))


def test_a_dead_workers_job_can_be_cancelled_and_deleted(client, settings):
    body = upload(client).json()
    model_id = body["model"]["id"]
    lease_and_lose(settings, model_id, expired=True)
    assert client.get(f"/v1/models/{model_id}").json()["status"] == "running"
    cancelled = client.post(f"/v1/models/{model_id}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert client.delete(f"/v1/models/{model_id}").status_code == 204
    assert client.get(f"/v1/models/{model_id}").status_code == 404

    other = upload(client).json()  # deleted straight away, without a cancel
    lease_and_lose(settings, other["model"]["id"], expired=True)
    assert client.delete(f"/v1/models/{other['model']['id']}").status_code == 204
    assert client.delete(f"/v1/datasets/{other['id']}").status_code == 204


def test_a_live_job_is_asked_to_stop_and_cannot_be_deleted(client, settings):
    body = upload(client).json()
    model_id = body["model"]["id"]
    lease_and_lose(settings, model_id, expired=False)
    deleted = client.delete(f"/v1/models/{model_id}")
    assert deleted.status_code == 409 and deleted.json()["error"]["code"] == "model_active"
    in_use = client.delete(f"/v1/datasets/{body['id']}")
    assert in_use.status_code == 409 and in_use.json()["error"]["code"] == "dataset_in_use"
    cancel = client.post(f"/v1/models/{model_id}/cancel")
    assert cancel.status_code == 202 and cancel.json()["status"] == "running"  # its worker stops
    with session_scope(settings.sqlalchemy_url) as session:
        assert repo.cancel_requested(session, model_id)


@pytest.mark.parametrize("keys", [False, True])
def test_an_unreachable_database_answers_503_not_500(tmp_path, keys):
    """Listing, reading or (with keys) identifying the caller while the database is down:
    503 database_unavailable, in the error shape, whichever layer met the outage."""
    dead = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/ganaug"
    settings = Settings(data_dir=tmp_path / "data", database_url=dead, allow_anonymous=not keys)
    client = TestClient(  # no lifespan: start-up would fail to migrate the dead database
        create_app(settings), base_url="http://localhost", raise_server_exceptions=False
    )
    headers = {"Authorization": "Bearer gak_" + "x" * 43} if keys else {}
    for path in ("/v1/datasets", "/v1/models/abc"):
        response = client.get(path, headers=headers)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_unavailable"
        assert "Retry" in response.json()["error"]["message"]

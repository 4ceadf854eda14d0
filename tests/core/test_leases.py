"""Job leases on real databases (SQLite and PostgreSQL): one holder at a time, a lost
holder writes nothing, expired leases are requeued once, and queued jobs never sent are
sent by the sweep to a real Redis."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import redis
from sqlalchemy import update

from core.db import repo
from core.db.migrate import upgrade_database
from core.db.session import session_scope
from core.db.tables import Model
from core.leases import LeaseKeeper
from core.queue import sweep
from core.settings import Settings
from tests.factories import SHAPES
from training.dataset import DatasetInfo

LEASE_S = 30.0


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path) -> Settings:
    database = "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database, lease_s=2.0, lease_heartbeat_s=0.2
    )
    upgrade_database(settings.sqlalchemy_url)
    return settings


def queued_model(settings: Settings, report: str = "none") -> str:
    """A dataset and a queued model on it, as the API inserts them."""
    info = DatasetInfo(
        num_images=3,
        classes=list(SHAPES),
        counts=[1] * len(SHAPES),
        height=8,
        width=8,
        channels=1,
        source_format="npz",
    )
    with session_scope(settings.sqlalchemy_url) as session:
        dataset = repo.add_dataset(
            session, tenant_id="default", dataset_id=repo.new_id(), name="d", info=info
        )
        model_id = repo.new_id()
        repo.add_model(
            session,
            tenant_id="default",
            model_id=model_id,
            dataset=dataset,
            config={"method": "cgan", "steps": 10, "report": report},
        )
    return model_id


def claim(settings: Settings, model_id: str, owner: str = "w1") -> str | None:
    with session_scope(settings.sqlalchemy_url) as session:
        row = repo.claim_model(session, model_id, owner=owner, lease_s=LEASE_S)
        return None if row is None else row.lease_token


def row(settings: Settings, model_id: str) -> Model:
    with session_scope(settings.sqlalchemy_url) as session:
        found = session.get(Model, model_id)
        assert found is not None
        return found


def expire(settings: Settings, model_id: str) -> None:
    """The holder stopped renewing long enough ago (its worker died)."""
    with session_scope(settings.sqlalchemy_url) as session:
        past = repo.db_now(session) - timedelta(seconds=1)
        session.execute(update(Model).where(Model.id == model_id).values(lease_expires_at=past))


def test_a_second_delivery_does_not_run_while_the_lease_lives(settings):
    model_id = queued_model(settings)
    first = claim(settings, model_id, "w1")
    assert first is not None
    assert claim(settings, model_id, "w2") is None  # the duplicate refuses
    held = row(settings, model_id)
    assert (held.status, held.lease_token, held.lease_owner, held.attempts) == (
        "running",
        first,
        "w1",
        1,
    )
    with session_scope(settings.sqlalchemy_url) as session:
        assert "leased by w1" in repo.lease_holder(session, model_id)


def test_an_expired_lease_is_taken_over_and_the_old_holder_writes_nothing(settings):
    model_id = queued_model(settings)
    old = claim(settings, model_id, "w1")
    with session_scope(settings.sqlalchemy_url) as session:
        assert repo.record_progress(session, model_id, old, {"step": 5, "total_steps": 10})
    expire(settings, model_id)
    new = claim(settings, model_id, "w2")
    assert new is not None and new != old
    with session_scope(settings.sqlalchemy_url) as session:
        assert not repo.record_progress(session, model_id, old, {"step": 9, "total_steps": 10})
        assert not repo.renew_lease(session, model_id, old, LEASE_S)
        assert not repo.finish_model(session, model_id, old, status="failed", error="stale")
    taken = row(settings, model_id)
    assert (taken.status, taken.progress["step"], taken.attempts) == ("running", 5, 2)
    with session_scope(settings.sqlalchemy_url) as session:
        assert repo.finish_model(session, model_id, new, status="succeeded")
    done = row(settings, model_id)
    assert (done.status, done.error, done.lease_token) == ("succeeded", None, None)
    assert claim(settings, model_id, "w3") is None  # a finished job never runs again


def test_concurrent_claims_have_one_winner(settings):
    model_id = queued_model(settings)
    tokens, barrier = [], threading.Barrier(6)

    def contend(owner: str) -> None:
        barrier.wait()
        tokens.append(claim(settings, model_id, owner))

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [t for t in tokens if t is not None]
    assert len(tokens) == 6 and len(winners) == 1
    assert row(settings, model_id).attempts == 1


def test_expired_jobs_are_requeued_once_and_cancelled_ones_end(settings):
    training, cancelled = queued_model(settings), queued_model(settings)
    for model_id in (training, cancelled):
        claim(settings, model_id)
        expire(settings, model_id)
    with session_scope(settings.sqlalchemy_url) as session:
        repo.request_cancel(session, session.get(Model, cancelled))  # its worker is dead
    assert row(settings, cancelled).status == "cancelled", "cancel ends a dead worker's job"
    with session_scope(settings.sqlalchemy_url) as session:
        assert repo.requeue_expired(session) == [training]
    with session_scope(settings.sqlalchemy_url) as session:
        assert repo.requeue_expired(session) == []  # a second sweeper finds nothing
        assert (repo.TRAINING, training) in repo.undispatched(session)
    requeued = row(settings, training)
    assert (requeued.status, requeued.lease_token, requeued.dispatched_at) == ("queued", None, None)
    assert claim(settings, training) is not None  # and it runs again


def test_cancel_of_a_live_lease_is_asked_of_its_worker(settings):
    model_id = queued_model(settings)
    claim(settings, model_id)
    with session_scope(settings.sqlalchemy_url) as session:
        model = session.get(Model, model_id)
        assert repo.is_active(session, model)
        repo.request_cancel(session, model)
    assert (row(settings, model_id).status, row(settings, model_id).cancel_requested) == (
        "running",
        True,
    )
    expire(settings, model_id)
    with session_scope(settings.sqlalchemy_url) as session:
        assert not repo.is_active(session, session.get(Model, model_id))  # may be deleted
        repo.requeue_expired(session)
    assert row(settings, model_id).status == "cancelled"


def test_the_heartbeat_keeps_the_lease_and_notices_when_it_is_taken(settings):
    model_id = queued_model(settings)
    token = claim(settings, model_id)
    with LeaseKeeper(settings, model_id, token) as lease:
        time.sleep(settings.lease_s * 1.5)  # longer than one lease: only heartbeats keep it
        with session_scope(settings.sqlalchemy_url) as session:
            assert repo.lease_alive(session.get(Model, model_id), repo.db_now(session))
        assert not lease.lost.is_set()
        expire(settings, model_id)
        assert claim(settings, model_id, "w2") is not None
        assert lease.lost.wait(settings.lease_heartbeat_s * 5), "the old holder must notice"


def test_the_sweep_sends_queued_jobs_never_sent(settings, redis_url):
    """A report queued by a worker while the broker was down is sent once it answers."""
    from core.queue import make_celery

    model_id = queued_model(settings, report="fast")
    token = claim(settings, model_id)
    with session_scope(settings.sqlalchemy_url) as session:
        assert repo.finish_model(session, model_id, token, status="succeeded", report=True)
    queue = f"sweep-{model_id[:8]}"
    live = settings.model_copy(update={"broker_url": redis_url, "queue": queue})
    assert sweep(live, make_celery(live)) == []  # just queued: its queuer sends it
    assert sweep(live, make_celery(live), send_grace_s=0) == [model_id]
    assert sweep(live, make_celery(live), send_grace_s=0) == []  # sent once
    assert row(settings, model_id).dispatched_at is not None
    messages = redis.Redis.from_url(redis_url).lrange(queue, 0, -1)
    assert len(messages) == 1 and model_id.encode() in messages[0]
    assert b"ganaug.build_report" in messages[0]

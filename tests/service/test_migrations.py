"""The schema is owned by Alembic: every revision applies to SQLite and PostgreSQL, keeping rows."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import JSON, column, create_engine, inspect, table, text

from core.db.migrate import alembic_config, upgrade_database
from core.settings import Settings


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ganaug.db'}"
    return Settings(database_url=request.getfixturevalue("postgres_url")).sqlalchemy_url


def insert_dataset(conn, now: datetime) -> None:
    conn.execute(
        text(
            "INSERT INTO datasets (id, tenant_id, name, num_images, classes, image, "
            "source_format, created_at) VALUES ('d1', 'default', 'old', 2, '[]', '{}', "
            "'zip', :now)"
        ),
        {"now": now},
    )


def test_upgrade_from_empty_is_idempotent(database_url):
    upgrade_database(database_url)
    upgrade_database(database_url)
    engine = create_engine(database_url)
    assert {"tenants", "datasets", "models", "alembic_version"} <= set(
        inspect(engine).get_table_names()
    )
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id FROM tenants")).scalars().all() == ["default"]
    engine.dispose()


def test_rows_survive_the_report_migration(database_url):
    command.upgrade(alembic_config(database_url), "0001")
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        insert_dataset(conn, now)
        conn.execute(
            text(
                "INSERT INTO models (id, tenant_id, dataset_id, method, status, config, progress, "
                "cancel_requested, classes, image, created_at, updated_at) VALUES ('m1', "
                "'default', 'd1', 'acgan', 'succeeded', '{}', '{}', false, '[]', '{}', :now, :now)"
            ),
            {"now": now},
        )
    upgrade_database(database_url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, report_status FROM models WHERE id = 'm1'")).one()
    assert tuple(row) == ("succeeded", "none")
    command.downgrade(alembic_config(database_url), "0001")
    assert "report_status" not in {c["name"] for c in inspect(engine).get_columns("models")}
    engine.dispose()


def test_models_in_training_read_pending_after_the_pending_migration(database_url):
    """A report follows every training whose config asks for one (the default: standard)."""
    command.upgrade(alembic_config(database_url), "0002")
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    models = table(
        "models",
        column("id"),
        column("tenant_id"),
        column("dataset_id"),
        column("method"),
        column("status"),
        column("config", JSON),
        column("progress", JSON),
        column("cancel_requested"),
        column("classes", JSON),
        column("image", JSON),
        column("created_at"),
        column("updated_at"),
    )
    rows = {  # id: (status, config, report status expected after the migration)
        "running_fast": ("running", {"report": "fast"}, "pending"),
        "queued_default": ("queued", {}, "pending"),
        "queued_none": ("queued", {"report": "none"}, "none"),
        "succeeded": ("succeeded", {"report": "standard"}, "none"),
        "failed": ("failed", {"report": "standard"}, "none"),
    }
    with engine.begin() as conn:
        insert_dataset(conn, now)
        for model_id, (status, config, _) in rows.items():
            conn.execute(
                models.insert().values(
                    id=model_id,
                    tenant_id="default",
                    dataset_id="d1",
                    method="acgan",
                    status=status,
                    config=config,
                    progress={},
                    cancel_requested=False,
                    classes=[],
                    image={},
                    created_at=now,
                    updated_at=now,
                )
            )
    upgrade_database(database_url)
    with engine.connect() as conn:
        found = dict(conn.execute(text("SELECT id, report_status FROM models")).all())
    assert found == {model_id: expected for model_id, (_, _, expected) in rows.items()}
    command.downgrade(alembic_config(database_url), "0002")
    with engine.connect() as conn:
        statuses = conn.execute(text("SELECT DISTINCT report_status FROM models")).scalars()
        assert statuses.all() == ["none"]
    engine.dispose()


def test_api_keys_migration_adds_and_removes_its_table(database_url):
    command.upgrade(alembic_config(database_url), "0004")
    engine = create_engine(database_url)
    assert "api_keys" in inspect(engine).get_table_names()
    unique = [i for i in inspect(engine).get_indexes("api_keys") if i["unique"]]
    assert [i["column_names"] for i in unique] == [["key_hash"]], "one row per key hash"
    command.downgrade(alembic_config(database_url), "0003")
    assert "api_keys" not in inspect(engine).get_table_names()
    engine.dispose()

"""Alembic environment: the URL comes from the caller (core.db.migrate) or the settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from core.db.session import get_engine
from core.db.tables import Base

MIGRATION_LOCK_ID = 7_331_001  # PostgreSQL advisory lock: API and worker may migrate at once


def run_migrations_online() -> None:
    url = context.config.attributes.get("url")
    if url is None:
        from core.settings import get_settings

        url = get_settings().sqlalchemy_url
    engine = get_engine(url)
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=Base.metadata)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            if postgres:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
                connection.commit()


run_migrations_online()

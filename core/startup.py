"""The start-up steps every ganaug process takes before it serves or works."""

from __future__ import annotations

from core.queue import prepare_embedded_broker
from core.settings import Settings


def prepare(settings: Settings) -> None:
    """Create the data directory and embedded broker folders; migrate the database (idempotent)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare_embedded_broker(settings)
    from core.db.migrate import upgrade_database  # alembic: 0.5 s of import, start-up only

    upgrade_database(settings.sqlalchemy_url)

"""Report status `pending`: a model still training whose report will follow.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

The column is a plain string (no constraint), so only rows change: models queued or running
with a report in their config (a config without the key had the default, `standard`).
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

models = sa.table(
    "models",
    sa.column("id", sa.String),
    sa.column("status", sa.String),
    sa.column("config", sa.JSON),
    sa.column("report_status", sa.String),
)


def upgrade() -> None:
    connection = op.get_bind()
    training = connection.execute(
        sa.select(models.c.id, models.c.config).where(
            models.c.status.in_(("queued", "running")), models.c.report_status == "none"
        )
    ).all()
    pending = [row.id for row in training if (row.config or {}).get("report", "standard") != "none"]
    if pending:
        connection.execute(
            models.update().where(models.c.id.in_(pending)).values(report_status="pending")
        )


def downgrade() -> None:
    connection = op.get_bind()
    connection.execute(
        models.update().where(models.c.report_status == "pending").values(report_status="none")
    )

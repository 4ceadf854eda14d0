"""Quality report status per model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(
            sa.Column("report_status", sa.String(16), nullable=False, server_default="none")
        )
        batch.add_column(sa.Column("report_progress", sa.JSON, nullable=True))
        batch.add_column(sa.Column("report_error", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("report_error")
        batch.drop_column("report_progress")
        batch.drop_column("report_status")

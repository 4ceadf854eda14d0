"""Job leases: the attempt token, owner and expiry of the job running on a model, the
number of attempts, and when a queued job's message was sent.

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-29

Every row starts without a lease and with `dispatched_at` NULL, so after the upgrade the
workers' sweep sends each queued job once more (a job whose message was lost, such as a
report queued while the broker was down, runs; a duplicate is refused by its lease), and a
`running` job from before the upgrade counts as lost: stop the old workers first.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("lease_token", sa.String(32), nullable=True))
        batch.add_column(sa.Column("lease_owner", sa.String(255), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_models_lease_expires_at", ["lease_expires_at"])


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_index("ix_models_lease_expires_at")
        for name in ("dispatched_at", "attempts", "lease_expires_at", "lease_owner", "lease_token"):
            batch.drop_column(name)

"""Unlabelled datasets and the classes a vcagan model discovers.

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-01

`datasets.labelled` (false: no labels, only vcagan trains on it; existing rows are labelled)
and `models.clusters` (vcagan: P(C) over the virtual classes, its entropy and the threshold
that kept the model's classes; null for every other model).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN: a batch copy of datasets would trip models' foreign key on SQLite
    op.add_column(
        "datasets", sa.Column("labelled", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.add_column("models", sa.Column("clusters", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("clusters")
    # models.dataset_id references datasets: SQLite (>= 3.35) drops the column in place
    # rather than copying the table, which the foreign key would refuse
    with op.batch_alter_table("datasets", recreate="never") as batch:
        batch.drop_column("labelled")

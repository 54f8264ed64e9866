"""Queue ordering per project (greedy / explore / power / cluster) and per iteration.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("queue", sa.String(50), nullable=False, server_default="greedy"))
    with op.batch_alter_table("iterations") as batch:
        batch.add_column(sa.Column("queue", sa.String(50), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("iterations") as batch:
        batch.drop_column("queue")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("queue")

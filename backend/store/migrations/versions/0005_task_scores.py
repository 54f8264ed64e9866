"""Task scores: indexed by (iteration, task), since /predict answers pool tasks from the serving round's
scores; and the stream each task was queued in ("active": the strategy's order, "validation": the random
validation stream placed at random positions).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_task_scores_iteration_task", "task_scores", ["iteration_id", "task_id"])
    with op.batch_alter_table("task_scores") as batch:  # nothing references task_scores: re-creating it is safe
        batch.add_column(sa.Column("stream", sa.String(12), nullable=False, server_default="active"))


def downgrade() -> None:
    with op.batch_alter_table("task_scores") as batch:
        batch.drop_column("stream")
    op.drop_index("ix_task_scores_iteration_task", table_name="task_scores")

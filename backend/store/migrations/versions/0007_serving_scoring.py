"""What scores a served version travels with it; each pool task's shown confidence; webhook delivery keys.

- ``iterations.model`` / ``iterations.trusted_types`` / ``iterations.label_config``: the model setting,
  the trusted types and the label config a round was trained under, so ``/predict`` and auto-labelling
  score the serving version with what made it (with ``iterations.strategy``), not with the project's
  live policy or a config edited since.
- ``task_scores.confidence``: the probability of the prediction that annotators are shown (per region
  in Label Studio), next to the pushed ``score``, which orders the queue.
- ``events.delivery``: a key per webhook delivery (action, annotation, its update time), so a second
  delivery of the same annotation event is recognised and counted once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN needs no table re-create on SQLite (a re-create of a referenced table would cascade).
    op.add_column("iterations", sa.Column("model", sa.String(500), nullable=True))
    op.add_column("iterations", sa.Column("trusted_types", sa.JSON(), nullable=True))
    op.add_column("iterations", sa.Column("label_config", sa.Text(), nullable=True))
    op.add_column("task_scores", sa.Column("confidence", sa.Float(), nullable=True))
    op.add_column("events", sa.Column("delivery", sa.String(200), nullable=True))
    op.create_index("ix_events_project_delivery", "events", ["project_id", "delivery"])


def downgrade() -> None:
    op.drop_index("ix_events_project_delivery", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("delivery")
    with op.batch_alter_table("task_scores") as batch:
        batch.drop_column("confidence")
    with op.batch_alter_table("iterations") as batch:
        batch.drop_column("label_config")
        batch.drop_column("trusted_types")
        batch.drop_column("model")

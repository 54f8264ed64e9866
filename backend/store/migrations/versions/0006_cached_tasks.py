"""Cached task inputs: a round lists only the tasks Label Studio changed since the last round.
Labels counted from events: a webhook only inserts its event (no counter row to lock); the labels
towards the next round are those of the events after `projects.counted_from_event`.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cached_tasks",
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("task_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("data", sa.JSON()),
        sa.Column("updated_at", sa.String(40), nullable=False, server_default=""),
    )


    # ADD COLUMN needs no table re-create on SQLite (a re-create of `projects` would cascade-delete rows).
    op.add_column("projects", sa.Column("counted_from_event", sa.Integer(), nullable=False, server_default="0"))
    op.create_index("ix_events_project_id", "events", ["project_id", "id"])
    _carry_counters()


def _carry_counters() -> None:
    """Keep each project's pending label count: count from its newest event on, plus one event that
    carries the old counter over (the events behind it may be fewer: the counter was the truth)."""
    conn = op.get_bind()
    now = datetime.now(timezone.utc)
    for project_id, pending in conn.execute(sa.text("SELECT id, labels_since_iteration FROM projects")).all():
        newest = conn.execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM events WHERE project_id = :p"),
                              {"p": project_id}).scalar()
        conn.execute(sa.text("UPDATE projects SET counted_from_event = :s WHERE id = :p"),
                     {"s": int(newest or 0), "p": project_id})
        if pending:
            conn.execute(sa.text("INSERT INTO events (project_id, action, n_labels, received_at) "
                                 "VALUES (:p, 'LABEL_COUNTER_CARRIED_OVER', :n, :t)"),
                         {"p": project_id, "n": int(pending), "t": now})


def downgrade() -> None:
    op.drop_index("ix_events_project_id", table_name="events")
    with op.batch_alter_table("projects", recreate="never") as batch:
        batch.drop_column("counted_from_event")
    op.drop_table("cached_tasks")

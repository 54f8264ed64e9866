"""Policy as one JSON column per project; predictions per task as JSON.

Each policy knob used to be a column of its own (and a migration each); ProjectPolicy is now the one
declaration and the row keeps it as JSON. `retrain_interval_s` stays a column as well: SQL filters
on it. Task-score predictions were a 1000-character string of JSON; they are JSON now, so a label
type whose prediction is larger than a list of names (boxes) fits.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

#: The policy columns folded into the JSON, with their types (for the downgrade).
POLICY_COLUMNS = {
    "strategy": sa.String(50),
    "queue": sa.String(50),
    "retrain_every": sa.Integer(),
    "validation_fraction": sa.Float(),
    "set_sampling": sa.Boolean(),
    "calibration": sa.String(20),
    "stop_kappa": sa.Float(),
    "stop_window": sa.Integer(),
    "keep_versions": sa.Integer(),
}


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("policy", sa.JSON(), nullable=True))
    projects = sa.table("projects", sa.column("id", sa.Integer()), sa.column("policy", sa.JSON()),
                        sa.column("retrain_interval_s", sa.Integer()),
                        *(sa.column(name, kind) for name, kind in POLICY_COLUMNS.items()))
    rows = conn.execute(sa.select(projects)).mappings().all()
    for row in rows:
        policy = {name: row[name] for name in POLICY_COLUMNS if row[name] is not None}
        policy["retrain_interval_s"] = row["retrain_interval_s"] or 0
        conn.execute(sa.update(projects).where(projects.c.id == row["id"]).values(policy=policy))
    # In place (SQLite >= 3.35 drops columns natively): re-creating `projects` on SQLite would cascade-delete
    # every iteration and task score through the foreign keys.
    with op.batch_alter_table("projects", recreate="never") as batch:
        for name in POLICY_COLUMNS:
            batch.drop_column(name)

    with op.batch_alter_table("task_scores") as batch:  # nothing references task_scores: re-creating it is safe
        batch.add_column(sa.Column("predicted_json", sa.JSON(), nullable=True))
    scores = sa.table("task_scores", sa.column("id", sa.Integer()), sa.column("predicted", sa.String(1000)),
                      sa.column("predicted_json", sa.JSON()))
    for row in conn.execute(sa.select(scores.c.id, scores.c.predicted)).mappings().all():
        value = json.loads(row["predicted"])
        conn.execute(sa.update(scores).where(scores.c.id == row["id"]).values(predicted_json=value))
    with op.batch_alter_table("task_scores") as batch:
        batch.drop_column("predicted")
        batch.alter_column("predicted_json", new_column_name="predicted", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("task_scores") as batch:
        batch.add_column(sa.Column("predicted_text", sa.String(1000), nullable=True))
    scores = sa.table("task_scores", sa.column("id", sa.Integer()), sa.column("predicted", sa.JSON()),
                      sa.column("predicted_text", sa.String(1000)))
    for row in conn.execute(sa.select(scores.c.id, scores.c.predicted)).mappings().all():
        text = json.dumps(row["predicted"])
        conn.execute(sa.update(scores).where(scores.c.id == row["id"]).values(predicted_text=text))
    with op.batch_alter_table("task_scores") as batch:
        batch.drop_column("predicted")
        batch.alter_column("predicted_text", new_column_name="predicted", existing_type=sa.String(1000),
                           nullable=False)

    with op.batch_alter_table("projects", recreate="never") as batch:
        for name, kind in POLICY_COLUMNS.items():
            batch.add_column(sa.Column(name, kind, nullable=True))
    projects = sa.table("projects", sa.column("id", sa.Integer()), sa.column("policy", sa.JSON()),
                        *(sa.column(name, kind) for name, kind in POLICY_COLUMNS.items()))
    for row in conn.execute(sa.select(projects.c.id, projects.c.policy)).mappings().all():
        stored = row["policy"] or {}
        conn.execute(sa.update(projects).where(projects.c.id == row["id"])
                     .values(**{name: stored.get(name) for name in POLICY_COLUMNS}))
    with op.batch_alter_table("projects", recreate="never") as batch:
        batch.drop_column("policy")

"""Initial schema: projects, events, iterations, task_scores, artifacts.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("label_config", sa.Text(), nullable=False),
        sa.Column("label_studio_url", sa.String(500), nullable=True),
        sa.Column("label_studio_token", sa.String(2000), nullable=True),
        sa.Column("strategy", sa.String(50), nullable=False),
        sa.Column("retrain_every", sa.Integer(), nullable=False),
        sa.Column("retrain_interval_s", sa.Integer(), nullable=False),
        sa.Column("validation_fraction", sa.Float(), nullable=False),
        sa.Column("set_sampling", sa.Boolean(), nullable=False),
        sa.Column("labels_since_iteration", sa.Integer(), nullable=False),
        sa.Column("current_version", sa.String(100), nullable=True),
        sa.Column("current_iteration_id", sa.Integer(), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        sa.Column("lease_expires_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("annotation_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("n_labels", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("received_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_events_project_received", "events", ["project_id", "received_at"])
    op.create_table(
        "iterations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("trigger", sa.String(50), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("queued_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("labels_used", sa.Integer(), nullable=True),
        sa.Column("n_train", sa.Integer(), nullable=True),
        sa.Column("n_validation", sa.Integer(), nullable=True),
        sa.Column("n_pool", sa.Integer(), nullable=True),
        sa.Column("n_skipped", sa.Integer(), nullable=True),
        sa.Column("strategy", sa.String(50), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("macro_f1", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("fit_seconds", sa.Float(), nullable=True),
        sa.Column("artifact", sa.String(500), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "number", name="uq_iterations_project_number"),
    )
    op.create_index("ix_iterations_project_status", "iterations", ["project_id", "status"])
    op.create_table(
        "task_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("iteration_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("predicted", sa.String(1000), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("uncertainty", sa.Float(), nullable=False),
        sa.Column("difficulty", sa.String(10), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["iteration_id"], ["iterations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_task_scores_iteration_rank", "task_scores", ["iteration_id", "rank"])
    op.create_table(
        "artifacts",
        sa.Column("iteration_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["iteration_id"], ["iterations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("iteration_id"),
    )


def downgrade() -> None:
    op.drop_table("artifacts")
    op.drop_index("ix_task_scores_iteration_rank", table_name="task_scores")
    op.drop_table("task_scores")
    op.drop_index("ix_iterations_project_status", table_name="iterations")
    op.drop_table("iterations")
    op.drop_index("ix_events_project_received", table_name="events")
    op.drop_table("events")
    op.drop_table("projects")

"""Trust and stopping: calibration/ECE/kappa per iteration, stopping and retention policy per project, jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("calibration", sa.String(20), nullable=False, server_default="auto"))
        batch.add_column(sa.Column("stop_kappa", sa.Float(), nullable=False, server_default="0.99"))
        batch.add_column(sa.Column("stop_window", sa.Integer(), nullable=False, server_default="3"))
        batch.add_column(sa.Column("keep_versions", sa.Integer(), nullable=False, server_default="2"))
        batch.add_column(sa.Column("active_job_id", sa.String(36), nullable=True))
    with op.batch_alter_table("iterations") as batch:
        batch.add_column(sa.Column("ece", sa.Float(), nullable=True))
        batch.add_column(sa.Column("calibration", sa.String(20), nullable=True))
        batch.add_column(sa.Column("kappa", sa.Float(), nullable=True))
        batch.add_column(sa.Column("mean_uncertainty", sa.Float(), nullable=True))
        batch.add_column(sa.Column("stop_suggested", sa.Boolean(), nullable=True))
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("stage", sa.String(200), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_jobs_project_kind", "jobs", ["project_id", "kind"])


def downgrade() -> None:
    op.drop_index("ix_jobs_project_kind", table_name="jobs")
    op.drop_table("jobs")
    with op.batch_alter_table("iterations") as batch:
        for name in ("stop_suggested", "mean_uncertainty", "kappa", "calibration", "ece"):
            batch.drop_column(name)
    with op.batch_alter_table("projects") as batch:
        for name in ("active_job_id", "keep_versions", "stop_window", "stop_kappa", "calibration"):
            batch.drop_column(name)

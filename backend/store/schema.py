"""The SQL history: typed SQLAlchemy 2 models. Alembic migrations in backend/migrations mirror them.

Everything workers must share lives here rather than in process memory: the project's current model
version, its retraining counter and policy, and the training lease that keeps one run per project.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from backend.config import ProjectPolicy


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Project(Base):
    """One Label Studio project, keyed by Label Studio's own project id."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    label_config: Mapped[str] = mapped_column(Text, default="")
    # Where to reach Label Studio when the environment names none (from /setup's hostname/access_token).
    label_studio_url: Mapped[str | None] = mapped_column(String(500))
    label_studio_token: Mapped[str | None] = mapped_column(String(2000))
    # Policy (backend.config.ProjectPolicy, declared there once): defaulted from the environment,
    # overridable through /setup extra_params. Read it through `rules`.
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=dict)
    # Mirrors policy["retrain_interval_s"]: the one knob SQL filters on (projects due by timer).
    retrain_interval_s: Mapped[int] = mapped_column(Integer, default=0)
    # New labels since the last iteration started; compared with retrain_every.
    # Legacy: the label counter was this column, updated by every webhook (a row lock each time). Labels
    # are now counted from the events after `counted_from_event`; the column stays (dropping it would
    # re-create the table on SQLite) and is no longer written.
    labels_since_iteration: Mapped[int] = mapped_column(Integer, default=0)
    # Labels counted towards the next round are those of events with a larger id (0: all events).
    counted_from_event: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The version every worker serves; switched only after a whole iteration succeeded.
    current_version: Mapped[str | None] = mapped_column(String(100))
    current_iteration_id: Mapped[int | None] = mapped_column(Integer)
    # Training lease: at most one holder per project across processes and machines.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    # The background job (auto-labelling) that holds the project's job slot; claimed by compare-and-swap.
    active_job_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    iterations: Mapped[list[Iteration]] = relationship(back_populates="project", order_by="Iteration.number")

    @property
    def rules(self) -> ProjectPolicy:
        """The validated policy (fields added since it was stored take their defaults)."""
        return ProjectPolicy.from_stored(self.policy)

    def set_rules(self, policy: ProjectPolicy) -> None:
        self.policy = policy.model_dump()
        self.retrain_interval_s = policy.retrain_interval_s


class Event(Base):
    """Every webhook received, recorded before it is acted on."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_project_received", "project_id", "received_at"),
        Index("ix_events_project_id", "project_id", "id"),  # labels since a round: a range of one project
        Index("ix_events_project_delivery", "project_id", "delivery"),  # a webhook delivered twice
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(100))
    annotation_id: Mapped[int | None] = mapped_column(Integer)
    task_id: Mapped[int | None] = mapped_column(Integer)
    # How many new labels this event counted towards the retraining threshold.
    n_labels: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None]
    # One key per annotation webhook delivery (action, annotation id, its updated_at): a repeat counts no labels.
    delivery: Mapped[str | None] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class Iteration(Base):
    """One training round: queued -> running -> succeeded | failed."""

    __tablename__ = "iterations"
    __table_args__ = (
        UniqueConstraint("project_id", "number", name="uq_iterations_project_number"),
        Index("ix_iterations_project_status", "project_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    trigger: Mapped[str] = mapped_column(String(50))
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    labels_used: Mapped[int | None] = mapped_column(Integer)
    n_train: Mapped[int | None] = mapped_column(Integer)
    n_validation: Mapped[int | None] = mapped_column(Integer)
    n_pool: Mapped[int | None] = mapped_column(Integer)
    n_skipped: Mapped[int | None] = mapped_column(Integer)
    strategy: Mapped[str | None] = mapped_column(String(50))
    # The model setting and trusted types the round trained under: the served version is scored with these
    # (and ``strategy``), whatever the live policy says later.
    model: Mapped[str | None] = mapped_column(String(500))
    trusted_types: Mapped[list[str] | None] = mapped_column(JSON)
    label_config: Mapped[str | None] = mapped_column(Text)  # the config it trained on
    queue: Mapped[str | None] = mapped_column(String(50))
    accuracy: Mapped[float | None] = mapped_column(Float)
    macro_f1: Mapped[float | None] = mapped_column(Float)
    # {"per_class": {label: {precision, recall, f1, support}}, "skipped": [...], ...}
    metrics: Mapped[dict[str, Any] | None]
    fit_seconds: Mapped[float | None] = mapped_column(Float)
    artifact: Mapped[str | None] = mapped_column(String(500))
    # Trust and stopping (copied out of `metrics` so they can be queried and plotted directly).
    ece: Mapped[float | None] = mapped_column(Float)  # expected calibration error on the validation split
    calibration: Mapped[str | None] = mapped_column(String(20))  # what was actually applied
    kappa: Mapped[float | None] = mapped_column(Float)  # agreement with the previous round's predictions
    mean_uncertainty: Mapped[float | None] = mapped_column(Float)  # of the unlabelled pool, in [0, 1]
    stop_suggested: Mapped[bool | None] = mapped_column(Boolean)

    project: Mapped[Project] = relationship(back_populates="iterations")
    scores: Mapped[list[TaskScore]] = relationship(back_populates="iteration", cascade="all, delete-orphan")


class TaskScore(Base):
    """What an iteration said about each unlabelled task, and where it put it in the queue."""

    __tablename__ = "task_scores"
    __table_args__ = (
        Index("ix_task_scores_iteration_rank", "iteration_id", "rank"),
        Index("ix_task_scores_iteration_task", "iteration_id", "task_id"),  # /predict answers pool tasks from here
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    iteration_id: Mapped[int] = mapped_column(ForeignKey("iterations.id", ondelete="CASCADE"))
    task_id: Mapped[int] = mapped_column(Integer)
    # What the model predicted, as the task type writes it (Choices: a list of label names).
    predicted: Mapped[Any] = mapped_column(JSON)
    score: Mapped[float] = mapped_column(Float)  # the ordering value pushed to Label Studio (lower = served first)
    # The probability that the shown prediction is right (what annotators read per region); None before 0007.
    confidence: Mapped[float | None] = mapped_column(Float)
    uncertainty: Mapped[float] = mapped_column(Float)
    difficulty: Mapped[str] = mapped_column(String(10))
    rank: Mapped[int] = mapped_column(Integer)  # 1 = served first
    # "active" (the strategy's order) or "validation" (the random validation stream, at random positions).
    stream: Mapped[str] = mapped_column(String(12), default="active", server_default="active")

    iteration: Mapped[Iteration] = relationship(back_populates="scores")


class CachedTask(Base):
    """A project's task input as Label Studio last listed it, so a round re-reads only what changed.

    Listing every task through Label Studio's API costs it 2-4 ms of CPU per task (12,000 tasks: 20-45 s
    per round); task data rarely changes once imported. ``updated_at`` is Label Studio's own stamp,
    kept as its ISO string: the newest one is where the next incremental listing starts.
    """

    __tablename__ = "cached_tasks"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    task_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[str] = mapped_column(String(40), default="", server_default="")


class Artifact(Base):
    """The fitted model of a succeeded iteration, in model.persistence's native format (skops for older
    files and for bring-your-own models the native format cannot express).

    Kept in the database (not only on a local disk) so a serving replica on another machine can load
    what a training worker produced; MODEL_DIR holds a local cache written by temp file + rename.
    """

    __tablename__ = "artifacts"

    iteration_id: Mapped[int] = mapped_column(
        ForeignKey("iterations.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Job(Base):
    """A background job started over HTTP or the CLI (today: auto-labelling), visible to every worker."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_project_kind", "project_id", "kind"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued, running, succeeded, failed
    params: Mapped[dict[str, Any] | None]
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    stage: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]

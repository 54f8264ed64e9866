"""The SQL store: the one place that reads and writes the history and the shared serving state.

Concurrency model (several gunicorn workers, several machines, one database):
- a trigger inserts at most one *queued* iteration per project; later triggers fold into it;
- a worker runs a queued iteration only while it holds the project's lease (an UPDATE that succeeds
  for one caller), renewed by heartbeat; a crashed holder's lease expires and its run is marked failed;
- the served version switches in the same transaction that marks the iteration succeeded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, insert, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from backend.config import ProjectPolicy
from backend.store.schema import Artifact, Event, Iteration, Job, Project, TaskScore, utcnow

MIGRATIONS = Path(__file__).parent / "migrations"


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets /predict read while a training run writes; foreign keys for the cascades.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


@dataclass(frozen=True)
class ServingState:
    """What /predict needs per request, read in one small query."""

    project_id: int
    label_config: str
    version: str | None
    iteration_id: int | None
    strategy: str
    retrain_every: int
    model: str = "auto"
    trusted_types: tuple[str, ...] = ()


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    # -- schema -------------------------------------------------------------------------------
    def upgrade(self) -> None:
        """Apply Alembic migrations up to head (idempotent)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.Session.begin() as s:
            yield s

    # -- projects -----------------------------------------------------------------------------
    def ensure_project(
        self,
        project_id: int,
        defaults: ProjectPolicy,
        *,
        label_config: str | None = None,
        label_studio_url: str | None = None,
        label_studio_token: str | None = None,
        policy: ProjectPolicy | None = None,
    ) -> Project:
        """Create the project on first sight; refresh config/connection/policy when given."""
        with self.session() as s:
            project = s.get(Project, project_id)
            if project is None:
                project = Project(id=project_id, label_config=label_config or "", labels_since_iteration=0)
                project.set_rules(policy or defaults)
                s.add(project)
            elif policy is not None:
                project.set_rules(policy)
            if label_config:
                project.label_config = label_config
            if label_studio_url:
                project.label_studio_url = label_studio_url
            if label_studio_token:
                project.label_studio_token = label_studio_token
            s.flush()
            return project

    def get_project(self, project_id: int) -> Project | None:
        with self.session() as s:
            return s.get(Project, project_id)

    def count_projects(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(Project)) or 0

    def list_projects(self) -> list[Project]:
        with self.session() as s:
            return list(s.scalars(select(Project).order_by(Project.id)))

    def serving_state(self, project_id: int) -> ServingState | None:
        with self.session() as s:
            row = s.execute(
                select(Project.label_config, Project.current_version, Project.current_iteration_id, Project.policy)
                .where(Project.id == project_id)
            ).first()
        if row is None:
            return None
        rules = ProjectPolicy.from_stored(row.policy)
        return ServingState(project_id, row.label_config, row.current_version, row.current_iteration_id,
                            rules.strategy, rules.retrain_every, rules.model, tuple(rules.trusted_types))

    # -- events -------------------------------------------------------------------------------
    def record_event(
        self,
        project_id: int | None,
        action: str,
        *,
        annotation_id: int | None = None,
        task_id: int | None = None,
        n_labels: int = 0,
        payload: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> int:
        """Store the event and add its labels to the project's counter. Returns the new counter."""
        with self.session() as s:
            s.add(
                Event(
                    project_id=project_id,
                    action=action,
                    annotation_id=annotation_id,
                    task_id=task_id,
                    n_labels=n_labels,
                    payload=payload,
                    error=error,
                )
            )
            if project_id is None:
                return 0
            if n_labels:
                s.execute(
                    update(Project)
                    .where(Project.id == project_id)
                    .values(labels_since_iteration=Project.labels_since_iteration + n_labels)
                )
            return s.scalar(select(Project.labels_since_iteration).where(Project.id == project_id)) or 0

    def events(self, project_id: int) -> list[Event]:
        with self.session() as s:
            return list(s.scalars(select(Event).where(Event.project_id == project_id).order_by(Event.id)))

    # -- iterations ---------------------------------------------------------------------------
    def request_training(self, project_id: int, trigger: str) -> Iteration:
        """Queue an iteration, or return the one already queued (triggers fold into one run)."""
        with self.session() as s:
            # Touch the project row first: on PostgreSQL this row lock serialises concurrent
            # requesters, on SQLite the write lock does, so two workers never queue two runs.
            s.execute(update(Project).where(Project.id == project_id).values(updated_at=utcnow()))
            queued = s.scalar(
                select(Iteration).where(Iteration.project_id == project_id, Iteration.status == "queued")
            )
            if queued is not None:
                return queued
            last = s.scalar(select(func.max(Iteration.number)).where(Iteration.project_id == project_id)) or 0
            iteration = Iteration(
                project_id=project_id,
                number=last + 1,
                version=f"it-{last + 1}",
                status="queued",
                trigger=trigger,
                queued_at=utcnow(),
            )
            s.add(iteration)
            s.flush()
            return iteration

    def acquire_lease(self, project_id: int, owner: str, seconds: float) -> bool:
        """Take the project's training lease if free, expired, or already ours."""
        now = utcnow()
        with self.session() as s:
            result = s.execute(
                update(Project)
                .where(
                    Project.id == project_id,
                    or_(
                        Project.lease_owner.is_(None),
                        Project.lease_expires_at < now,
                        Project.lease_owner == owner,
                    ),
                )
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds))
            )
            if result.rowcount != 1:
                return False
            # Whoever ran before us is gone (or we would not hold the lease): its run cannot finish.
            s.execute(
                update(Iteration)
                .where(Iteration.project_id == project_id, Iteration.status == "running")
                .values(status="failed", finished_at=now, error="worker lost: its training lease expired")
            )
            return True

    def renew_lease(self, project_id: int, owner: str, seconds: float) -> bool:
        with self.session() as s:
            result = s.execute(
                update(Project)
                .where(Project.id == project_id, Project.lease_owner == owner)
                .values(lease_expires_at=utcnow() + timedelta(seconds=seconds))
            )
            return result.rowcount == 1

    def release_lease(self, project_id: int, owner: str) -> None:
        with self.session() as s:
            s.execute(
                update(Project)
                .where(Project.id == project_id, Project.lease_owner == owner)
                .values(lease_owner=None, lease_expires_at=None)
            )

    def start_next_queued(self, project_id: int, owner: str) -> Iteration | None:
        """Mark the oldest queued iteration running (caller holds the lease); reset the label counter."""
        with self.session() as s:
            iteration = s.scalar(
                select(Iteration)
                .where(Iteration.project_id == project_id, Iteration.status == "queued")
                .order_by(Iteration.number)
                .limit(1)
            )
            if iteration is None:
                return None
            project = s.get(Project, project_id)
            assert project is not None
            iteration.status = "running"
            iteration.started_at = utcnow()
            iteration.worker = owner
            rules = project.rules
            iteration.strategy = rules.strategy
            iteration.queue = rules.queue
            project.labels_since_iteration = 0
            s.flush()
            return iteration

    def has_queued(self, project_id: int) -> bool:
        with self.session() as s:
            return (
                s.scalar(
                    select(func.count(Iteration.id)).where(
                        Iteration.project_id == project_id, Iteration.status == "queued"
                    )
                )
                or 0
            ) > 0

    def projects_with_queued(self) -> list[int]:
        with self.session() as s:
            return list(
                s.scalars(select(Iteration.project_id).where(Iteration.status == "queued").distinct())
            )

    def projects_due_by_timer(self, now: datetime | None = None) -> list[int]:
        """Projects with a timer whose last run is older than the interval and that have new labels."""
        now = now or utcnow()
        due: list[int] = []
        with self.session() as s:
            rows = s.execute(
                select(Project.id, Project.retrain_interval_s).where(
                    Project.retrain_interval_s > 0, Project.labels_since_iteration > 0
                )
            ).all()
            for project_id, interval in rows:
                last = s.scalar(
                    select(func.max(Iteration.queued_at)).where(Iteration.project_id == project_id)
                )
                last = as_utc(last)
                if last is None or now - last >= timedelta(seconds=interval):
                    due.append(project_id)
        return due

    def fail_iteration(self, iteration_id: int, error: str) -> None:
        with self.session() as s:
            s.execute(
                update(Iteration)
                .where(Iteration.id == iteration_id)
                .values(status="failed", error=error[:10000], finished_at=utcnow())
            )

    def succeed_iteration(
        self,
        iteration_id: int,
        *,
        artifact: bytes,
        artifact_name: str,
        scores: Sequence[dict[str, Any]],
        **fields: Any,
    ) -> None:
        """Record results and publish the version, all in one transaction (all or nothing)."""
        with self.session() as s:
            iteration = s.get(Iteration, iteration_id)
            assert iteration is not None
            for key, value in fields.items():
                setattr(iteration, key, value)
            iteration.artifact = artifact_name
            iteration.status = "succeeded"
            iteration.finished_at = utcnow()
            s.add(
                Artifact(
                    iteration_id=iteration_id,
                    sha256=hashlib.sha256(artifact).hexdigest(),
                    size=len(artifact),
                    data=artifact,
                )
            )
            if scores:
                s.execute(
                    insert(TaskScore),
                    [
                        {
                            "iteration_id": iteration_id,
                            "task_id": row["task_id"],
                            "predicted": row["predicted"],
                            "score": row["score"],
                            "uncertainty": row["uncertainty"],
                            "difficulty": row["difficulty"],
                            "rank": row["rank"],
                        }
                        for row in scores
                    ],
                )
            s.execute(
                update(Project)
                .where(Project.id == iteration.project_id)
                .values(current_version=iteration.version, current_iteration_id=iteration_id)
            )

    def iterations(self, project_id: int) -> list[Iteration]:
        with self.session() as s:
            return list(
                s.scalars(select(Iteration).where(Iteration.project_id == project_id).order_by(Iteration.number))
            )

    def get_iteration(self, iteration_id: int) -> Iteration | None:
        with self.session() as s:
            return s.get(Iteration, iteration_id)

    def task_scores(self, iteration_id: int) -> list[TaskScore]:
        with self.session() as s:
            return list(
                s.scalars(select(TaskScore).where(TaskScore.iteration_id == iteration_id).order_by(TaskScore.rank))
            )

    def artifact(self, iteration_id: int) -> Artifact | None:
        with self.session() as s:
            return s.get(Artifact, iteration_id)

    def versions(self, project_id: int | None = None) -> list[str]:
        with self.session() as s:
            query = select(Iteration.version).where(Iteration.status == "succeeded").order_by(Iteration.id)
            if project_id is not None:
                query = query.where(Iteration.project_id == project_id)
            return list(s.scalars(query))

    # ------------------------------------------------------------------ trust and stopping

    def previous_succeeded(self, project_id: int, before_number: int) -> Iteration | None:
        """The newest succeeded iteration numbered below ``before_number`` (what the pool is compared with)."""
        with self.session() as s:
            return s.scalars(
                select(Iteration)
                .where(Iteration.project_id == project_id, Iteration.status == "succeeded",
                       Iteration.number < before_number)
                .order_by(Iteration.number.desc())
                .limit(1)
            ).first()

    def recent_kappas(self, project_id: int, before_number: int, limit: int) -> list[float | None]:
        """Kappa of the last ``limit`` succeeded iterations before ``before_number``, oldest first."""
        with self.session() as s:
            rows = s.scalars(
                select(Iteration.kappa)
                .where(Iteration.project_id == project_id, Iteration.status == "succeeded",
                       Iteration.number < before_number)
                .order_by(Iteration.number.desc())
                .limit(limit)
            ).all()
        return list(reversed(rows))

    def predictions_of(self, iteration_id: int, task_ids: Sequence[int]) -> dict[int, list[str]]:
        """What an iteration predicted for the given tasks (those it scored), by task id."""
        out: dict[int, list[str]] = {}
        with self.session() as s:
            for start in range(0, len(task_ids), 900):  # stay under SQLite's bound-parameter limit
                chunk = list(task_ids[start : start + 900])
                for task_id, predicted in s.execute(
                    select(TaskScore.task_id, TaskScore.predicted).where(
                        TaskScore.iteration_id == iteration_id, TaskScore.task_id.in_(chunk)
                    )
                ):
                    out[int(task_id)] = predicted
        return out

    # ------------------------------------------------------------------ background jobs

    def create_job(self, job_id: str, project_id: int, kind: str, params: dict[str, Any], worker: str,
                   stale_seconds: float) -> Job | None:
        """Record a new job if the project's job slot is free; None (and nothing written) if a live job holds it.

        The slot is claimed by compare-and-swap on ``projects.active_job_id``: of two workers racing,
        exactly one UPDATE matches. A holder counts as live while its row is queued or running and was
        touched in the last ``stale_seconds`` (a dead worker's job frees the slot after that).
        """
        stale_before = utcnow() - timedelta(seconds=stale_seconds)
        with self.session() as s:
            project = s.get(Project, project_id)
            if project is None:
                return None
            holder_id = project.active_job_id
            holder = s.get(Job, holder_id) if holder_id else None
            if holder is not None and holder.status in ("queued", "running") and \
                    as_utc(holder.updated_at) > stale_before:  # type: ignore[operator]
                return None
            if holder is not None and holder.status in ("queued", "running"):
                holder.status, holder.error = "failed", "worker lost: no progress for too long"
                holder.finished_at = utcnow()
            claimed = s.execute(
                update(Project)
                .where(Project.id == project_id,
                       Project.active_job_id.is_(None) if holder_id is None else Project.active_job_id == holder_id)
                .values(active_job_id=job_id)
            )
            if claimed.rowcount != 1:  # another worker claimed it between our read and our update
                return None
            job = Job(id=job_id, project_id=project_id, kind=kind, status="queued", params=params, done=0,
                      worker=worker)
            s.add(job)
            s.flush()
            return job

    def active_job(self, project_id: int) -> Job | None:
        with self.session() as s:
            project = s.get(Project, project_id)
            return s.get(Job, project.active_job_id) if project and project.active_job_id else None

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Record progress or the outcome; ``status`` in succeeded/failed also stamps finished_at."""
        if fields.get("status") in ("succeeded", "failed"):
            fields.setdefault("finished_at", utcnow())
        fields["updated_at"] = utcnow()
        with self.session() as s:
            s.execute(update(Job).where(Job.id == job_id).values(**fields))

    def get_job(self, job_id: str) -> Job | None:
        with self.session() as s:
            return s.get(Job, job_id)

    def autolabelled_versions(self, project_id: int) -> set[str]:
        """Model versions whose predictions an auto-labelling run relied on (never pruned from Label Studio)."""
        with self.session() as s:
            results = s.scalars(
                select(Job.result).where(Job.project_id == project_id, Job.kind == "autolabel",
                                         Job.status == "succeeded")
            ).all()
        return {r["model_version"] for r in results if isinstance(r, dict) and r.get("model_version")}

    def latest_job(self, project_id: int, kind: str, status: str | None = None) -> Job | None:
        with self.session() as s:
            query = select(Job).where(Job.project_id == project_id, Job.kind == kind)
            if status is not None:
                query = query.where(Job.status == status)
            return s.scalars(query.order_by(Job.created_at.desc()).limit(1)).first()

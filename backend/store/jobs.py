"""Background jobs (auto-labelling): rows, progress, and the project's one job slot."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from backend.store.base import Database, as_utc
from backend.store.schema import Job, Project, utcnow


class JobStore(Database):
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


    def claim_job(self, job_id: str, owner: str) -> bool:
        """Compare-and-swap a queued job to running for ``owner``; False if anyone claimed it first."""
        with self.session() as s:
            result = s.execute(
                update(Job).where(Job.id == job_id, Job.status == "queued")
                .values(status="running", stage="starting", worker=owner, updated_at=utcnow())
            )
            return result.rowcount == 1

    def queued_jobs(self, older_than_seconds: float = 0.0) -> list[Job]:
        """Jobs nobody has claimed yet, oldest first (created at least ``older_than_seconds`` ago)."""
        cutoff = utcnow() - timedelta(seconds=older_than_seconds)
        with self.session() as s:
            return list(s.scalars(select(Job).where(Job.status == "queued", Job.created_at <= cutoff)
                                  .order_by(Job.created_at)))

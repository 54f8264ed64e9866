"""Training rounds: the queue (triggers fold into one run), the lease, the version switch, the history."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from backend.config import ProjectPolicy
from backend.store.base import Database, as_utc
from backend.store.projects import counted_from, waiting_labels
from backend.store.schema import Artifact, Event, Iteration, Project, TaskScore, utcnow

#: How a round whose trainer died is marked (the start of its error).
LOST_ROUND = "worker lost"
#: ``min_labels`` of :meth:`IterationStore.request_training` meaning the project's own ``retrain_every``.
RETRAIN_EVERY = -1


class IterationStore(Database):
    # -- iterations ---------------------------------------------------------------------------
    def request_training(self, project_id: int, trigger: str, min_labels: int = 0) -> Iteration | None:
        """Queue an iteration, or return the one already queued (triggers fold into one run).

        ``min_labels``: queue only if at least this many labels still wait for a round (:data:`RETRAIN_EVERY`:
        the project's ``retrain_every``, read here), checked under the same lock as the queueing. A trigger
        decides it is due from a count read without that lock (a settle, the ticker); a round can start in
        between and take those labels, and a second trigger that saw the same labels would then queue a round
        with nothing new to train on. Checked here, it queues nothing and gets None.
        """
        with self.session() as s:
            # Touch the project row first: on PostgreSQL this row lock serialises concurrent
            # requesters (and the round start that moves counted_from_event), on SQLite the write
            # lock does, so two workers never queue two runs.
            s.execute(update(Project).where(Project.id == project_id).values(updated_at=utcnow()))
            queued = s.scalar(
                select(Iteration).where(Iteration.project_id == project_id, Iteration.status == "queued")
            )
            if queued is not None:
                return queued
            if min_labels == RETRAIN_EVERY:
                project = s.get(Project, project_id)
                min_labels = project.rules.retrain_every if project is not None else 1
            if min_labels > 0 and (s.scalar(waiting_labels(project_id, counted_from(project_id))) or 0) < min_labels:
                return None
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
                .values(status="failed", finished_at=now, error=f"{LOST_ROUND}: its training lease expired")
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
        """Mark the oldest queued iteration running (caller holds the lease); reset the label counter.

        The switch is a compare-and-swap (queued -> running), so even two callers that both hold the
        lease (two threads of one process share its owner name) never start the same iteration twice.
        """
        with self.session() as s:
            iteration = s.scalar(
                select(Iteration)
                .where(Iteration.project_id == project_id, Iteration.status == "queued")
                .order_by(Iteration.number)
                .limit(1)
            )
            if iteration is None:
                return None
            claimed = s.execute(
                update(Iteration).where(Iteration.id == iteration.id, Iteration.status == "queued")
                .values(status="running", started_at=utcnow(), worker=owner)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:
                return None
            s.refresh(iteration)
            project = s.get(Project, project_id)
            assert project is not None
            rules = project.rules
            iteration.strategy = rules.strategy
            iteration.queue = rules.queue
            # The labels counted so far go into this round; count from the newest event on.
            project.counted_from_event = int(s.scalar(
                select(func.coalesce(func.max(Event.id), 0)).where(Event.project_id == project_id)) or 0)
            s.flush()
            return iteration

    def projects_with_lost_rounds(self, now: datetime | None = None) -> list[int]:
        """Projects with a running round whose trainer's lease has expired (or is gone): a dead trainer."""
        now = now or utcnow()
        with self.session() as s:
            return list(s.scalars(
                select(Iteration.project_id).join(Project, Project.id == Iteration.project_id)
                .where(Iteration.status == "running",
                       or_(Project.lease_owner.is_(None), Project.lease_expires_at < now))
                .distinct()
            ))

    def queue_retry_of_lost_round(self, project_id: int) -> Iteration | None:
        """Queue one retry of the newest round that failed because its trainer died (caller holds the lease).

        Nothing when a run is already queued (it covers the same labels), or when the lost round was
        itself a retry: a round that kills its trainer every time must not loop.
        """
        with self.session() as s:
            last = s.scalar(select(Iteration).where(Iteration.project_id == project_id)
                            .order_by(Iteration.number.desc()).limit(1))
            if last is None or last.status != "failed" or not (last.error or "").startswith(LOST_ROUND):
                return None
            if last.trigger == "retry":
                return None
        return self.request_training(project_id, "retry")

    def failed_versions(self, project_id: int, limit: int) -> list[str]:
        """The newest failed rounds' versions (their predictions may have reached Label Studio)."""
        with self.session() as s:
            return list(s.scalars(select(Iteration.version).where(
                Iteration.project_id == project_id, Iteration.status == "failed"
            ).order_by(Iteration.number.desc()).limit(limit)))

    def version_statuses(self, project_id: int) -> list[tuple[str, str]]:
        """``(version, status)`` of every round of the project, oldest first (no history columns read)."""
        with self.session() as s:
            return [(v, st) for v, st in s.execute(
                select(Iteration.version, Iteration.status).where(Iteration.project_id == project_id)
                .order_by(Iteration.number))]

    def record_backfill(self, iteration_id: int, record: dict[str, Any]) -> None:
        """Keep what the between-rounds backfill did for a round in its history (``metrics.backfill``)."""
        with self.session() as s:
            iteration = s.get(Iteration, iteration_id)
            if iteration is not None:
                iteration.metrics = {**(iteration.metrics or {}), "backfill": dict(record)}

    def projects_to_backfill(self) -> list[tuple[int, dict[str, Any] | None]]:
        """Projects with no round queued or running whose serving round's backfill is not done, each with
        that round's backfill record so far (None: never tried).

        One small query: the serving rounds' ``metrics.backfill`` (a JSON path), not their whole history.
        """
        other = aliased(Iteration)
        busy = select(other.id).where(other.project_id == Project.id, other.status.in_(("queued", "running"))).exists()
        with self.session() as s:
            rows = s.execute(select(Project.id, Iteration.metrics["backfill"])
                             .join(Iteration, Iteration.id == Project.current_iteration_id).where(~busy)).all()
        return [(int(p), b if isinstance(b, dict) else None) for p, b in rows
                if not (isinstance(b, dict) and b.get("status") == "done")]

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
                    Project.retrain_interval_s > 0,
                    select(Event.id).where(Event.project_id == Project.id, Event.n_labels > 0,
                                           Event.id > Project.counted_from_event).exists(),
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

    def projects_due_by_labels(self, grace_seconds: float = 30.0, now: datetime | None = None) -> list[int]:
        """Projects with ``retrain_every`` labels since their last round and no round queued or running.

        A webhook queues the round itself right after answering; this is the safety net for a process
        that died in between (the labels are counted from the events, so nothing is lost). Only events
        older than ``grace_seconds`` count here, so the ticker never races a live webhook's own settling.
        """
        due: list[int] = []
        cutoff = (now or utcnow()) - timedelta(seconds=grace_seconds)
        with self.session() as s:
            for project_id, policy, start in self._without_rounds(s):
                pending = s.scalar(waiting_labels(project_id, start or 0).where(Event.received_at <= cutoff)) or 0
                if pending and pending >= ProjectPolicy.from_stored(policy).retrain_every:
                    due.append(int(project_id))
        return due

    @staticmethod
    def _without_rounds(s: Any) -> Sequence[Any]:
        """(id, policy, counted_from_event) of the projects with no round queued or running."""
        busy = select(Iteration.id).where(Iteration.project_id == Project.id,
                                          Iteration.status.in_(("queued", "running"))).exists()
        return s.execute(select(Project.id, Project.policy, Project.counted_from_event).where(~busy)).all()

    def labels_received_since(self, project_id: int, since: datetime) -> int:
        """Labels the project's webhooks brought from ``since`` on (how fast the crowd labels, per round)."""
        with self.session() as s:
            return int(s.scalar(select(func.coalesce(func.sum(Event.n_labels), 0))
                                .where(Event.project_id == project_id, Event.received_at >= as_utc(since))) or 0)

    def projects_idle_with_labels(self, now: datetime | None = None) -> list[int]:
        """Projects with labels waiting (fewer than ``retrain_every``) and no new one for ``idle_train_s``.

        Without this, labels that arrived while a round ran, or the last few before a break, would wait
        for the next ``retrain_every`` labels: the model serving after the last label would not know them.
        """
        due: list[int] = []
        now = now or utcnow()
        with self.session() as s:
            for project_id, policy, start in self._without_rounds(s):
                quiet = ProjectPolicy.from_stored(policy).idle_train_s
                if quiet <= 0:
                    continue
                pending, newest = s.execute(
                    select(func.coalesce(func.sum(Event.n_labels), 0), func.max(Event.received_at))
                    .where(Event.project_id == project_id, Event.id > (start or 0), Event.n_labels > 0)).one()
                if pending and newest is not None and as_utc(newest) <= now - timedelta(seconds=quiet):
                    due.append(int(project_id))
        return due

    def fail_iteration(self, iteration_id: int, error: str, failure: dict[str, Any] | None = None) -> None:
        """Record a failed round; ``failure`` is the user-fixable problem behind it, when there is one
        (backend/labelstudio/diagnosis.py), kept as ``metrics.failure`` for /setup and the status page."""
        values: dict[str, Any] = {"status": "failed", "error": error[:10000], "finished_at": utcnow()}
        if failure is not None:
            values["metrics"] = {"failure": failure}
        with self.session() as s:
            s.execute(update(Iteration).where(Iteration.id == iteration_id).values(**values))

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
                            "confidence": row.get("confidence"),
                            "uncertainty": row["uncertainty"],
                            "difficulty": row["difficulty"],
                            "rank": row["rank"],
                            "stream": row.get("stream", "active"),
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

    def latest_failure(self, project_id: int) -> tuple[str, dict[str, Any]] | None:
        """The newest finished round's version and ``metrics.failure`` when that round failed for a
        user-fixable reason (None when it succeeded, or failed for another reason)."""
        with self.session() as s:
            row = s.execute(
                select(Iteration.id, Iteration.status, Iteration.version)
                .where(Iteration.project_id == project_id, Iteration.status.in_(("succeeded", "failed")))
                .order_by(Iteration.number.desc()).limit(1)
            ).first()
            if row is None or row.status != "failed":
                return None
            metrics = s.scalar(select(Iteration.metrics).where(Iteration.id == row.id)) or {}
        failure = metrics.get("failure") if isinstance(metrics, dict) else None
        return (row.version, failure) if isinstance(failure, dict) else None

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

    def artifact_digest(self, iteration_id: int) -> str | None:
        """An artefact's sha256 without its bytes: a worker with a good local copy never reads the blob."""
        with self.session() as s:
            return s.scalar(select(Artifact.sha256).where(Artifact.iteration_id == iteration_id))

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

    def predictions_of(self, iteration_id: int, task_ids: Sequence[int]) -> dict[int, Any]:
        """What an iteration predicted for the given tasks (those it scored), by task id."""
        return {task_id: row[0] for task_id, row in self.scored_tasks(iteration_id, task_ids).items()}

    def scored_tasks(self, iteration_id: int,
                     task_ids: Sequence[int]) -> dict[int, tuple[Any, float, float | None]]:
        """``task id -> (prediction, pushed score, confidence)`` for the given tasks the iteration scored.

        Keyed by one iteration id, so a caller asking for the serving version's scores can never get
        another version's. Tasks with the same prediction share one decoded object (see
        :func:`_decoded_scores`), which callers must not mutate.
        """
        out: dict[int, tuple[Any, float, float | None]] = {}
        decoded: dict[str | None, Any] = {}
        with self.session() as s:
            for start in range(0, len(task_ids), 900):  # stay under SQLite's bound-parameter limit
                chunk = list(task_ids[start : start + 900])
                out.update(_decoded_scores(s.execute(_SCORED.where(
                    TaskScore.iteration_id == iteration_id, TaskScore.task_id.in_(chunk))), decoded))
        return out

    def all_scored_tasks(self, iteration_id: int) -> dict[int, tuple[Any, float, float | None]]:
        """:meth:`scored_tasks` for every task the iteration scored (a serving worker keeps these in memory)."""
        with self.session() as s:
            return _decoded_scores(s.execute(_SCORED.where(TaskScore.iteration_id == iteration_id)), {})


#: /predict's read of a round's rows: the prediction as JSON text, decoded by :func:`_decoded_scores`.
_SCORED = select(TaskScore.task_id, cast(TaskScore.predicted, Text), TaskScore.score, TaskScore.confidence)


def _decoded_scores(rows: Any, decoded: dict[str | None, Any]) -> dict[int, tuple[Any, float, float | None]]:
    """``task id -> (prediction, score, confidence)``, each distinct prediction text decoded once (memo:
    ``decoded``); the confidence is None in rows written before it was stored.

    Why: this is /predict's path for pool tasks, and a classifier's predictions take a handful of
    distinct values; the JSON column's per-row decoding was a third of a 1,000-task request.
    """
    out: dict[int, tuple[Any, float, float | None]] = {}
    for task_id, text, score, confidence in rows:
        if text not in decoded:
            decoded[text] = None if text is None else json.loads(text)
        out[int(task_id)] = (decoded[text], float(score), None if confidence is None else float(confidence))
    return out

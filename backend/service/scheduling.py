"""Training jobs: when to train, and making sure only one run per project happens anywhere.

Triggers (webhook threshold, START_TRAINING, timer, CLI) only *queue* an iteration in SQL. Draining
the queue needs the project's lease, so with many gunicorn workers and training boxes sharing one
database exactly one of them trains at a time; triggers that arrive meanwhile fold into one queued
follow-up run. Requests never train: they queue and start a background thread, then return.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from backend.labelstudio.gateway import LabelStudioError
from backend.service.training import IterationRunner
from backend.store import Store
from backend.store.iterations import RETRAIN_EVERY
from backend.store.schema import Iteration, utcnow

log = logging.getLogger(__name__)

#: Old versions whose predictions one pause between rounds deletes from Label Studio while a crowd labels.
PRUNE_PER_PAUSE = 2
#: While labels arrived within this many seconds (a crowd at work) old versions wait, up to PRUNE_BACKLOG of them,
#: and the backfill waits; with none for that long, annotators have paused.
PRUNE_QUIET_S = 20.0
PRUNE_BACKLOG = 8
#: A backfill that failed (Label Studio unreachable, say) is tried again after this many seconds.
BACKFILL_RETRY_S = 60.0


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Heartbeat:
    """Renews the lease in the background while a run is in progress."""

    def __init__(self, renew: Callable[[], bool], every: float) -> None:
        self._renew = renew
        self._every = every
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._loop, name="labelloop-heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._every):
            try:
                if not self._renew():
                    self.lost = True
            except Exception:  # a database hiccup: try again next beat, the lease has slack
                log.exception("lease renewal failed")

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class TrainingJobs:
    """Queues training everywhere; trains only where ``trains`` (roles "all" and "worker", not "serve")."""

    def __init__(self, store: Store, runner: IterationRunner, lease_seconds: float, owner: str | None = None,
                 trains: bool = True) -> None:
        self.store = store
        self.runner = runner
        self.lease_seconds = lease_seconds
        self.owner = owner or worker_identity()
        self.trains = trains
        self._active: dict[int, threading.Thread] = {}
        # One drain per project per process: its threads share one lease owner name.
        self._guards: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- triggers -----------------------------------------------------------------------------
    def trigger(self, project_id: int, reason: str, background: bool = True, min_labels: int = 0) -> Iteration | None:
        """Queue a run (or join the queued one) and start draining; returns the queued iteration.

        None when ``min_labels`` labels no longer wait (a round started meanwhile and took them).
        """
        iteration = self.store.request_training(project_id, reason, min_labels)
        if background and self.trains:
            self.kick(project_id)
        return iteration

    def kick(self, project_id: int) -> None:
        """Drain the project's queue in a background thread, unless this process already is."""
        with self._lock:
            thread = self._active.get(project_id)
            if thread is not None and thread.is_alive():
                return
            thread = threading.Thread(
                target=self._drain_logged, args=(project_id,), name=f"labelloop-train-{project_id}", daemon=True
            )
            self._active[project_id] = thread
            thread.start()

    def _drain_logged(self, project_id: int) -> None:
        try:
            self.drain(project_id)
        except Exception:
            log.exception("training drain for project %s crashed", project_id)

    def drain(self, project_id: int) -> list[int]:
        """Run queued iterations while holding the lease; returns the ids this call ran.

        Release-then-recheck closes the race with a trigger that queued a run while we held the
        lease: that trigger's own attempt to take the lease failed, so we must look again.
        """
        ran: list[int] = []
        guard = self._drain_guard(project_id)
        if not guard.acquire(blocking=False):
            return ran  # another thread of this process drains the project: it shares our lease
        try:
            return self._drain_held(project_id, ran)
        finally:
            guard.release()

    def _drain_guard(self, project_id: int) -> threading.Lock:
        with self._lock:
            return self._guards.setdefault(project_id, threading.Lock())

    def _drain_held(self, project_id: int, ran: list[int]) -> list[int]:
        while not self._stop.is_set():
            if not self.store.acquire_lease(project_id, self.owner, self.lease_seconds):
                return ran
            try:
                with Heartbeat(self._renew(project_id), self.lease_seconds / 4) as beat:
                    while not self._stop.is_set():
                        iteration = self.store.start_next_queued(project_id, self.owner)
                        if iteration is None:
                            break
                        log.info("project %s: training %s (%s)", project_id, iteration.version, iteration.trigger)
                        self.runner.run(iteration, still_owner=lambda b=beat: not b.lost and self._renew(project_id)())
                        ran.append(iteration.id)
                    if not self._stop.is_set() and not self.store.has_queued(project_id):
                        self._between_rounds(project_id, lambda b=beat: b.lost)
            finally:
                self.store.release_lease(project_id, self.owner)
            if not self.store.has_queued(project_id):  # a trigger may have queued a round meanwhile
                return ran
        return ran

    def _between_rounds(self, project_id: int, lease_lost: Callable[[], bool]) -> None:
        """Bring Label Studio in line with the serving version while no round waits: old versions' predictions
        deleted (:meth:`IterationRunner.prune_versions`), then, once annotators have paused, the serving
        version's predictions given to the rest of the pool (:meth:`IterationRunner.backfill`).

        Runs under the training lease, so no round starts anywhere meanwhile, and stops between two calls to
        Label Studio as soon as a round is queued (the drain then runs it). While annotators are at work (a
        label within PRUNE_QUIET_S) each DELETE and push would hold Label Studio's write lock under their
        "next task" and submits: old versions then wait until PRUNE_BACKLOG of them have piled up (and go
        PRUNE_PER_PAUSE at a time), and the backfill waits for the pause (the ticker starts it then).
        """
        def should_stop() -> bool:
            return self._stop.is_set() or lease_lost() or self.store.has_queued(project_id)

        quiet = self.store.labels_received_since(project_id, utcnow() - timedelta(seconds=PRUNE_QUIET_S)) == 0
        try:
            self.runner.prune_versions(project_id, limit=None if quiet else PRUNE_PER_PAUSE,
                                       min_backlog=0 if quiet else PRUNE_BACKLOG, should_stop=should_stop)
        except Exception:  # housekeeping: the new version is already live; the next pause tries again
            log.exception("project %s: deleting old predictions from Label Studio failed", project_id)
        if not quiet or should_stop():
            return
        try:
            self.runner.backfill(project_id, should_stop)
        except LabelStudioError as exc:  # recorded on the round; the ticker tries again after BACKFILL_RETRY_S
            log.warning("project %s: giving the pool the serving version's predictions failed: %s", project_id, exc)
        except Exception:
            log.exception("project %s: giving the pool the serving version's predictions failed", project_id)

    def _renew(self, project_id: int) -> Callable[[], bool]:
        return lambda: self.store.renew_lease(project_id, self.owner, self.lease_seconds)

    # -- periodic work ------------------------------------------------------------------------
    def tick(self, background: bool = True) -> None:
        """Queue timer-due runs, recover rounds whose trainer died, pick up queued runs nobody drains, and
        bring Label Studio in line with the serving version once annotators pause (:meth:`projects_to_tidy`).

        ``background=False`` drains in the calling thread (``labelloop worker --once``).
        """
        if not self.trains:
            return
        # Each due-ness is read without the queueing's lock; the queueing checks it again under the lock
        # (min_labels), so a round that started meanwhile and took the labels is not followed by an empty one.
        for project_id in self.store.projects_due_by_timer():
            self.trigger(project_id, "timer", background=background, min_labels=1)
        for project_id in self.store.projects_due_by_labels():  # a webhook's own trigger was lost
            self.trigger(project_id, "labels", background=background, min_labels=RETRAIN_EVERY)
        for project_id in self.store.projects_idle_with_labels():  # the last labels before a break
            self.trigger(project_id, "idle", background=background, min_labels=1)
        for project_id in self.store.projects_with_lost_rounds():
            self.recover(project_id)
        for project_id in self.store.projects_with_queued():
            if background:
                self.kick(project_id)
            else:
                self.drain(project_id)
        for project_id in self.projects_to_tidy():  # annotators paused after a round that pushed only its head
            if background:
                self.kick(project_id)
            else:
                self.drain(project_id)

    def projects_to_tidy(self) -> list[int]:
        """Projects between rounds whose serving version has not reached the whole pool in Label Studio yet,
        now that annotators paused (no label for PRUNE_QUIET_S); a failed try waits BACKFILL_RETRY_S."""
        quiet_since = utcnow() - timedelta(seconds=PRUNE_QUIET_S)
        due = []
        for project_id, record in self.store.projects_to_backfill():
            if record and record.get("status") == "failed" and not _older_than(record.get("updated_at"),
                                                                                 BACKFILL_RETRY_S):
                continue
            if self.store.labels_received_since(project_id, quiet_since) == 0:
                due.append(project_id)
        return due

    def recover(self, project_id: int) -> None:
        """Fail a round whose trainer died (its lease expired), queue one retry, and clean up after it.

        Taking the expired lease is what marks the dead run failed (see IterationStore.acquire_lease); the
        retry is queued at most once per lost round, so a round that kills its trainer every time stops.
        """
        if not self.store.acquire_lease(project_id, self.owner, self.lease_seconds):
            return  # a live trainer holds it, or another worker is recovering right now
        try:
            retry = self.store.queue_retry_of_lost_round(project_id)
            if retry is not None:
                log.warning("project %s: a round's trainer died; queued %s to retry it", project_id, retry.version)
        finally:
            self.store.release_lease(project_id, self.owner)
        try:
            self.runner.prune_versions(project_id)
        except Exception:  # housekeeping; the next round tries again
            log.exception("project %s: cleaning up after a lost round failed", project_id)

    def start_ticker(self, every: float, tick: Callable[[], None] | None = None) -> None:
        """Call ``tick`` (default: :meth:`tick`) every ``every`` seconds in a daemon thread until :meth:`stop`."""
        if self._ticker is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    (tick or self.tick)()
                except Exception:
                    log.exception("training ticker failed")

        self._ticker = threading.Thread(target=loop, name="labelloop-ticker", daemon=True)
        self._ticker.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for thread in list(self._active.values()):
            thread.join(timeout=timeout)


def _older_than(stamp: Any, seconds: float) -> bool:
    """Whether an ISO time stamp (a record's ``updated_at``) lies more than ``seconds`` back (unreadable: yes)."""
    try:
        return (utcnow() - datetime.fromisoformat(str(stamp))).total_seconds() > seconds
    except (TypeError, ValueError):  # unreadable, or without a zone
        return True


class JobBusy(RuntimeError):
    """Another live background job holds the project's job slot."""


class RecordedJobs:
    """Background jobs other than training (auto-labelling), with their progress in SQL.

    Any worker can answer ``GET /jobs/<id>`` because progress and outcome live in the jobs table, not
    in the memory of the worker that runs the thread. One live job per project (a slot in SQL); a job
    whose worker died stops its heartbeat, is reported stale and its slot taken over after
    ``stale_seconds``; the work itself is resumable (see backend/autolabel.py).
    """

    def __init__(self, store: Store, progress_every: float = 0.5, heartbeat_seconds: float = 10.0,
                 stale_seconds: float = 60.0, runs_jobs: bool = True) -> None:
        self.store = store
        # False on serve-only replicas: jobs stay queued in SQL until a worker claims them.
        self.runs_jobs = runs_jobs
        self.progress_every = progress_every
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_seconds = stale_seconds
        self.owner = worker_identity()

    def create(self, project_id: int, kind: str, params: dict[str, Any]) -> str:
        """Record a queued job; raises JobBusy while another live job holds the project (any worker)."""
        job_id = str(uuid.uuid4())
        if self.store.create_job(job_id, project_id, kind, params, self.owner, self.stale_seconds) is None:
            active = self.store.active_job(project_id)
            what = f"{active.kind} job {active.id} is {active.status}" if active else "another job is starting"
            raise JobBusy(f"{what} for project {project_id}; try again when it has finished")
        return job_id

    def run(self, job_id: str, work: Callable[[Callable[[str, int, int | None], None]], dict[str, Any]]) -> None:
        """Claim the queued job and run ``work(progress)``, recording progress (throttled) and the outcome.

        The claim is a compare-and-swap (queued -> running), so a job is run once even when the process
        that created it and a worker's ticker both try.
        """
        if not self.store.claim_job(job_id, self.owner):
            return
        last = [0.0]

        def progress(stage: str, done: int, total: int | None) -> None:
            now = time.monotonic()
            if now - last[0] >= self.progress_every or (total is not None and done >= total):
                last[0] = now
                self.store.update_job(job_id, stage=stage, done=done, total=total)

        try:
            # A heartbeat keeps the job's row fresh through long silent steps (reading many tasks), so
            # other workers do not take a live job for a dead one.
            with Heartbeat(lambda: self.store.update_job(job_id) or True, self.heartbeat_seconds):
                result = work(progress)
        except Exception as exc:  # recorded on the job; the worker carries on
            log.exception("job %s failed", job_id)
            self.store.update_job(job_id, status="failed", error=f"{type(exc).__name__}: {exc}")
            return
        self.store.update_job(job_id, status="succeeded", stage="done", result=result)

    def start(self, job_id: str, work: Callable[[Callable[[str, int, int | None], None]], dict[str, Any]]) -> None:
        """Run the job in a background thread here, or leave it queued for a worker (serve-only role)."""
        if not self.runs_jobs:
            return
        threading.Thread(target=self.run, args=(job_id, work), name=f"labelloop-job-{job_id[:8]}",
                         daemon=True).start()

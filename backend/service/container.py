"""The composition root: what the web app and the CLI share inside one process.

Store, model cache, training scheduler, background jobs and Label Studio gateways are built here,
once, from the process settings; routes and commands only call into it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backend.config import Settings
from backend.labelstudio import images
from backend.labelstudio.diagnosis import Problem, diagnose
from backend.labelstudio.gateway import LabelStudioGateway
from backend.labelstudio.images import ImageFetcher
from backend.service.access import Forbidden, same_secret
from backend.service.autolabel import AutolabelRequest, run_autolabel
from backend.service.journal import WebhookJournal
from backend.service.poolcache import PoolAnswers
from backend.service.scheduling import RecordedJobs, TrainingJobs
from backend.service.training import IterationRunner
from backend.store import Store
from backend.store.artifacts import ModelStore
from backend.store.iterations import RETRAIN_EVERY
from backend.store.schema import Iteration, Project

log = logging.getLogger("labelloop")

# Label Studio gives /setup 3 s: a token check must leave room for the rest.
TOKEN_CHECK_SECONDS = 1.5
# How long /setup's verdict on a project's connection and last round is reused.
PROBLEM_CHECK_SECONDS = 20.0
# A queued job older than this is picked up by any training process (its creator may be a serve-only replica,
# or may have died before starting it); younger ones are left to the process that created them.
JOB_PICKUP_SECONDS = 2.0
# A webhook's settle (count the labels, queue a round) waits this long for the webhooks right behind it.
SETTLE_DELAY = 0.25
# Operators (people, scripts) prove themselves with this header when LABELLOOP_OPERATOR_TOKEN is set.
OPERATOR_HEADER = "X-Labelloop-Operator-Token"


class Services:
    """What the routes share inside one process: store, model cache, jobs, Label Studio gateways."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        # Image fetches (SSRF guard, deadline, byte and pixel caps) follow these settings process-wide.
        images.configure(images.ImagePolicy.from_settings(settings))
        self.models = ModelStore(store, settings.model_dir)
        self.pool_answers = PoolAnswers(store.all_scored_tasks)
        self._gateways: dict[tuple[str, str], LabelStudioGateway] = {}
        # Late-bound so tests (and future plug-ins) can swap how a project reaches Label Studio.
        runner = IterationRunner(store, self.models, lambda p: self.gateway_for(p), settings.push_batch_size,
                                 settings.push_limit)
        # Webhooks that arrived while the database was down (see journal.py); the web layer installs
        # how to replay one (`replay_webhook`), so this layer never imports it.
        self.journal = WebhookJournal(Path(settings.model_dir) / "journal")
        self.replay_webhook: Callable[[dict[str, Any]], None] | None = None
        self.is_outage: Callable[[Exception], bool] = lambda exc: False
        trains = settings.role != "serve"
        self.jobs = TrainingJobs(store, runner, settings.lease_seconds, trains=trains)
        self.background = RecordedJobs(store, runs_jobs=trains)
        # One thread per process settles webhooks after their answer (threads start on first use: after fork).
        self._after_webhooks = ThreadPoolExecutor(max_workers=1, thread_name_prefix="labelloop-webhooks")
        # Per project, what the settle waiting on that thread will cover: (START_TRAINING seen, when the first
        # of its webhooks was answered).
        self._unsettled: dict[int, tuple[bool, float]] = {}
        self._unsettled_lock = threading.Lock()
        # /setup's last verdict per project: (when, problem or None).
        self._problems: dict[int, tuple[float, Problem | None]] = {}

    def after_webhook(self, project_id: int, start_training: bool) -> None:
        """Settle a recorded webhook after its answer: count the project's labels, queue a round if due.

        A settle waits SETTLE_DELAY after the first webhook it covers, and webhooks that arrive meanwhile
        join it rather than queue their own: it counts from the events table, so one count covers them
        all. Under a storm this keeps the settling thread (which shares the CPU, and the GIL, with the
        answers) to a few counts a second instead of one per webhook: the settles were the ack's p99
        on PostgreSQL (120-140 ms against 40-60 ms without them). A round is queued a quarter second later.
        """
        with self._unsettled_lock:
            waiting = self._unsettled.get(project_id)
            self._unsettled[project_id] = (start_training or bool(waiting and waiting[0]),
                                           waiting[1] if waiting else time.monotonic())
        if waiting is None:
            self._after_webhooks.submit(self._settle_unsettled, project_id)

    def _settle_unsettled(self, project_id: int) -> None:
        with self._unsettled_lock:
            first = self._unsettled[project_id][1]
        time.sleep(max(0.0, first + SETTLE_DELAY - time.monotonic()))  # let the webhooks right behind join
        with self._unsettled_lock:
            start_training, _ = self._unsettled.pop(project_id)
        self._settle_logged(project_id, start_training)

    def settle_webhook(self, project_id: int, start_training: bool) -> Iteration | None:
        """Queue a round for START_TRAINING, or when ``retrain_every`` labels arrived since the last one.

        The count is read first without a lock (most webhooks queue nothing), then checked again, with the
        project's ``retrain_every``, under the project row's lock as the round is queued (``RETRAIN_EVERY``):
        if a round started in between and took the labels (another worker's settle or the ticker got there
        first), nothing is queued. Two settles that both saw enough labels queue one round between them.
        """
        if start_training:
            return self.jobs.trigger(project_id, "START_TRAINING")
        state = self.store.serving_state(project_id)
        if state is not None and self.store.labels_since(project_id) >= state.retrain_every:
            return self.jobs.trigger(project_id, "labels", min_labels=RETRAIN_EVERY)
        return None

    def wait_settled(self, timeout: float = 30.0) -> None:
        """Return once every webhook answered so far has been settled (the settling thread runs in order)."""
        self._after_webhooks.submit(lambda: None).result(timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Settle what was answered, then stop training threads (tests, and a clean shutdown)."""
        self._after_webhooks.shutdown(wait=True)
        self.jobs.stop(timeout)

    def _settle_logged(self, project_id: int, start_training: bool) -> None:
        try:
            self.settle_webhook(project_id, start_training)
        except Exception:  # the next webhook, or the ticker (projects_due_by_labels), settles it again
            log.exception("project %s: queueing a round after a webhook failed", project_id)

    def tick(self, background: bool = True) -> None:
        """One round of background duties: training (timers, lost rounds, queued runs) and queued jobs.

        ``background=False`` does the work in the calling thread (``labelloop worker --once``).
        """
        if self.replay_webhook is not None:
            self.journal.replay(self.replay_webhook, self.is_outage)
        self.jobs.tick(background)
        if not self.background.runs_jobs:
            return
        for job in self.store.queued_jobs(older_than_seconds=JOB_PICKUP_SECONDS if background else 0.0):
            if job.kind == "autolabel":
                work = self.autolabel_work(AutolabelRequest(project_id=job.project_id, **(job.params or {})))
                if background:
                    self.background.start(job.id, work)
                else:
                    self.background.run(job.id, work)

    def autolabel_work(self, request: AutolabelRequest):  # type: ignore[no-untyped-def]
        """The auto-labelling run as a job body (``work(progress) -> outcome``)."""

        def work(progress):  # type: ignore[no-untyped-def]
            return run_autolabel(request, store=self.store, models=self.models,
                                 gateway_for=lambda p: self.gateway_for(p),
                                 push_batch_size=self.settings.push_batch_size, progress=progress)

        return work

    def gateway_for(self, project: Project) -> LabelStudioGateway:
        url = self.settings.label_studio_url or project.label_studio_url or ""
        key = self.settings.label_studio_api_key or project.label_studio_token or ""
        gateway = self._gateways.get((url, key))
        if gateway is None:
            source = ("LABEL_STUDIO_API_KEY" if self.settings.label_studio_api_key
                      else "the project creator's token that Label Studio sends to /setup")
            gateway = self._gateways[(url, key)] = LabelStudioGateway(url, key, key_source=source)
        return gateway

    def setup_problem(self, project_id: int) -> Problem | None:
        """Why labelloop cannot work for the project right now, for /setup to answer Label Studio with.

        Two checks, each remembered for :data:`PROBLEM_CHECK_SECONDS` (Label Studio calls /setup before
        every batch of predictions): the Label Studio URL and key labelloop will use, read live with a short
        timeout (a slow answer proves nothing and refuses nothing); and the newest finished round, when it
        failed for a reason the user must fix (it may have run on a worker elsewhere).
        """
        now = time.monotonic()
        cached = self._problems.get(project_id)
        if cached is not None and now - cached[0] < PROBLEM_CHECK_SECONDS:
            return cached[1]
        project = self.store.get_project(project_id)
        problem = self._connection_problem(project) if project is not None else None
        if problem is None:
            failed = self.store.latest_failure(project_id)
            recorded = Problem.from_json(failed[1]) if failed else None
            if recorded is not None and failed is not None:
                problem = Problem(recorded.kind, f"the last training round ({failed[0]}) failed: {recorded.message}",
                                  f"{recorded.fix}; then press Start training in Label Studio's model settings")
        self._problems[project_id] = (now, problem)
        return problem

    def _connection_problem(self, project: Project) -> Problem | None:
        try:
            gateway = self.gateway_for(project)
        except Exception:  # nothing configured yet: /setup itself brings the connection
            return None
        try:
            gateway.label_config(project.id, timeout=TOKEN_CHECK_SECONDS)
        except Exception as exc:
            problem = diagnose(exc, gateway.url, gateway.key_source)
            if problem is not None:
                log.warning("project %s: %s", project.id, problem.text())
            return problem
        return None

    def is_operator(self, headers: Any) -> bool:
        return same_secret(headers.get(OPERATOR_HEADER), self.settings.operator_token)

    def verify_token(self, url: str, token: str, project_id: int) -> bool:
        """Whether the Label Studio at ``url`` accepts ``token`` for the project (a short read of it)."""
        try:
            LabelStudioGateway(url, token, timeout=TOKEN_CHECK_SECONDS).label_config(project_id)
        except Exception as exc:  # refused, unreachable or malformed: not proven
            log.warning("project %s: Label Studio at %s refused a /setup token: %s", project_id, url, exc)
            return False
        return True

    def ensure_project(self, project_id: int, **fields: Any) -> Project:
        """Create the project on first sight, within the cap on project rows; refresh it otherwise."""
        if self.store.get_project(project_id) is None and self.store.count_projects() >= self.settings.max_projects:
            raise Forbidden(f"this backend already serves {self.settings.max_projects} projects "
                            "(LABELLOOP_MAX_PROJECTS): no new project rows", field="project")
        return self.store.ensure_project(project_id, self.settings.policy, **fields)

    def image_loader(self, project_id: int) -> ImageFetcher:
        project = self.store.get_project(project_id)
        if project is None:
            return ImageFetcher(self.settings.label_studio_url)
        try:
            gateway = self.gateway_for(project)
        except Exception:  # no Label Studio configured: data URIs and public URLs still work
            return ImageFetcher(self.settings.label_studio_url)
        return ImageFetcher(gateway.url, gateway.auth_headers)



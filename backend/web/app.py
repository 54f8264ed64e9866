"""The HTTP app: Label Studio's ML-backend protocol plus the iteration history, as a Flask factory.

Stateless per process by design: the served version, counters and policy are read from SQL on each
request, so any number of gunicorn workers (on any number of machines) answer the same way.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Flask, Response, g, jsonify, request
from pydantic import ValidationError

from backend.config import ProjectPolicy, Settings
from backend.labelstudio.gateway import LabelStudioGateway
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.labelconfig import ChoiceSpec, UnsupportedConfig, parse_label_config
from backend.labelstudio.tasks import BadInput, annotation_labels, make_prediction, task_inputs
from backend.service.access import Forbidden, SetupRequest, authorize_setup, same_secret
from backend.service.autolabel import AutolabelError, AutolabelRequest, run_autolabel
from backend.service.scheduling import JobBusy, RecordedJobs, TrainingJobs
from backend.service.training import IterationRunner
from backend.store import Store, as_utc
from backend.store.artifacts import ModelStore
from backend.store.schema import Iteration, Job, Project, utcnow
from model.uncertainty import confidence_score, get_strategy, uncertainty_for

log = logging.getLogger("labelloop")

UNTRAINED = "untrained"
# Routes for people and scripts rather than Label Studio: guarded by LABELLOOP_OPERATOR_TOKEN when set.
OPERATOR_PREFIXES = ("/projects/", "/jobs/")
OPERATOR_HEADER = "X-Labelloop-Operator-Token"
# Annotation webhooks and how many new labels each one brings.
# Label Studio gives /setup 3 s: a token check must leave room for the rest.
TOKEN_CHECK_SECONDS = 2.0
LABEL_EVENTS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"}

try:
    __version__ = version("labelloop")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"


@functools.lru_cache(maxsize=64)
def cached_spec(config_xml: str) -> ChoiceSpec:
    """Label configs repeat on every request; parse each distinct one once per process."""
    return parse_label_config(config_xml)


def project_id_from(value: Any, field: str) -> int:
    """Label Studio sends "<id>.<created_at epoch>" in /setup and /predict, a dict in webhooks."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.split(".", 1)[0].isdigit():
        return int(value.split(".", 1)[0])
    raise BadInput(f"'{field}' must name a Label Studio project (an id, or \"<id>.<timestamp>\")", field=field)


def json_body() -> dict[str, Any]:
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict):
        raise BadInput("request body must be a JSON object", field="body")
    return body


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def iteration_json(it: Iteration, full: bool = True) -> dict[str, Any]:
    """One iteration for the JSON API. ``full=False`` leaves out the per-task validation arrays (kept in
    SQL for auto-labelling; they grow with the validation split and would repeat in every listing)."""
    return {
        "number": it.number,
        "version": it.version,
        "status": it.status,
        "trigger": it.trigger,
        "error": it.error,
        "worker": it.worker,
        "queued_at": _iso(it.queued_at),
        "started_at": _iso(it.started_at),
        "finished_at": _iso(it.finished_at),
        "labels_used": it.labels_used,
        "n_train": it.n_train,
        "n_validation": it.n_validation,
        "n_pool": it.n_pool,
        "n_skipped": it.n_skipped,
        "strategy": it.strategy,
        "queue": it.queue,
        "accuracy": it.accuracy,
        "macro_f1": it.macro_f1,
        "metrics": it.metrics if full or not it.metrics else {k: v for k, v in it.metrics.items() if k != "validation"},
        "fit_seconds": it.fit_seconds,
        "ece": it.ece,
        "calibration": it.calibration,
        "kappa": it.kappa,
        "mean_uncertainty": it.mean_uncertainty,
        "stop_suggested": it.stop_suggested,
    }


def job_json(job: Job, stale_seconds: float | None = None) -> dict[str, Any]:
    """One background job for the JSON API; ``stale`` says an unfinished job has stopped reporting
    (its worker probably died: rerun it, the work is resumable)."""
    updated = as_utc(job.updated_at)
    stale = bool(stale_seconds is not None and job.status in ("queued", "running") and updated is not None
                 and (utcnow() - updated).total_seconds() > stale_seconds)
    return {
        "id": job.id,
        "project": job.project_id,
        "kind": job.kind,
        "status": job.status,
        "stage": job.stage,
        "done": job.done,
        "total": job.total,
        "params": job.params,
        "result": job.result,
        "error": job.error,
        "worker": job.worker,
        "created_at": _iso(job.created_at),
        "updated_at": _iso(job.updated_at),
        "finished_at": _iso(job.finished_at),
        "stale": stale,
    }


class Services:
    """What the routes share inside one process: store, model cache, jobs, Label Studio gateways."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.models = ModelStore(store, settings.model_dir)
        self._gateways: dict[tuple[str, str], LabelStudioGateway] = {}
        # Late-bound so tests (and future plug-ins) can swap how a project reaches Label Studio.
        runner = IterationRunner(store, self.models, lambda p: self.gateway_for(p), settings.push_batch_size)
        self.jobs = TrainingJobs(store, runner, settings.lease_seconds)
        self.background = RecordedJobs(store)

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
            gateway = self._gateways[(url, key)] = LabelStudioGateway(url, key)
        return gateway

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


def create_app(settings: Settings | None = None, *, start_jobs: bool = True, migrate: bool = False) -> Flask:
    """Build the app. `start_jobs` runs the background ticker (timers, orphaned queued runs)."""
    settings = settings or Settings.from_env()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    store = Store(settings.resolved_database_url)
    if migrate:
        store.upgrade()
    services = Services(settings, store)
    if start_jobs:
        services.jobs.start_ticker(settings.tick_seconds)

    app = Flask("labelloop")
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["labelloop"] = services

    @app.before_request
    def _auth() -> Response | None:
        g.started = time.perf_counter()
        user, password = settings.basic_auth_user, settings.basic_auth_pass
        if not user or not password:
            return _operator_gate()
        auth = request.authorization
        ok = (
            auth is not None
            and hmac.compare_digest((auth.username or "").encode(), user.encode())
            and hmac.compare_digest((auth.password or "").encode(), password.encode())
        )
        if ok:
            return _operator_gate()
        log.warning("401 %s %s: missing or wrong basic auth", request.method, request.path)
        resp = jsonify(error="authentication required (HTTP basic auth)")
        resp.status_code = 401
        resp.headers["WWW-Authenticate"] = 'Basic realm="labelloop"'
        return resp

    def _operator_gate() -> Response | None:
        """Operator routes (history, scores, auto-labelling, jobs) need the operator token when one is set."""
        if not settings.operator_token or not request.path.startswith(OPERATOR_PREFIXES):
            return None
        if services.is_operator(request.headers):
            return None
        log.warning("401 %s %s: missing or wrong operator token", request.method, request.path)
        return jsonify(error=f"operator route: send the operator token in the {OPERATOR_HEADER} header",
                       field=OPERATOR_HEADER), 401

    @app.errorhandler(BadInput)
    def _bad_input(exc: BadInput) -> tuple[Response, int]:
        log.warning("400 %s %s: %s", request.method, request.path, exc)
        return jsonify(error=str(exc), field=exc.field), 400

    @app.errorhandler(Forbidden)
    def _forbidden(exc: Forbidden) -> tuple[Response, int]:
        log.warning("403 %s %s: %s", request.method, request.path, exc)
        return jsonify(error=str(exc), field=exc.field), 403

    @app.errorhandler(UnsupportedConfig)
    def _unsupported(exc: UnsupportedConfig) -> tuple[Response, int]:
        log.warning("422 %s %s: %s", request.method, request.path, exc)
        return jsonify(error=str(exc), field="schema"), 422

    @app.get("/health")
    def health() -> Response:
        return jsonify(status="UP", model_class="labelloop", version=__version__)

    @app.post("/setup")
    def setup() -> Response:
        body = json_body()
        project_id = project_id_from(body.get("project"), "project")
        schema = body.get("schema")
        if not isinstance(schema, str):
            raise BadInput("'schema' (the label config XML) is required", field="schema")
        cached_spec(schema)  # refuse unsupported configs now, with the tag named
        policy = _policy_from(body.get("extra_params"), settings.policy)
        project = store.get_project(project_id)
        ask = SetupRequest(
            project_id=project_id,
            hostname=_str_or_none(body.get("hostname")),
            token=_str_or_none(body.get("access_token")),
            changes_policy=bool(project and policy
                                and ProjectPolicy.model_validate(project, from_attributes=True) != policy),
            changes_schema=bool(project and project.label_config and project.label_config != schema),
            operator=services.is_operator(request.headers),
        )
        env_url = settings.label_studio_url if settings.label_studio_url and settings.label_studio_api_key else None
        connection = authorize_setup(ask, project, env_url=env_url, verify=services.verify_token)
        services.ensure_project(project_id, label_config=schema, label_studio_url=connection.url,
                                label_studio_token=connection.token, policy=policy)
        state = store.serving_state(project_id)
        return jsonify(model_version=(state.version if state and state.version else UNTRAINED))

    @app.post("/predict")
    def predict() -> Response:
        body = json_body()
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadInput("'tasks' must be a list of task objects", field="tasks")
        if not tasks:
            return jsonify(results=[], model_version=UNTRAINED)
        project_id = project_id_from(body.get("project") or tasks[0].get("project"), "project")
        state = store.serving_state(project_id)
        config = body.get("label_config") if isinstance(body.get("label_config"), str) else None
        if state is None:
            services.ensure_project(project_id, label_config=config)
            state = store.serving_state(project_id)
            assert state is not None
        spec = cached_spec(config or state.label_config)
        if state.version is None or state.iteration_id is None:
            # No model yet: no predictions, and Label Studio keeps its normal order. Text tasks are
            # still checked so a malformed task is reported now rather than after the first round.
            if spec.modality == "text":
                task_inputs(tasks, spec, None)
            return jsonify(results=[], model_version=UNTRAINED)
        loader = services.image_loader(project_id) if spec.modality == "image" else None
        inputs = task_inputs(tasks, spec, loader)
        estimator = services.models.load(project_id, state.version, state.iteration_id)
        probs, uncertainty = uncertainty_for(estimator, get_strategy(state.strategy), inputs,
                                             multi_label=spec.multi_label)
        labels = estimator.labels_from_proba(probs)
        scores = confidence_score(uncertainty)
        results = [make_prediction(spec, lab, s, state.version) for lab, s in zip(labels, scores, strict=True)]
        return jsonify(results=results, model_version=state.version)

    @app.post("/webhook")
    def webhook() -> tuple[Response, int] | Response:
        body = json_body()
        action = body.get("action")
        if not isinstance(action, str) or not action:
            raise BadInput("'action' is required", field="action")
        project = body.get("project")
        if project is None:
            store.record_event(None, action, payload=_trim(body), error="no project in payload")
            return jsonify(status="ignored", reason="no 'project' in payload")
        project_id = project_id_from(project, "project")
        state = store.serving_state(project_id)
        if state is None:
            config = project.get("label_config") if isinstance(project, dict) else None
            try:
                services.ensure_project(project_id, label_config=config)
            except Forbidden as exc:  # over the project cap: keep the event, refuse the project
                store.record_event(None, action, payload=_trim(body), error=str(exc))
                raise
            state = store.serving_state(project_id)
            assert state is not None
        annotation = body.get("annotation") if isinstance(body.get("annotation"), dict) else {}
        task = body.get("task") if isinstance(body.get("task"), dict) else {}
        n_labels, error = _count_labels(action, body, annotation, state.label_config)
        counter = store.record_event(
            project_id,
            action,
            annotation_id=annotation.get("id"),
            task_id=task.get("id") or annotation.get("task"),
            n_labels=n_labels,
            payload=_trim(body),
            error=str(error) if error else None,
        )
        if error is not None:
            raise error
        queued = None
        if action == "START_TRAINING":
            queued = services.jobs.trigger(project_id, "START_TRAINING")
        elif n_labels and counter >= state.retrain_every:
            queued = services.jobs.trigger(project_id, "labels")
        return jsonify(status="ok", action=action, labels_since_iteration=counter,
                       queued=queued.version if queued else None)

    @app.get("/versions")
    def versions() -> Response:
        project = request.args.get("project")
        project_id = project_id_from(project, "project") if project else None
        return jsonify(versions=store.versions(project_id))

    @app.get("/metrics")
    def metrics() -> Response:
        projects = []
        for p in store.list_projects():
            its = store.iterations(p.id)
            projects.append(
                {
                    "project": p.id,
                    "current_version": p.current_version,
                    "labels_since_iteration": p.labels_since_iteration,
                    "iterations": {s: sum(1 for i in its if i.status == s) for s in ("queued", "running", "succeeded",
                                                                                    "failed")},
                }
            )
        return jsonify(projects=projects)

    @app.get("/projects/<int:project_id>/iterations")
    def iterations(project_id: int) -> tuple[Response, int] | Response:
        project = store.get_project(project_id)
        if project is None:
            return jsonify(error=f"project {project_id} is unknown", field="project_id"), 404
        return jsonify(
            project=project_id,
            current_version=project.current_version,
            policy=ProjectPolicy.model_validate(project, from_attributes=True).model_dump(),
            iterations=[iteration_json(it, full=request.args.get("full") in ("1", "true"))
                        for it in store.iterations(project_id)],
        )

    @app.get("/projects/<int:project_id>/iterations/<int:number>/scores")
    def iteration_scores(project_id: int, number: int) -> tuple[Response, int] | Response:
        match = [it for it in store.iterations(project_id) if it.number == number]
        if not match:
            return jsonify(error=f"project {project_id} has no iteration {number}", field="number"), 404
        limit = request.args.get("limit", default=100, type=int)
        rows = store.task_scores(match[0].id)[: max(0, limit)]
        return jsonify(
            version=match[0].version,
            strategy=match[0].strategy,
            scores=[
                {
                    "task_id": r.task_id,
                    "rank": r.rank,
                    "score": r.score,
                    "uncertainty": r.uncertainty,
                    "difficulty": r.difficulty,
                    "predicted": json.loads(r.predicted),
                }
                for r in rows
            ],
        )

    @app.post("/projects/<int:project_id>/autolabel")
    def autolabel(project_id: int) -> tuple[Response, int]:
        """Start auto-labelling in the background (for project webhooks); poll GET /jobs/<id>."""
        body = request.get_json(silent=True, force=True) if request.content_length else {}
        if not isinstance(body, dict):
            raise BadInput("request body must be a JSON object", field="body")
        if store.get_project(project_id) is None:
            return jsonify(error=f"project {project_id} is unknown", field="project_id"), 404
        params = _autolabel_params(body)
        state = store.serving_state(project_id)
        if state is None or state.version is None:
            return jsonify(error=f"project {project_id} has no trained model yet: label some tasks or send "
                                 "START_TRAINING first"), 409
        try:
            auto_request = AutolabelRequest(project_id=project_id, **params)
        except AutolabelError as exc:
            raise BadInput(str(exc), field="body") from exc
        try:
            job_id = services.background.create(project_id, "autolabel", params)
        except JobBusy as exc:
            return jsonify(error=str(exc)), 409
        services.background.start(job_id, services.autolabel_work(auto_request))
        return jsonify(job_id=job_id, status="queued", url=f"/jobs/{job_id}"), 202

    @app.get("/jobs/<job_id>")
    def job(job_id: str) -> tuple[Response, int] | Response:
        found = store.get_job(job_id)
        if found is None:
            return jsonify(error=f"job {job_id} is unknown", field="job_id"), 404
        return jsonify(job_json(found, stale_seconds=services.background.stale_seconds))

    @app.after_request
    def _log(resp: Response) -> Response:
        if request.path != "/health":
            elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
            log.debug("%s %s -> %s in %.1f ms", request.method, request.path, resp.status_code, elapsed)
        return resp

    return app


def _autolabel_params(body: dict[str, Any]) -> dict[str, Any]:
    """Validate the autolabel request body: target_precision, view | tasks, create_view."""
    allowed = ("target_precision", "confidence_level", "view", "tasks", "create_view")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadInput(f"unknown field(s) {unknown}; allowed: {', '.join(allowed)}", field=unknown[0])
    params: dict[str, Any] = {}
    if "target_precision" in body:
        value = body["target_precision"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            raise BadInput("'target_precision' must be a number in (0, 1]", field="target_precision")
        params["target_precision"] = float(value)
    if body.get("confidence_level") is not None:
        value = body["confidence_level"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise BadInput("'confidence_level' must be a number in (0, 1)", field="confidence_level")
        params["confidence_level"] = float(value)
    if body.get("view") is not None:
        if isinstance(body["view"], bool) or not isinstance(body["view"], int):
            raise BadInput("'view' must be a Data Manager tab (view) id", field="view")
        params["view"] = body["view"]
    if body.get("tasks") is not None:
        tasks = body["tasks"]
        if not isinstance(tasks, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tasks):
            raise BadInput("'tasks' must be a list of task ids", field="tasks")
        params["task_ids"] = tasks
    if "create_view" in body:
        if not isinstance(body["create_view"], bool):
            raise BadInput("'create_view' must be true or false", field="create_view")
        params["create_view"] = body["create_view"]
    if "view" in params and "task_ids" in params:
        raise BadInput("give 'view' or 'tasks', not both", field="tasks")
    return params


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _policy_from(extra: Any, defaults: ProjectPolicy) -> ProjectPolicy | None:
    """`/setup` extra_params (object or JSON string) override the environment's policy defaults."""
    if extra in (None, "", {}):
        return None
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except json.JSONDecodeError as exc:
            raise BadInput(f"'extra_params' must be a JSON object: {exc}", field="extra_params") from exc
    if not isinstance(extra, dict):
        raise BadInput("'extra_params' must be a JSON object", field="extra_params")
    try:
        return ProjectPolicy.model_validate({**defaults.model_dump(), **extra})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "extra_params." + ".".join(str(p) for p in first["loc"])
        raise BadInput(f"{field}: {first['msg']}", field=field) from exc


def _count_labels(action: str, body: dict[str, Any], annotation: dict[str, Any],
                  label_config: str) -> tuple[int, BadInput | None]:
    """New labels an event brings; a label outside the config is reported (and not counted)."""
    if action not in LABEL_EVENTS:
        return 0, None
    if action == "ANNOTATIONS_CREATED":
        items = body.get("annotations")
        return (len(items) if isinstance(items, list) else 0), None
    if annotation.get("was_cancelled"):
        return 0, None
    if not label_config:
        return 1, None
    try:
        spec = cached_spec(label_config)
        labels = annotation_labels(annotation, spec)
    except UnsupportedConfig:
        return 1, None
    except BadInput as exc:
        return 0, exc
    return (1 if labels is not None else 0), None


def _trim(body: dict[str, Any]) -> dict[str, Any]:
    """The event as stored: the full project object (config, stats) is reduced to its id."""
    out = dict(body)
    if isinstance(out.get("project"), dict):
        out["project"] = {"id": out["project"].get("id")}
    return out

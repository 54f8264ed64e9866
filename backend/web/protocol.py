"""Blueprint: the routes Label Studio calls (/health, /setup, /predict, /webhook, /versions, /metrics).

Stateless per request: the served version, counters and policy are read from SQL each time, so any
number of gunicorn workers (on any number of machines) answer the same way.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from backend.labelstudio.labelconfig import UnsupportedConfig, cached_spec
from backend.labelstudio.tasks import BadInput
from backend.service.access import Forbidden, SetupRequest, authorize_setup
from backend.service.container import Services
from backend.service.models import check_custom_model
from backend.service.predict import UNTRAINED, predict_tasks
from backend.web.params import json_body, policy_from, project_id_from, str_or_none, trim
from model.custom import FactoryError

bp = Blueprint("protocol", __name__)

# Annotation webhooks and how many new labels each one brings.
LABEL_EVENTS = {"ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"}

try:
    __version__ = version("labelloop")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"


def services() -> Services:
    return current_app.extensions["labelloop"]


@bp.get("/health")
def health() -> Response:
    return jsonify(status="UP", model_class="labelloop", version=__version__)


@bp.post("/setup")
def setup() -> tuple[Response, int] | Response:
    svc = services()
    body = json_body()
    project_id = project_id_from(body.get("project"), "project")
    schema = body.get("schema")
    if not isinstance(schema, str):
        raise BadInput("'schema' (the label config XML) is required", field="schema")
    cached_spec(schema)  # refuse unsupported configs now, with the tag named
    policy = policy_from(body.get("extra_params"), svc.settings.policy)
    project = svc.store.get_project(project_id)
    if policy is not None and (project is None or project.rules.model != policy.model):
        try:  # a bring-your-own model is refused now, not at the first round
            check_custom_model(policy, svc.settings.allowed_models)
        except FactoryError as exc:
            return jsonify(error=str(exc), field="extra_params.model"), 422
    ask = SetupRequest(
        project_id=project_id,
        hostname=str_or_none(body.get("hostname")),
        token=str_or_none(body.get("access_token")),
        changes_policy=bool(project and policy and project.rules != policy),
        changes_schema=bool(project and project.label_config and project.label_config != schema),
        operator=svc.is_operator(request.headers),
    )
    settings = svc.settings
    env_url = settings.label_studio_url if settings.label_studio_url and settings.label_studio_api_key else None
    connection = authorize_setup(ask, project, env_url=env_url, verify=svc.verify_token)
    svc.ensure_project(project_id, label_config=schema, label_studio_url=connection.url,
                       label_studio_token=connection.token, policy=policy)
    state = svc.store.serving_state(project_id)
    return jsonify(model_version=(state.version if state and state.version else UNTRAINED))


@bp.post("/predict")
def predict() -> Response:
    body = json_body()
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise BadInput("'tasks' must be a list of task objects", field="tasks")
    if not tasks:
        return jsonify(results=[], model_version=UNTRAINED)
    project_id = project_id_from(body.get("project") or tasks[0].get("project"), "project")
    config = body.get("label_config") if isinstance(body.get("label_config"), str) else None
    results, model_version = predict_tasks(services(), project_id, tasks, config)
    return jsonify(results=results, model_version=model_version)


@bp.post("/webhook")
def webhook() -> tuple[Response, int] | Response:
    svc = services()
    body = json_body()
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadInput("'action' is required", field="action")
    project = body.get("project")
    if project is None:
        svc.store.record_event(None, action, payload=trim(body), error="no project in payload")
        return jsonify(status="ignored", reason="no 'project' in payload")
    project_id = project_id_from(project, "project")
    state = svc.store.serving_state(project_id)
    if state is None:
        config = project.get("label_config") if isinstance(project, dict) else None
        try:
            svc.ensure_project(project_id, label_config=config)
        except Forbidden as exc:  # over the project cap: keep the event, refuse the project
            svc.store.record_event(None, action, payload=trim(body), error=str(exc))
            raise
        state = svc.store.serving_state(project_id)
        assert state is not None
    annotation = body.get("annotation") if isinstance(body.get("annotation"), dict) else {}
    task = body.get("task") if isinstance(body.get("task"), dict) else {}
    n_labels, error = count_labels(action, body, annotation, state.label_config)
    counter = svc.store.record_event(
        project_id, action, annotation_id=annotation.get("id"), task_id=task.get("id") or annotation.get("task"),
        n_labels=n_labels, payload=trim(body), error=str(error) if error else None,
    )
    if error is not None:
        raise error
    queued = None
    if action == "START_TRAINING":
        queued = svc.jobs.trigger(project_id, "START_TRAINING")
    elif n_labels and counter >= state.retrain_every:
        queued = svc.jobs.trigger(project_id, "labels")
    return jsonify(status="ok", action=action, labels_since_iteration=counter,
                   queued=queued.version if queued else None)


@bp.get("/versions")
def versions() -> Response:
    project = request.args.get("project")
    project_id = project_id_from(project, "project") if project else None
    return jsonify(versions=services().store.versions(project_id))


@bp.get("/metrics")
def metrics() -> Response:
    store = services().store
    projects = []
    for p in store.list_projects():
        its = store.iterations(p.id)
        projects.append({
            "project": p.id,
            "current_version": p.current_version,
            "labels_since_iteration": p.labels_since_iteration,
            "iterations": {s: sum(1 for i in its if i.status == s)
                           for s in ("queued", "running", "succeeded", "failed")},
        })
    return jsonify(projects=projects)


def count_labels(action: str, body: dict[str, Any], annotation: dict[str, Any],
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
        labels = spec.target(annotation)
    except UnsupportedConfig:
        return 1, None
    except BadInput as exc:
        return 0, exc
    return (1 if labels is not None else 0), None

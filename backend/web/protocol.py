"""Blueprint: the routes Label Studio calls (/health, /setup, /predict, /webhook, /versions, /metrics).

Stateless per request: the served version, counters and policy are read from SQL each time, so any
number of gunicorn workers (on any number of machines) answer the same way.
"""

from __future__ import annotations

import hashlib
import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import RequestEntityTooLarge

from backend.errors import NotReady
from backend.labelstudio.labelconfig import UnsupportedConfig, cached_spec
from backend.labelstudio.tasks import BadInput
from backend.service.access import Connection, Forbidden, SetupRequest, authorize_setup
from backend.service.container import Services
from backend.service.models import check_custom_model, check_strategy
from backend.service.predict import UNTRAINED, predict_tasks
from backend.store import Store
from backend.web.params import (
    ACTION_CHARS,
    TOKEN_CHARS,
    TooLarge,
    json_body,
    label_config_field,
    object_or_empty,
    optional_id,
    policy_from,
    project_id_from,
    raw_excerpt,
    text_field,
    trim,
    url_field,
)
from model.custom import FactoryError

bp = Blueprint("protocol", __name__)
log = logging.getLogger("labelloop")

# What a /setup refusal names, by the kind of problem (backend/labelstudio/diagnosis.py).
PROBLEM_FIELDS = {"auth": "label_studio_api_key", "not_found": "label_studio_url", "unreachable": "label_studio_url",
                  "refused": "model_version"}

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
    schema = label_config_field(body.get("schema"), "schema", required=True)
    assert schema is not None
    hostname = url_field(body.get("hostname"), "hostname")
    token = text_field(body.get("access_token"), "access_token", max_chars=TOKEN_CHARS)
    spec = cached_spec(schema)  # refuse unsupported configs now, with the tag named
    policy = policy_from(body.get("extra_params"), svc.settings.policy)
    project = svc.store.get_project(project_id)
    check_strategy(spec, policy or (project.rules if project else svc.settings.policy))
    if policy is not None and (project is None or project.rules.model != policy.model):
        try:  # a bring-your-own model is refused now, not at the first round
            check_custom_model(policy, svc.settings.allowed_models, spec)
        except FactoryError as exc:
            return jsonify(error=str(exc), field="extra_params.model"), 422
    ask = SetupRequest(
        project_id=project_id,
        hostname=hostname,
        token=token,
        changes_policy=bool(project and policy and project.rules != policy),
        changes_schema=bool(project and project.label_config and project.label_config != schema),
        operator=svc.is_operator(request.headers),
    )
    settings = svc.settings
    env_url = settings.label_studio_url if settings.label_studio_url and settings.label_studio_api_key else None
    connection = authorize_setup(ask, project, env_url=env_url, verify=svc.verify_token)
    if env_url is not None:  # stored too, so `labelloop` commands on this database reach Label Studio as we do
        connection = Connection(env_url, settings.label_studio_api_key)
    svc.ensure_project(project_id, label_config=schema, label_studio_url=connection.url,
                       label_studio_token=connection.token, policy=policy)
    problem = svc.setup_problem(project_id)
    if problem is not None:  # Label Studio shows this in its connection dialog and marks the model "Error"
        raise NotReady(problem.text(), field=PROBLEM_FIELDS.get(problem.kind, "label_studio"))
    state = svc.store.serving_state(project_id)
    return jsonify(model_version=(state.version if state and state.version else UNTRAINED))


@bp.after_request
def _reason_for_label_studio(response: Response) -> Response:
    """Label Studio reads a failed /setup only as ``str(requests.HTTPError)``, "422 Client Error: UNPROCESSABLE
    ENTITY for url: ...", and shows that in its connection dialog ("Reason: ...") and keeps it as the ML
    backend's error: the reason phrase is the one part of our answer it shows, so it carries the message."""
    if request.path == "/setup" and response.status_code >= 400 and response.is_json:
        message = (response.get_json(silent=True) or {}).get("error")
        if isinstance(message, str) and message:
            response.status = f"{response.status_code} {reason_phrase(message)}"
    return response


def reason_phrase(message: str, limit: int = 900) -> str:
    """``message`` as an HTTP reason phrase: printable ASCII on one line (RFC 9112), bounded."""
    flat = " ".join(message.split())
    text = "".join(c if " " <= c <= "~" else "?" for c in flat)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@bp.post("/predict")
def predict() -> Response:
    svc = services()
    body = json_body()
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        raise BadInput("'tasks' must be a list of task objects", field="tasks")
    limit = svc.settings.max_predict_tasks
    if len(tasks) > limit:  # Label Studio gives up after 100 s; a worker's memory grows with the batch
        raise TooLarge(f"{len(tasks)} tasks in one request: send at most {limit} tasks per request "
                       "(LABELLOOP_MAX_PREDICT_TASKS)", field="tasks")
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise BadInput(f"'tasks[{i}]' must be a task object", field=f"tasks[{i}]")
        # A Label Studio id (32-bit, what the round's rows are keyed by), or none: a task not stored yet.
        optional_id(task.get("id"), f"tasks[{i}].id")
    if not tasks:
        return jsonify(results=[], model_version=UNTRAINED)
    if body.get("project"):
        project_id = project_id_from(body["project"], "project")
    else:
        project_id = project_id_from(tasks[0].get("project"), "tasks[0].project")
    config = label_config_field(body.get("label_config"), "label_config")
    results, model_version = predict_tasks(svc, project_id, tasks, config)
    return jsonify(results=results, model_version=model_version)


@bp.post("/webhook")
def webhook() -> tuple[Response, int] | Response:
    """Record the event, count its labels, queue a round when due.

    Every webhook leaves exactly one events row, whatever happens to it: one that cannot be read or
    is refused is recorded with project NULL, the reason and what could be kept of its payload, then
    answered 4xx, so nothing Label Studio sent is lost without a trace.
    """
    svc = services()
    record = WebhookRecord(svc.store, svc.settings.max_event_bytes)
    body: dict[str, Any] | None = None
    try:
        body = json_body()
        return jsonify(handle_webhook(svc, record, body))
    except Exception as exc:
        if body is not None and database_unavailable(exc):
            # Label Studio never resends a webhook: keep it on disk and replay it when the database is back.
            svc.journal.append(body)
            log.warning("database unavailable (%s): webhook journaled for replay", type(exc).__name__)
            return jsonify(status="journaled", reason="database unavailable; kept and replayed when it is back"), 202
        record.failed(exc)
        raise


def replay_webhook(svc: Services, body: dict[str, Any]) -> None:
    """A journaled webhook, handled as it would have been live (errors recorded the same way)."""
    record = WebhookRecord(svc.store, svc.settings.max_event_bytes)
    try:
        handle_webhook(svc, record, body)
    except Exception as exc:
        if not database_unavailable(exc):
            record.failed(exc)
        raise


def database_unavailable(exc: BaseException) -> bool:
    """The database could not be reached or was busy (as opposed to a bad request or a bug)."""
    return isinstance(exc, (OperationalError, InterfaceError))


def handle_webhook(svc: Services, record: WebhookRecord, body: dict[str, Any]) -> dict[str, Any]:
    record.parsed(body)
    action = text_field(body.get("action"), "action", max_chars=ACTION_CHARS, required=True)
    assert action is not None
    project = body.get("project")
    if project is None:
        record.record(None, error="no project in payload")
        return {"status": "ignored", "reason": "no 'project' in payload"}
    project_id = project_id_from(project, "project")
    config = label_config_field(project.get("label_config"), "project.label_config") \
        if isinstance(project, dict) else None
    # A bulk event (Label Studio's "predictions to annotations") carries lists under the singular keys.
    bulk = action == "ANNOTATIONS_CREATED"
    annotation = {} if bulk and isinstance(body.get("annotation"), list) else object_or_empty(body, "annotation")
    task = {} if bulk and isinstance(body.get("task"), list) else object_or_empty(body, "task")
    annotation_id = optional_id(annotation.get("id"), "annotation.id")
    annotation_task = optional_id(annotation.get("task"), "annotation.task")
    task_id = optional_id(task.get("id"), "task.id") or annotation_task
    state = svc.store.serving_state(project_id)
    if state is None:
        svc.ensure_project(project_id, label_config=config)  # over the project cap: Forbidden, recorded
        state = svc.store.serving_state(project_id)
        assert state is not None
    n_labels, error = count_labels(action, body, annotation, state.label_config)
    event_id, counted = record.record_delivery(project_id, annotation_id=annotation_id, task_id=task_id,
                                               n_labels=n_labels, error=str(error) if error else None,
                                               delivery=delivery_key(action, body, annotation))
    if error is not None:
        raise error
    # Recorded: answer now; counting the labels and queueing a round happen after (Label Studio waits
    # 1 s for the answer, a storm of webhooks must not queue behind each other's training triggers).
    if action == "START_TRAINING" or counted:
        svc.after_webhook(project_id, start_training=action == "START_TRAINING")
    answer = {"status": "ok", "action": action, "event": event_id, "labels": counted}
    return {**answer, "repeat": True} if n_labels and not counted else answer


#: The longest delivery key stored (events.delivery); a longer one is hashed.
DELIVERY_CHARS = 200


def delivery_key(action: str, body: dict[str, Any], annotation: dict[str, Any]) -> str | None:
    """What names one delivery of an annotation event, so a second delivery of it counts no labels.

    Label Studio sends each webhook of a project the same payload, one after the other: a second webhook
    to this backend (a leftover one, one added by hand next to the auto-created one) repeats the event
    exactly, down to the annotation's ``updated_at``, while a real edit (ANNOTATION_UPDATED) carries a new
    ``updated_at``. So the key is the action, the annotation id and its ``updated_at``; for a bulk creation
    the ids of all its annotations. None where no key can tell a repeat from a new event (an update
    without a time stamp, an event about no annotation): such events count as before.
    """
    if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        annotation_id, stamp = annotation.get("id"), annotation.get("updated_at")
        if type(annotation_id) is not int or (action == "ANNOTATION_UPDATED" and not isinstance(stamp, str)):
            return None
        key = f"{action}:{annotation_id}:{stamp if isinstance(stamp, str) else ''}"
    elif action == "ANNOTATIONS_CREATED":
        ids = sorted(a["id"] for a in bulk_annotations(body) if isinstance(a, dict) and type(a.get("id")) is int)
        if not ids:
            return None
        key = f"{action}:{len(ids)}:" + ",".join(map(str, ids))
    else:
        return None
    if len(key) > DELIVERY_CHARS:
        key = f"{action[:100]}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
    return key


def bulk_annotations(body: dict[str, Any]) -> list[Any]:
    """The annotations of a bulk event: Label Studio 1.23 sends them under "annotation" (its webhook
    action's key, with ``many``); "annotations" is read too."""
    for key in ("annotation", "annotations"):
        if isinstance(body.get(key), list):
            return body[key]
    return []


class WebhookRecord:
    """The one events row of a webhook: written by the route when it gets that far, else by :meth:`failed`."""

    #: The action stored for a webhook whose own action is missing or unreadable.
    UNREADABLE = "(unreadable)"

    def __init__(self, store: Store, max_bytes: int) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self.action = self.UNREADABLE
        self.payload: dict[str, Any] | None = None
        self.recorded = False

    def parsed(self, body: dict[str, Any]) -> None:
        """The body is a JSON object: keep it trimmed, and its action if it has a usable one."""
        self.payload = trim(body, self.max_bytes)
        if isinstance(body.get("action"), str) and body["action"]:
            self.action = body["action"]  # the store cleans and cuts it to the column

    def record(self, project_id: int | None, *, error: str | None = None, **fields: Any) -> int:
        return self.record_delivery(project_id, error=error, **fields)[0]

    def record_delivery(self, project_id: int | None, *, error: str | None = None, **fields: Any) -> tuple[int, int]:
        """Write the row; returns its id and the labels it counts (0 for a repeated delivery)."""
        recorded = self.store.record_delivery(project_id, self.action, payload=self.payload, error=error, **fields)
        self.recorded = True
        return recorded

    def failed(self, exc: Exception) -> None:
        """Record a webhook refused before its row was written (project NULL, the reason); never raises."""
        if self.recorded:
            return
        if isinstance(exc, RequestEntityTooLarge):
            self.payload = {"_trimmed": {"raw_bytes": request.content_length}}
            reason = "request body over the size limit (LABELLOOP_MAX_BODY_BYTES): not read"
        else:
            if self.payload is None:
                self.payload = raw_excerpt(request.get_data(cache=True))
            field = getattr(exc, "field", None)
            reason = (f"{field}: " if field else "") + (str(exc) or type(exc).__name__)
            if not isinstance(exc, (BadInput, Forbidden, UnsupportedConfig)):
                reason = f"{type(exc).__name__}: {reason}"
        try:
            self.record(None, error=reason)
        except Exception:  # the database itself failed: the original error is what the caller sees
            log.exception("could not record a refused webhook")


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
            "labels_since_iteration": store.labels_since(p.id),
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
        return sum(1 for a in bulk_annotations(body) if not (isinstance(a, dict) and a.get("was_cancelled"))), None
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

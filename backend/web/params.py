"""Request bodies -> typed values, or a 400 that names the field (BadInput)."""

from __future__ import annotations

import json
from typing import Any

from flask import request
from pydantic import ValidationError

from backend.config import ProjectPolicy
from backend.labelstudio.tasks import BadInput


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


def autolabel_params(body: dict[str, Any]) -> dict[str, Any]:
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


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def policy_from(extra: Any, defaults: ProjectPolicy) -> ProjectPolicy | None:
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


def trim(body: dict[str, Any]) -> dict[str, Any]:
    """The event as stored: the full project object (config, stats) is reduced to its id."""
    out = dict(body)
    if isinstance(out.get("project"), dict):
        out["project"] = {"id": out["project"].get("id")}
    return out

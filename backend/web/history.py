"""Blueprint: the operators' routes (iteration history, per-task scores, auto-labelling jobs).

Guarded by LABELLOOP_OPERATOR_TOKEN when it is set (see web/app.py); Label Studio never calls these.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from backend.labelstudio.tasks import BadInput
from backend.service.autolabel import AutolabelError, AutolabelRequest
from backend.service.container import Services
from backend.service.scheduling import JobBusy
from backend.service.serializers import iteration_json, job_json
from backend.store.schema import Job
from backend.web.params import MAX_ID, autolabel_params, json_body

bp = Blueprint("history", __name__)

#: Job ids are uuid4 strings (the CLI and tests use short names): letters, digits, '-', '_', '.', ':'.
JOB_ID = re.compile(rf"[A-Za-z0-9_.:-]{{1,{Job.__table__.c.id.type.length}}}", re.ASCII)


@bp.before_request
def check_path_values() -> None:
    """Path ids are checked like body ids: Werkzeug's int converter takes any number of digits, and an id
    beyond 32 bits would reach PostgreSQL's integer columns; a job id must fit its column, without NUL.

    A blueprint's before_request runs after the app's, so an unauthenticated caller gets its 401 first.
    """
    values: dict[str, Any] = request.view_args or {}
    for name, value in values.items():
        if name == "job_id":
            if not JOB_ID.fullmatch(value):
                raise BadInput("'job_id' must be a job id as POST /projects/<id>/autolabel returned it",
                               field="job_id")
        elif isinstance(value, int) and not 1 <= value <= MAX_ID:
            raise BadInput(f"'{name}' must be between 1 and {MAX_ID}, got {str(value)[:30]}", field=name)


def services() -> Services:
    return current_app.extensions["labelloop"]


@bp.get("/projects/<int:project_id>/iterations")
def iterations(project_id: int) -> tuple[Response, int] | Response:
    store = services().store
    project = store.get_project(project_id)
    if project is None:
        return jsonify(error=f"project {project_id} is unknown", field="project_id"), 404
    return jsonify(
        project=project_id,
        current_version=project.current_version,
        policy=project.rules.model_dump(),
        iterations=[iteration_json(it, full=request.args.get("full") in ("1", "true"))
                    for it in store.iterations(project_id)],
    )


@bp.get("/projects/<int:project_id>/iterations/<int:number>/scores")
def iteration_scores(project_id: int, number: int) -> tuple[Response, int] | Response:
    store = services().store
    match = [it for it in store.iterations(project_id) if it.number == number]
    if not match:
        return jsonify(error=f"project {project_id} has no iteration {number}", field="number"), 404
    limit = request.args.get("limit", default=100, type=int)
    rows = store.task_scores(match[0].id)[: max(0, limit)]
    return jsonify(
        version=match[0].version,
        strategy=match[0].strategy,
        scores=[
            {"task_id": r.task_id, "rank": r.rank, "score": r.score, "uncertainty": r.uncertainty,
             "difficulty": r.difficulty, "predicted": r.predicted, "stream": r.stream}
            for r in rows
        ],
    )


@bp.post("/projects/<int:project_id>/autolabel")
def autolabel(project_id: int) -> tuple[Response, int]:
    """Start auto-labelling in the background (for project webhooks); poll GET /jobs/<id>."""
    svc = services()
    body = json_body(allow_empty=True)
    if svc.store.get_project(project_id) is None:
        return jsonify(error=f"project {project_id} is unknown", field="project_id"), 404
    params = autolabel_params(body)
    state = svc.store.serving_state(project_id)
    if state is None or state.version is None:
        return jsonify(error=f"project {project_id} has no trained model yet: label some tasks or send "
                             "START_TRAINING first", field="project_id"), 409
    try:
        auto_request = AutolabelRequest(project_id=project_id, **params)
    except AutolabelError as exc:
        raise BadInput(str(exc), field="body") from exc
    try:
        job_id = svc.background.create(project_id, "autolabel", params)
    except JobBusy as exc:
        return jsonify(error=str(exc), field="project_id"), 409
    svc.background.start(job_id, svc.autolabel_work(auto_request))
    return jsonify(job_id=job_id, status="queued", url=f"/jobs/{job_id}"), 202


@bp.get("/jobs/<job_id>")
def job(job_id: str) -> tuple[Response, int] | Response:
    svc = services()
    found = svc.store.get_job(job_id)
    if found is None:
        return jsonify(error=f"job {job_id} is unknown", field="job_id"), 404
    return jsonify(job_json(found, stale_seconds=svc.background.stale_seconds))

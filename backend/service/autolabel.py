"""Auto-labelling a test set: predict every task in scope, push the predictions, say which to trust.

The threshold comes from the serving iteration's validation split (stored with the iteration, so it
belongs to exactly the model version that labels): the lowest confidence at which the validated
precision reaches the target. Tasks at or above it are auto-labelled; the rest are listed as
"needs review" (a task-id list, and a saved Data Manager tab in Label Studio).

Idempotent and resumable: a task that already holds a prediction of the serving version is not
pushed again, so a second run (or a run after an interruption) pushes only what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.labelstudio.gateway import LabelStudioGateway
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.labelconfig import parse_label_config
from backend.labelstudio.tasks import BadInput, pick_annotation, task_input
from backend.service.models import trusted_types
from backend.store import Store
from backend.store.artifacts import ModelStore
from backend.store.schema import Project
from model.scoring import score
from model.thresholds import precision_threshold
from model.uncertainty import get_strategy

log = logging.getLogger(__name__)

#: Printed with every outcome: what "coverage" means.
COVERAGE_DEFINITION = (
    "coverage = share of the tasks in scope whose prediction confidence is at or above the threshold, i.e. "
    "labelled by the model without review; the threshold is the lowest confidence at which the model's "
    "precision on the validation split reaches the target"
)

#: Above this many tasks the needs-review tab is not created (one filter per task); the id list still is.
MAX_VIEW_TASKS = 1000

Progress = Callable[[str, int, int | None], None]


class AutolabelError(RuntimeError):
    """Auto-labelling cannot run (no model yet, bad scope); the message says what to do."""


@dataclass(frozen=True)
class AutolabelRequest:
    project_id: int
    target_precision: float = 0.95
    view: int | None = None
    task_ids: Sequence[int] | None = None
    create_view: bool = True
    #: When set, the validation precision's lower confidence bound (not the measured value) must reach the target.
    confidence_level: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.target_precision <= 1.0:
            raise AutolabelError(f"target_precision must be in (0, 1], got {self.target_precision}")
        if self.confidence_level is not None and not 0.0 < self.confidence_level < 1.0:
            raise AutolabelError(f"confidence_level must be in (0, 1), got {self.confidence_level}")
        if self.view is not None and self.task_ids is not None:
            raise AutolabelError("give a view or a list of task ids, not both")


def run_autolabel(
    request: AutolabelRequest,
    *,
    store: Store,
    models: ModelStore,
    gateway_for: Callable[[Project], LabelStudioGateway],
    push_batch_size: int = 500,
    chunk: int = 500,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run one auto-labelling pass and return the outcome (the ``--json`` document)."""
    report = progress or (lambda stage, done, total: None)
    project = store.get_project(request.project_id)
    state = store.serving_state(request.project_id)
    if project is None or state is None or state.version is None or state.iteration_id is None:
        raise AutolabelError(
            f"project {request.project_id} has no trained model yet: label some tasks and run "
            f"`labelloop train --project {request.project_id}` first"
        )
    iteration = store.get_iteration(state.iteration_id)
    assert iteration is not None
    validation = (iteration.metrics or {}).get("validation") or {}
    chosen = precision_threshold(
        np.asarray(validation.get("confidence") or [], dtype=float),
        np.asarray(validation.get("correct") or [], dtype=bool),
        request.target_precision,
        confidence_level=request.confidence_level,
    )

    gateway = gateway_for(project)
    spec = parse_label_config(project.label_config or gateway.label_config(project.id))
    load_image = ImageFetcher(gateway.url, gateway.auth_headers) if spec.modality == "image" else None
    estimator = models.load(project.id, state.version, state.iteration_id,
                            trusted_types(state.model, state.trusted_types))
    strategy = get_strategy(state.strategy)

    report("reading tasks", 0, None)
    wanted = {int(t) for t in request.task_ids} if request.task_ids is not None else None
    tasks = [t for t in gateway.iter_tasks(project.id, view=request.view) if wanted is None or int(t["id"]) in wanted]
    if wanted is not None:
        missing = sorted(wanted - {int(t["id"]) for t in tasks})
        if missing:
            raise AutolabelError(f"task id(s) not in project {project.id}: {missing[:20]}")

    total = len(tasks)
    pushed = already = 0
    failed: list[dict[str, Any]] = []
    confidence_of: dict[int, float] = {}
    report("predicting", 0, total)
    for start in range(0, total, chunk):
        block = tasks[start : start + chunk]
        inputs, ids = [], []
        for task in block:
            try:
                inputs.append(task_input(task, spec, load_image))
                ids.append(int(task["id"]))
            except BadInput as exc:
                failed.append({"task_id": task.get("id"), "reason": str(exc)})
        if inputs:
            scored = score(estimator, strategy, inputs)
            has_version = {int(t["id"]) for t in block if _has_prediction(t, state.version)}
            new = []
            for tid, lab, confidence, conf in zip(ids, scored.labels, scored.confidence, scored.decision,
                                                  strict=True):
                confidence_of[tid] = float(conf)
                if tid in has_version:
                    already += 1
                else:
                    new.append({"task": tid, **spec.prediction(lab, float(confidence), state.version)})
            if new:
                pushed += gateway.import_predictions(project.id, new, push_batch_size)
        report("predicting", min(start + chunk, total), total)

    human = {int(t["id"]) for t in tasks if pick_annotation(t.get("annotations") or []) is not None}
    threshold = chosen.threshold
    auto = {t for t, c in confidence_of.items() if threshold is not None and c >= threshold}
    needs_review = sorted(t for t in confidence_of if t not in auto and t not in human)
    outcome: dict[str, Any] = {
        "project": project.id,
        "model_version": state.version,
        "target_precision": request.target_precision,
        "threshold": threshold,
        "validation_precision": chosen.precision,
        "confidence_level": request.confidence_level,
        "validation_precision_lower": chosen.precision_lower,
        "validation_coverage": chosen.coverage,
        "n_validation": chosen.n,
        "n_validation_selected": chosen.n_selected,
        "reached": chosen.reached,
        "coverage": (len(auto) / len(confidence_of)) if confidence_of else 0.0,
        "coverage_definition": COVERAGE_DEFINITION,
        "n_tasks": total,
        "n_predicted": len(confidence_of),
        "n_pushed": pushed,
        "n_already_predicted": already,
        "n_human_labelled": len(human),
        "n_failed": len(failed),
        "failed": failed[:100],
        "needs_review": needs_review,
        "needs_review_view": None,
    }
    if request.create_view and needs_review and len(needs_review) <= MAX_VIEW_TASKS:
        report("creating the needs-review tab", total, total)
        outcome["needs_review_view"] = gateway.create_task_view(
            project.id, f"needs review ({state.version}, p>={request.target_precision:g})", needs_review
        )
    if not chosen.reached:
        log.warning("project %s: no confidence threshold reaches precision %.3f on %d validation tasks",
                    project.id, request.target_precision, chosen.n)
    return outcome


def _has_prediction(task: dict[str, Any], version: str) -> bool:
    for prediction in task.get("predictions") or []:
        if isinstance(prediction, dict) and prediction.get("model_version") == version:
            return True
    return False

"""Auto-labelling a test set: predict every task in scope, push the predictions, say which to trust.

The threshold holds the target precision with a finite-sample guarantee (model.thresholds: fixed-
sequence Clopper-Pearson tests at 95 % confidence) on every honest prediction there is: the serving
iteration's validation rows (scored by the model that labels, which never trained on them) and
cross-fitted rows over the training labels (each scored by a model fitted, calibration included, on
the other folds). When the rows cannot certify the target, nothing is auto-labelled and the outcome
says roughly how many more labels would. Tasks at or above the threshold are auto-labelled; the rest
are listed as "needs review" (a task-id list, and a saved Data Manager tab in Label Studio).

Idempotent and resumable: a task that already holds a prediction of the serving version is not
pushed again, so a second run (or a run after an interruption) pushes only what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.labelstudio.families import family_of
from backend.labelstudio.gateway import LabelStudioGateway
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.labelconfig import parse_label_config
from backend.labelstudio.tasks import BadInput, ImageLoader, pick_annotation, task_input
from backend.labelstudio.tasktypes import TaskType
from backend.service.models import build_estimator, resolve_strategy, trusted_types
from backend.service.training import Split, TrainingError, collect, split_inputs
from backend.store import Store
from backend.store.artifacts import ModelStore
from backend.store.schema import Project
from model.crossfit import cross_fitted_confidence
from model.scoring import score
from model.thresholds import RULES, ThresholdResult, precision_threshold
from model.uncertainty import get_strategy

log = logging.getLogger(__name__)

#: Printed with every outcome: what "coverage" means.
COVERAGE_DEFINITION = (
    "coverage = share of the tasks in scope whose prediction confidence is at or above the threshold, i.e. "
    "labelled by the model without review; the threshold is certified: at the stated confidence level, the "
    "precision of predictions at or above it is at least the target (rule 'point' only estimates it)"
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
    #: The guarantee's confidence (default 0.95 for the "guaranteed" rule).
    confidence_level: float | None = None
    #: "guaranteed" (default) or "point": the measured precision, an estimate with no guarantee.
    rule: str = "guaranteed"
    #: Add cross-fitted rows over the training labels to the validation rows (5 extra fits; more coverage).
    crossfit: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.target_precision <= 1.0:
            raise AutolabelError(f"target_precision must be in (0, 1], got {self.target_precision}")
        if self.confidence_level is not None and not 0.0 < self.confidence_level < 1.0:
            raise AutolabelError(f"confidence_level must be in (0, 1), got {self.confidence_level}")
        if self.rule not in RULES:
            raise AutolabelError(f"rule must be one of {list(RULES)}, got {self.rule!r}")
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
    gateway = gateway_for(project)
    spec = parse_label_config(project.label_config or gateway.label_config(project.id))
    load_image = ImageFetcher(gateway.url, gateway.auth_headers) if spec.modality == "image" else None
    report("reading tasks", 0, None)
    listed = list(gateway.iter_tasks(project.id, view=request.view))
    wanted = {int(t) for t in request.task_ids} if request.task_ids is not None else None
    tasks = [t for t in listed if wanted is None or int(t["id"]) in wanted]
    if wanted is not None:
        missing = sorted(wanted - {int(t["id"]) for t in tasks})
        if missing:
            raise AutolabelError(f"task id(s) not in project {project.id}: {missing[:20]}")
    report("choosing the threshold", 0, None)
    # Cross-fitting needs the whole project's labels: the listing above is it unless a view narrowed it.
    chosen, n_crossfit = choose_threshold(request, store, project, state.iteration_id, gateway, spec, load_image,
                                          listed if request.view is None else None)
    estimator = models.load(project.id, state.version, state.iteration_id,
                            trusted_types(state.model, state.trusted_types))
    strategy = resolve_strategy(state.strategy, state.model, spec)

    total = len(tasks)
    pushed = already = 0
    failed: list[dict[str, Any]] = []
    confidence_of: dict[int, float] = {}
    units_of: dict[int, list[float]] = {}  # boxes, spans: each task's shown scores (coverage per unit)
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
            for tid, lab, confidence, conf, shown in zip(ids, scored.labels, scored.confidence, scored.decision,
                                                         scored.display, strict=True):
                confidence_of[tid] = spec.item_confidence(lab, float(conf))
                units_of[tid] = spec.unit_scores(lab)
                if tid in has_version:
                    already += 1
                else:
                    new.append({"task": tid, **spec.prediction(lab, float(confidence), state.version, float(shown))})
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
        "rule": chosen.rule,
        "confidence_level": chosen.level,
        "validation_precision": chosen.precision,
        "validation_precision_lower": chosen.precision_lower,
        "validation_coverage": chosen.coverage,
        "n_threshold_rows": chosen.n,
        "n_crossfit_rows": n_crossfit,
        "n_validation": chosen.n - n_crossfit,
        "n_validation_selected": chosen.n_selected,
        "reached": chosen.reached,
        "more_labels_estimate": _more_labels(chosen, n_crossfit, project.rules.validation_fraction),
        "coverage": (len(auto) / len(confidence_of)) if confidence_of else 0.0,
        "coverage_definition": COVERAGE_DEFINITION,
        **_unit_coverage(spec, units_of, threshold),
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
        log.warning("project %s: precision %.3f cannot be certified on %d labelled rows: nothing auto-labelled",
                    project.id, request.target_precision, chosen.n)
    return outcome


def choose_threshold(request: AutolabelRequest, store: Store, project: Project, iteration_id: int,
                     gateway: LabelStudioGateway, spec: TaskType, load_image: ImageLoader | None,
                     project_tasks: list[dict[str, Any]] | None = None) -> tuple[ThresholdResult, int]:
    """The threshold on the serving round's validation rows plus (``request.crossfit``) cross-fitted rows.

    ``project_tasks``: every task of the project when the caller already read them (else read here).
    Returns the threshold and how many of its rows are cross-fitted. Validation rows were scored by the serving
    model, which never saw them; a cross-fitted row by a model fitted on the other folds only.
    """
    iteration = store.get_iteration(iteration_id)
    assert iteration is not None
    validation = (iteration.metrics or {}).get("validation") or {}
    confidence = np.asarray(validation.get("confidence") or [], dtype=float)
    correct = np.asarray(validation.get("correct") or [], dtype=bool)
    n_crossfit = 0
    rows = validation.get("rows")
    if rows is not None:
        # Per-row guarantee (a detection control: one row per predicted box). Cross-fitting would mean five
        # more detector fits per run; the validation split's rows are what certifies the threshold.
        confidence = np.asarray(rows.get("score") or [], dtype=float)
        correct = np.asarray(rows.get("correct") or [], dtype=bool)
    elif request.crossfit and family_of(spec).crossfit:  # cross-fitting refits class probabilities
        policy = project.rules
        try:
            # Only labelled tasks matter here: the export reads them in a third of the task list's time, and
            # a view that narrowed the scope does not make the whole project's task list worth reading.
            every = project_tasks if project_tasks is not None else gateway.labelled_tasks(project.id)
            split = split_inputs(collect(every, spec), spec, load_image, policy.validation_fraction)
        except TrainingError:  # no training labels: the validation rows are all there is
            split = Split()
        # Rows scored as the tasks will be: by the serving round's strategy and model kind, not the live policy's.
        if iteration.strategy and iteration.model:
            policy = policy.model_copy(update={"strategy": iteration.strategy, "model": iteration.model})
        strategy = resolve_strategy(policy.strategy, policy.model, spec)
        cf_conf, cf_ok, _ = cross_fitted_confidence(
            lambda: build_estimator(policy, spec, random_state=iteration.number, strategy=strategy),
            split.train_x, spec.model_targets(split.train_y), seed=iteration.number,
            strategy=get_strategy(strategy))
        n_crossfit = len(cf_conf)
        confidence, correct = np.r_[cf_conf, confidence], np.r_[cf_ok, correct]
    chosen = precision_threshold(confidence, correct, request.target_precision,
                                 confidence_level=request.confidence_level, rule=request.rule)
    return chosen, n_crossfit


def _unit_coverage(spec: TaskType, units_of: dict[int, list[float]], threshold: float | None) -> dict[str, Any]:
    """Boxes, spans: the threshold holds per unit, so coverage is also reported per unit (shown units at or
    above it) next to the per-task coverage (tasks whose every shown unit is)."""
    unit = spec.coverage_unit
    if unit is None:
        return {}
    shown = [s for scores in units_of.values() for s in scores]
    kept = [s for s in shown if threshold is not None and s >= threshold]
    return {"threshold_unit": unit, f"n_{unit}s": len(shown),
            f"{unit}_coverage": (len(kept) / len(shown)) if shown else 0.0}


def _more_labels(chosen: ThresholdResult, n_crossfit: int, validation_fraction: float) -> int | None:
    """Rough labels still needed to certify the target: rows are labels when every label contributes one
    (cross-fitting); with validation rows only, one label in 1/validation_fraction becomes a row."""
    if chosen.reached or chosen.more_labels_estimate is None:
        return None
    if n_crossfit or validation_fraction <= 0:
        return int(chosen.more_labels_estimate)
    return int(np.ceil(chosen.more_labels_estimate / validation_fraction))


def _has_prediction(task: dict[str, Any], version: str) -> bool:
    for prediction in task.get("predictions") or []:
        if isinstance(prediction, dict) and prediction.get("model_version") == version:
            return True
    return False

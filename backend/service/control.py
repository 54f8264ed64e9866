"""A round's control-stream comparison: active vs random labels on the project's own data.

The control stream (``ProjectPolicy.control_fraction``) is a set of tasks fixed by task-id hash and
queued at random positions, so their labels are a random sample of the pool. They train the main model
like any label (they are honest labels); this step also asks what they are worth *on their own*: a
shadow model fitted on them against a model fitted on as many of the strategy's picks, both built like
the main model and judged on the round's validation split (:mod:`model.control` does the fitting and the
statistics). The answer is recorded in ``metrics["control"]``; a failure here never fails the round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from backend.config import ProjectPolicy
from backend.labelstudio.families import family_of
from backend.labelstudio.tasktypes import TaskType
from model.control import NotComparable, compare_streams
from model.scoring import score

log = logging.getLogger(__name__)


def labelled_at(task: dict[str, Any]) -> tuple[str, int, int]:
    """When a task was labelled, as a sort key: its first usable annotation's ``created_at`` (ISO text sorts
    in time order), then annotation id, then task id (a fake or an old export may lack the stamp).

    The first annotation, not the one the label is taken from: the task entered the labelled set (and
    stopped competing in the queue) when it was first labelled, whatever a later correction says.
    """
    usable = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    stamps = sorted((str(a.get("created_at") or ""), int(a.get("id") or 0)) for a in usable)
    stamp, annotation_id = stamps[0] if stamps else ("", 0)
    return stamp, annotation_id, int(task.get("id") or 0)


def label_order(train_ids: list[int], tasks: dict[int, dict[str, Any]], control: set[int],
                excluded: set[int]) -> tuple[list[int], list[int]]:
    """Indices into the training rows: the control labels and the active labels, each first labelled first.

    ``excluded`` rows are neither (tasks of the random validation stream trained on when ground truth is
    the yardstick: random picks, so counting them as active would flatter the random side).
    """
    keyed = sorted(range(len(train_ids)), key=lambda i: labelled_at(tasks.get(train_ids[i], {"id": train_ids[i]})))
    chosen = [i for i in keyed if train_ids[i] in control]
    active = [i for i in keyed if train_ids[i] not in control and train_ids[i] not in excluded]
    return chosen, active


def _judge(spec: TaskType, strategy: str, val_x: list[Any],
           val_y: list[list[str]]) -> Callable[[Any], np.ndarray]:
    """Per validation item, whether a fitted estimator's labels are right (as the round's evaluation says)."""
    def judge(estimator: Any) -> np.ndarray:
        labels = score(estimator, strategy, val_x).labels
        return np.array([bool(spec.correct(p, t)) for p, t in zip(labels, val_y, strict=True)], dtype=bool)
    return judge


def compare_control(
    policy: ProjectPolicy,
    spec: TaskType,
    strategy: str,
    split: Any,
    labelled: Iterable[tuple[dict[str, Any], list[str]]],
    control: set[int],
    excluded: set[int],
    make_estimator: Callable[[], Any],
    seed: int,
) -> dict[str, Any]:
    """``metrics["control"]`` for this round: the comparison, or ``{"skipped": reason}``. Never raises.

    ``split`` is the round's :class:`backend.service.training.Split` (train rows with their task ids, the
    validation split); ``control`` the task ids of the control stream among them.
    """
    family = family_of(spec)
    if not family.compares_streams:
        return {"skipped": f"the comparison covers classification projects (this one is {family.name})"}
    if not split.val_x:
        return {"skipped": "no validation split to compare on (validation_fraction is 0 and no ground truth)"}
    try:
        tasks = {int(task["id"]): task for task, _ in labelled}
        chosen, active = label_order(split.train_ids, tasks, control, excluded)
        result = compare_streams(make_estimator, split.train_x, spec.model_targets(split.train_y), chosen, active,
                                 _judge(spec, strategy, split.val_x, split.val_y), seed=seed)
    except NotComparable as exc:
        return {"skipped": str(exc)}
    except Exception as exc:  # the round's model is fine: record why the comparison is missing, go on
        log.exception("control-stream comparison failed")
        return {"skipped": f"comparison failed: {type(exc).__name__}: {exc}"[:500]}
    return {**result.as_json(), "yardstick": split.validation_source, "share": policy.control_fraction}


def _needed_text(control: dict[str, Any]) -> str:
    """How many random labels match the active accuracy, with its interval; a bound is said as a bound."""
    needed, ratio = float(control["random_labels_needed"]), float(control["labels_ratio"])
    if control.get("lower_bound"):
        return f"random needs > {needed:.0f} labels (> {ratio:.1f}x)"
    if control.get("upper_bound"):
        return f"random needs <= {needed:.0f} labels (<= {ratio:.1f}x)"
    high = f">{control['n_control']}" if control.get("needed_high_open") else f"{float(control['needed_high']):.0f}"
    return f"random needs ~{needed:.0f} labels [{float(control['needed_low']):.0f}, {high}] ({ratio:.1f}x)"


def control_summary(control: dict[str, Any]) -> str:
    """One line for people (``labelloop history``, the report): the gap with its interval, and the efficiency.

    Points are percentage points of validation accuracy (active minus random, at equal label counts).
    """
    if "skipped" in control:
        return f"active vs random on your data: not compared ({control['skipped']})"
    gap, low, high = (100 * float(control[k]) for k in ("gap", "gap_low", "gap_high"))
    return (f"active vs random on your data: {gap:+.1f} pts [{low:+.1f}, {high:+.1f}] at {control['n']} labels "
            f"each; {_needed_text(control)}")

"""One training iteration, start to finish: Label Studio tasks -> fitted model -> scored pool -> history.

The run either publishes a complete new version (artefact, predictions in Label Studio, history row)
or fails with a reason and leaves the previous version serving.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from backend.config import ProjectPolicy
from backend.labelstudio.diagnosis import Problem, ProblemError, diagnose, refused_version
from backend.labelstudio.gateway import PUSH_YIELD, LabelStudioError, LabelStudioGateway
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.labelconfig import read_label_config
from backend.labelstudio.tasks import (
    BadInput,
    ImageLoader,
    pick_annotation,
    task_input,
)
from backend.labelstudio.tasktypes import TaskType
from backend.service.control import compare_control
from backend.service.models import build_estimator, resolve_strategy, verify_loadable
from backend.service.reading import PendingRead
from backend.store import Store
from backend.store.artifacts import ModelStore
from backend.store.schema import Iteration, Project, utcnow
from model.difficulty import UNRATED, DifficultyThresholds, bucket, bucket_counts, fit_thresholds
from model.evaluation import bootstrap_interval, proportion_interval
from model.queue import get_queue
from model.scoring import Ordered, Scored, order, score, score_batches
from model.stopping import StopRule, mean_normalised_uncertainty, stable_sample
from model.thresholds import precision_coverage_curve

log = logging.getLogger(__name__)

SCORE_CHUNK = 1000
#: The seed of every round's model (see IterationRunner._train): the same labels give the same model.
MODEL_SEED = 0
#: Unlabelled tasks compared between consecutive iterations for the stopping signal.
STOP_SAMPLE = 2000
#: The fewest predictions a round pushes once the project has a serving version (see IterationRunner._head_size).
PUSH_HEAD_MIN = 100
#: A label this recent means a crowd is at work: pushes pause between batches for it (see PushPace).
CROWD_WINDOW = timedelta(seconds=120)
#: How many of the newest failed rounds have their model files removed at each pruning.
PRUNE_LOOKBACK = 15


class TrainingError(RuntimeError):
    """A reason the iteration cannot produce a model (recorded on the failed iteration)."""


def in_validation(task_id: int, fraction: float) -> bool:
    """Deterministic held-out split by task id: the same tasks stay out in every iteration."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"labelloop-validation:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def in_control(task_id: int, fraction: float, validation_fraction: float) -> bool:
    """The control stream (opt-in), fixed by task id like the validation stream but with its own salt, so
    the two are independent draws; a task in both is validation's (a held-out label never trains, and the
    control stream's labels do)."""
    if fraction <= 0 or in_validation(task_id, validation_fraction):
        return False
    digest = hashlib.sha256(f"labelloop-control:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def pool_streams(pool_ids: list[int], policy: ProjectPolicy) -> np.ndarray:
    """Each pool task's queue stream: "validation", "control" (both at random positions) or "active"."""
    return np.array(["validation" if in_validation(t, policy.validation_fraction)
                     else "control" if in_control(t, policy.control_fraction, policy.validation_fraction)
                     else "active" for t in pool_ids], dtype=object)


@dataclass
class Collected:
    """Tasks sorted into labelled examples and the unlabelled pool."""

    labelled: list[tuple[dict[str, Any], list[str]]] = field(default_factory=list)
    pool: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def collect(tasks: Iterable[dict[str, Any]], spec: TaskType) -> Collected:
    """Pick each task's label (newest usable annotation, ground truth first) or put it in the pool."""
    out = Collected()
    for task in tasks:
        annotation = pick_annotation(task.get("annotations") or [])
        if annotation is None:
            out.pool.append(task)
            continue
        try:
            labels = spec.target(annotation, where=f"annotation {annotation.get('id')}")
        except BadInput as exc:
            out.skipped.append({"task_id": task.get("id"), "reason": str(exc)})
            continue
        if labels is None:
            out.skipped.append({"task_id": task.get("id"), "reason": f"annotation has no '{spec.from_name}' result"})
            continue
        out.labelled.append((task, labels))
    return out


def _curve_json(confidence: np.ndarray, correct: np.ndarray, max_points: int = 200) -> dict[str, list[float]]:
    """The validation precision/coverage curve, thinned to at most ``max_points`` for the history row."""
    thresholds, precision, coverage = precision_coverage_curve(confidence, correct)
    keep = np.unique(np.linspace(0, len(thresholds) - 1, min(max_points, len(thresholds))).astype(int))
    return {
        "threshold": [round(float(v), 6) for v in np.asarray(thresholds)[keep]],
        "precision": [round(float(v), 6) for v in np.asarray(precision)[keep]],
        "coverage": [round(float(v), 6) for v in np.asarray(coverage)[keep]],
    } if len(thresholds) else {"threshold": [], "precision": [], "coverage": []}


def validation_split(data: Collected, fraction: float) -> tuple[set[int], str]:
    """The held-out task ids and where they come from.

    Tasks whose chosen annotation is marked ground truth form the validation split when there are any
    (and some labelled tasks are left to train on): a team's reviewed gold set is the yardstick it
    trusts. Otherwise the random validation stream: the tasks whose id hash falls under ``fraction``.
    Every round places those tasks at random positions of the queue rather than where the model's
    uncertainty would put them (see :func:`model.scoring.order`), so the ones annotators label are a
    random sample of the pool, not the hard cases the strategy picked. The hash is fixed, so every
    worker, every restart and every round agree on the same tasks, and none of them is ever trained on.
    """
    if fraction <= 0:
        return set(), "none"
    ids = [int(task["id"]) for task, _ in data.labelled]
    gold = {
        int(task["id"]) for task, _ in data.labelled
        if (pick_annotation(task.get("annotations") or []) or {}).get("ground_truth")
    }
    if gold and len(gold) < len(ids):
        return gold, "ground_truth"
    return {t for t in ids if in_validation(t, fraction)}, "random_stream"


@dataclass
class Split:
    """Model inputs of the labelled tasks: what trains, and the held-out validation split."""

    train_x: list[Any] = field(default_factory=list)
    train_y: list[list[str]] = field(default_factory=list)
    train_ids: list[int] = field(default_factory=list)
    val_x: list[Any] = field(default_factory=list)
    val_y: list[list[str]] = field(default_factory=list)
    val_ids: list[int] = field(default_factory=list)
    validation_source: str = "none"


def split_inputs(data: Collected, spec: TaskType, load_image: ImageLoader | None, fraction: float) -> Split:
    """Read each labelled task's input (a bad one is skipped with its reason) and split off validation."""
    held_out, source = validation_split(data, fraction)
    out = Split(validation_source=source)
    for task, labels in data.labelled:
        try:
            x = task_input(task, spec, load_image)
        except BadInput as exc:
            data.skipped.append({"task_id": task.get("id"), "reason": str(exc)})
            continue
        if int(task["id"]) in held_out:
            out.val_ids.append(int(task["id"]))
            out.val_x.append(x)
            out.val_y.append(labels)
        else:
            out.train_ids.append(int(task["id"]))
            out.train_x.append(x)
            out.train_y.append(labels)
    if not out.train_x:
        raise TrainingError(
            f"no labelled tasks to train on ({len(data.labelled)} labelled, {len(out.val_x)} held out "
            f"for validation, {len(data.skipped)} skipped)"
        )
    return out


@dataclass
class Evaluation:
    """The validation split's verdict on a fitted model (all None when nothing is held out)."""

    accuracy: float | None = None
    macro_f1: float | None = None
    ece: float | None = None
    thresholds: DifficultyThresholds = field(
        default_factory=lambda: DifficultyThresholds(easy_below=0.2, hard_above=0.6, source="default"))

    def thresholds_json(self) -> dict[str, Any]:
        t = self.thresholds
        return {"easy_below": t.easy_below, "hard_above": t.hard_above, "source": t.source}


def evaluate_split(estimator: Any, strategy: str, spec: TaskType, split: Split,
                   metrics: dict[str, Any]) -> Evaluation:
    """Metrics, calibration error, difficulty thresholds and the auto-labelling rows, on validation.

    Fills ``metrics`` (per class, confusion, the per-task rows auto-labelling picks thresholds from).
    """
    if not split.val_x:
        return Evaluation()
    val = score(estimator, strategy, split.val_x)
    report = spec.evaluate(split.val_y, val.labels, val.probs)  # the model's own calibration (ECE), before
    temperature = spec.calibrate_shown(estimator, val.probs, split.val_y)
    if temperature is not None:
        metrics["shown_temperature"] = round(temperature, 4)
    metrics["per_class"] = report["per_class"]
    metrics["confusion"] = report.get("confusion")
    # Every headline figure the task type reports (detection: map50, map50_95 next to accuracy = map50).
    metrics["evaluation"] = {k: v for k, v in report.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    correct = np.array([spec.correct(p, t) for p, t in zip(val.labels, split.val_y, strict=True)])
    # What auto-labelling needs to pick a threshold for any target precision later, for this version.
    metrics["validation"] = {
        "task_ids": split.val_ids,
        "confidence": [round(float(c), 6) for c in val.decision],
        "correct": [int(c) for c in correct],
    }
    metrics["autolabel_curve"] = _curve_json(val.decision, correct)
    interval = headline_interval(spec, split, val, correct, report.get("accuracy"))
    if interval is not None:
        metrics["evaluation"]["accuracy_low"], metrics["evaluation"]["accuracy_high"] = interval
    rows = spec.threshold_rows(split.val_y, val.labels)
    if rows is not None:  # e.g. one row per predicted box: what a detection threshold is certified on
        metrics["validation"]["rows"] = rows
    return Evaluation(
        accuracy=report["accuracy"],
        macro_f1=report["macro_f1"],
        ece=report["ece"],
        thresholds=fit_thresholds(val.uncertainty, correct),
    )


def headline_interval(spec: TaskType, split: Split, val: Scored, correct: np.ndarray,
                      accuracy: float | None) -> tuple[float, float] | None:
    """A 95 % interval for the headline figure, so "1.000" from one validation task reads as [0.21, 1.00].

    When the headline is the share of validation tasks predicted right (classes), its Wilson interval;
    otherwise (mAP, span F1, a mean over controls) a bootstrap over the validation tasks.
    """
    if accuracy is None or not len(correct):
        return None
    if abs(float(correct.mean()) - float(accuracy)) < 1e-9:
        return proportion_interval(int(correct.sum()), len(correct))

    def resampled(idx: np.ndarray) -> float | None:
        report = spec.evaluate([split.val_y[i] for i in idx], [val.labels[i] for i in idx], val.probs[idx])
        return report.get("accuracy")

    return bootstrap_interval(resampled, len(correct))


class StepTimer:
    """Wall-clock seconds per named step of a round, recorded in the iteration's history (metrics.timings)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 4)


def misaligned_spans(estimator: Any, train_ids: list[int]) -> list[dict[str, Any]]:
    """Training spans that did not fall on token boundaries (snapped to them, or left out), per task: a
    span tagger reports each one (``misaligned_``), and the round records them rather than drop any silently.
    Several controls: each control's model's, with the control named."""
    found = [(None, m, list(range(len(train_ids)))) for m in getattr(estimator, "misaligned_", None) or []]
    rows = getattr(estimator, "rows_", None) or {}
    for name, part in (getattr(estimator, "estimators_", None) or {}).items():
        found.extend((name, m, rows.get(name, [])) for m in getattr(part, "misaligned_", None) or [])
    out = []
    for control, m, fitted_on in found:
        doc = int(m.get("doc", -1))
        row = {"task_id": train_ids[fitted_on[doc]] if 0 <= doc < len(fitted_on) else None, "start": m.get("start"),
               "end": m.get("end"), "label": m.get("label"), "reason": m.get("reason"),
               "snapped": m.get("snapped") is not None}
        out.append({**row, "control": control} if control else row)
    return out


def difficulty_of(uncertainty: np.ndarray, thresholds: DifficultyThresholds) -> np.ndarray:
    """Easy / medium / hard per pool task once the validation split has fitted the thresholds; until then
    (fewer validation labels than ``fit_thresholds`` needs) every task is "unrated": a default cut on a
    sampled strategy's uncertainty once called a whole pool easy at 33 % accuracy."""
    if thresholds.source == "default":
        return np.full(len(uncertainty), UNRATED, dtype=object)
    return bucket(uncertainty, thresholds.easy_below, thresholds.hard_above)


def score_rows(pool_ids: list[int], pool: Scored, queued: Ordered, difficulty: np.ndarray,
               stream: np.ndarray) -> list[dict[str, Any]]:
    """One history row per pool task: prediction, pushed score (the queue's order), the shown prediction's
    probability of being right, difficulty, rank, and its queue stream (:func:`pool_streams`)."""
    return [
        {"task_id": tid, "predicted": labels, "score": float(s), "confidence": round(float(c), 6),
         "uncertainty": float(u), "difficulty": str(d), "rank": int(r), "stream": str(v)}
        for tid, labels, s, c, u, d, r, v in zip(pool_ids, pool.labels, queued.scores, pool.display,
                                                  pool.uncertainty, difficulty, queued.rank, stream, strict=True)
    ]


@dataclass
class PushPace:
    """How long a push pauses after a batch, as a share of the batch's time: :data:`PUSH_YIELD` while a
    crowd labels (a label in the last :data:`CROWD_WINDOW`), else none; asked before every pause.

    The pauses let annotators' writes into Label Studio's write lock between batches. With no label for
    a while nobody is waiting for it, and the pauses were a third of a first round's push.
    """

    store: Store
    project_id: int
    paced: bool = False  # whether any pause was taken (recorded in the round's history)

    def __call__(self) -> float:
        active = self.store.labels_received_since(self.project_id, utcnow() - CROWD_WINDOW) > 0
        self.paced |= active
        return PUSH_YIELD if active else 0.0


@dataclass(frozen=True)
class RoundResult:
    """What a successful round records: iteration fields, the model bytes, and one row per pool task."""

    fields: dict[str, Any]
    artifact: bytes
    artifact_name: str
    score_rows: list[dict[str, Any]]


class IterationRunner:
    """Runs one claimed iteration. Stateless between runs; shared by the server and the CLI."""

    def __init__(
        self,
        store: Store,
        models: ModelStore,
        gateway_for: Callable[[Project], LabelStudioGateway],
        push_batch_size: int = 500,
        push_limit: int = 0,
    ) -> None:
        self.store = store
        self.models = models
        self.gateway_for = gateway_for
        self.push_batch_size = push_batch_size
        # Only the head of the queue is pushed (0 = the whole pool): Label Studio writes ~1,000 predictions
        # a second and recounts the whole project after every call, so a 10,000-task pool would cost tens
        # of seconds of its write lock; the rest is answered by /predict (from this round's stored rows)
        # when an annotator opens the task.
        self.push_limit = push_limit

    def run(self, iteration: Iteration, still_owner: Callable[[], bool]) -> None:
        """Run and record the outcome. Never raises for a training failure: it is stored instead."""
        started = time.perf_counter()
        try:
            result = self._train(iteration, still_owner)
        except Exception as exc:  # any failure ends this iteration, never the worker
            log.exception("iteration %s of project %s failed", iteration.version, iteration.project_id)
            problem = self._problem(iteration.project_id, exc)
            error = f"{type(exc).__name__}: {exc}" + (f"\n{problem.text()}" if problem else "")
            self.store.fail_iteration(iteration.id, error, problem.as_json() if problem else None)
            return
        self.store.succeed_iteration(iteration.id, artifact=result.artifact, artifact_name=result.artifact_name,
                                     scores=result.score_rows, **result.fields)
        log.info(
            "project %s: published %s (%d labels, %.1fs)",
            iteration.project_id, iteration.version, result.fields["labels_used"], time.perf_counter() - started,
        )

    def _head_size(self, project: Project, iteration: Iteration) -> int:
        """How much of the queue to push (0 = all): what annotators can reach before the next round, with margin.

        Four times the labels that arrived over the last round's cycle (its start until this one's), at
        least ``PUSH_HEAD_MIN`` and four rounds' worth of ``retrain_every``, at most ``push_limit``; the
        first round pushes ``push_limit``. Every prediction pushed is a write Label Studio's SQLite makes
        while annotators wait for its lock, and one more to delete when the version is pruned (Label
        Studio deletes predictions one by one, each with its task's counter update, in one transaction):
        a 500-prediction head on a crowd that labels 10 tasks a round was 98 % waste.
        """
        if not self.push_limit:
            return 0
        previous = self.store.previous_succeeded(project.id, iteration.number)
        if previous is None or previous.started_at is None:
            return self.push_limit
        cycle = self.store.labels_received_since(project.id, previous.started_at)
        return min(self.push_limit, max(PUSH_HEAD_MIN, 4 * project.rules.retrain_every, 4 * cycle))

    def prune_versions(self, project_id: int, limit: int | None = None, min_backlog: int = 0,
                       should_stop: Callable[[], bool] = lambda: False) -> dict[str, int]:
        """Delete from Label Studio the predictions of this backend's versions it no longer needs; returns
        ``version -> predictions deleted``.

        Every round pushes a prediction per task of its queue's head; kept forever they slow every later
        read of the project's tasks. What is deleted is decided from what Label Studio *holds* (its
        model-versions count), not from what this process remembers having sent: a DELETE that went
        nowhere, another worker's pruning, a version whose round failed before pushing, none of them can
        make the two drift apart or spend a DELETE on a version with nothing left. Kept: the newest
        ``keep_versions`` succeeded rounds (0 = all), the serving version, versions an auto-labelling run
        used (its labels would vanish), rounds still queued or running, and whatever Label Studio serves
        (a DELETE of it would clear the project's ``model_version``). Failed rounds always go, with the
        model files they wrote.

        Each DELETE holds Label Studio's write lock while annotators submit (Label Studio deletes a version's
        predictions one by one, each with its task's counter update, in one transaction): the training loop
        prunes only when no round runs or waits, stops as soon as ``should_stop()`` (a round was queued),
        pauses after each DELETE like a push does (:class:`PushPace`), caps the DELETEs of one call at
        ``limit``, and deletes nothing while fewer than ``min_backlog`` versions wait (the caller's choice
        while a crowd labels).
        """
        project = self.store.get_project(project_id)
        if project is None:
            return {}
        for version in self.store.failed_versions(project_id, PRUNE_LOOKBACK):
            self.models.discard(project_id, version)
        gateway = self.gateway_for(project)
        held = gateway.model_versions(project_id)
        doomed = self._doomed_versions(project, held)
        if not doomed or len(doomed) < min_backlog:
            return {}
        live = self._serving_in_label_studio(gateway, project, doomed, held)
        deleted: dict[str, int] = {}
        pace = PushPace(self.store, project_id)
        for version in (v for v in doomed if v != live):
            if (limit is not None and len(deleted) >= limit) or should_stop():
                break
            began = time.monotonic()
            deleted[version] = gateway.delete_version(project_id, version)
            time.sleep(max(0.0, pace()) * (time.monotonic() - began))
        if deleted:
            log.info("project %s: deleted from Label Studio the predictions of %s", project_id,
                     ", ".join(f"{v} ({n})" for v, n in deleted.items()))
        return deleted

    def _doomed_versions(self, project: Project, held: dict[str, int]) -> list[str]:
        """The versions Label Studio holds predictions of that this backend made and no longer needs, oldest first."""
        rounds = self.store.version_statuses(project.id)
        succeeded = [v for v, status in rounds if status == "succeeded"]
        keep_n = project.rules.keep_versions
        keep = set(succeeded[-keep_n:] if keep_n > 0 else succeeded) | {project.current_version}
        keep |= self.store.autolabelled_versions(project.id)
        return [v for v, status in rounds
                if v in held and v not in keep and status in ("succeeded", "failed")]

    def _serving_in_label_studio(self, gateway: LabelStudioGateway, project: Project, doomed: list[str],
                                 held: dict[str, int]) -> str | None:
        """The version Label Studio serves; pointed back at ours first when it serves one about to go.

        Label Studio can be left on a round that failed after it was set (its history write failed, or its
        trainer died): it then orders the queue by a version labelloop does not serve.
        """
        live = gateway.project_model_version(project.id)
        serving = project.current_version
        if serving is not None and live in doomed and serving in held and live != serving:
            gateway.publish_version(project.id, serving, project.rules.set_sampling)
            log.warning("project %s: Label Studio served %s, a version labelloop no longer serves; set back to %s",
                        project.id, live, serving)
            return serving
        return live

    def backfill(self, project_id: int, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any] | None:
        """Give every unlabelled pool task the serving version's prediction in Label Studio, between rounds.

        A round pushes only its queue's head (``push_limit``); without this the rest of the pool keeps an
        older version's prediction (or none), and Label Studio's score column mixes versions. What is
        pushed is what the round already computed (its stored rows, :meth:`Store.all_scored_tasks`: no
        model pass), in queue order, paced like a round's push (:class:`PushPace`), and it stops as soon as
        ``should_stop()`` (a round was queued). Resumable and idempotent: each run asks Label Studio which
        unlabelled tasks lack the version, so a task already holding it (pushed earlier, or stored by Label
        Studio from ``/predict``) is never pushed again. What it did is kept in the serving round's history
        (``metrics.backfill``); returns that record, None before the first round.
        """
        project = self.store.get_project(project_id)
        if project is None or project.current_iteration_id is None or not project.current_version:
            return None
        iteration = self.store.get_iteration(project.current_iteration_id)
        assert iteration is not None
        metrics = iteration.metrics or {}
        record = dict(metrics.get("backfill") or {})
        if record.get("status") == "done":
            return record
        began = time.perf_counter()
        record.update(status="running", version=iteration.version, runs=int(record.get("runs", 0)) + 1,
                      pushed=int(record.get("pushed", 0)))
        pushed_by_round = metrics.get("label_studio") or {}
        try:
            if pushed_by_round.get("served_by_predict") == 0 and "push_error" not in pushed_by_round:
                record.update(status="done", pool=iteration.n_pool or 0, missing=0)  # the round pushed its pool
            else:
                self._backfill_push(project, iteration, record, should_stop)
        except Exception as exc:  # recorded for the operator; the next quiet moment tries again
            record.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:2000])
            raise
        finally:
            record["seconds"] = round(float(record.get("seconds", 0.0)) + time.perf_counter() - began, 3)
            record["updated_at"] = utcnow().isoformat()
            self.store.record_backfill(iteration.id, record)
        if record["status"] == "done":
            log.info("project %s: %s now predicts every unlabelled pool task in Label Studio (%d pushed here)",
                     project_id, iteration.version, record["pushed"])
        return record

    def _backfill_push(self, project: Project, iteration: Iteration, record: dict[str, Any],
                       should_stop: Callable[[], bool]) -> None:
        """Push the serving round's stored prediction to each pool task Label Studio lacks it for (see backfill)."""
        version = iteration.version
        gateway = self.gateway_for(project)
        rows = self.store.all_scored_tasks(iteration.id)
        lacking = gateway.unlabelled_without(project.id, version)
        todo = sorted((t for t in rows if t in lacking), key=lambda t: rows[t][1])  # queue order: lowest score first
        record.update(pool=len(rows), missing=len(todo), not_scored=len(lacking) - len(todo))
        spec = read_label_config(project.label_config or gateway.label_config(project.id)).spec
        pace = PushPace(self.store, project.id)
        for start in range(0, len(todo), self.push_batch_size):
            if should_stop():
                record.update(status="stopped", reason="a round was queued (or the lease was lost)")
                return
            batch = [{"task": t, **spec.prediction(rows[t][0], rows[t][1], version, rows[t][2])}
                     for t in todo[start : start + self.push_batch_size]]
            began = time.monotonic()
            gateway.import_predictions(project.id, batch, self.push_batch_size)
            record["pushed"] += len(batch)
            record["paced"] = bool(record.get("paced")) or pace.paced
            if start + len(batch) < len(todo):
                self.store.record_backfill(iteration.id, {**record, "updated_at": utcnow().isoformat()})
                time.sleep(max(0.0, pace()) * (time.monotonic() - began))
        record["paced"] = bool(record.get("paced")) or pace.paced
        record["status"] = "done"

    def _problem(self, project_id: int, exc: Exception) -> Problem | None:
        """The user-fixable reason behind a failed round (a refused key, an unreachable Label Studio, a refused
        version), shown in Label Studio by /setup and on the status page; None for anything else."""
        problem = getattr(exc, "problem", None)
        if isinstance(problem, Problem):
            return problem
        project = self.store.get_project(project_id)
        try:
            gateway = self.gateway_for(project) if project is not None else None
        except Exception:  # no Label Studio configured at all: the error says so already
            return None
        return diagnose(exc, gateway.url, gateway.key_source) if gateway is not None else None

    def _train(self, iteration: Iteration, still_owner: Callable[[], bool]) -> RoundResult:
        """read (labelled) -> split -> fit (the rest listed meanwhile) -> read_pool -> evaluate -> score -> order
        -> stop? -> save -> push/publish; each step timed (their sum is the round's time: none overlap)."""
        project = self.store.get_project(iteration.project_id)
        if project is None:
            raise TrainingError(f"project {iteration.project_id} is unknown")
        gateway = self.gateway_for(project)
        config = read_label_config(project.label_config or gateway.label_config(project.id))
        spec = config.spec
        load_image = ImageFetcher(gateway.url, gateway.auth_headers) if spec.modality == "image" else None
        policy, steps = project.rules, StepTimer()
        # A name: each family's estimator reads it its own way (model.scoring.score).
        strategy = resolve_strategy(policy.strategy, policy.model, spec)
        with steps("read"):  # the labelled tasks; the rest is listed while the model fits
            pending = PendingRead(gateway, self.store, project.id)
            data = collect(pending.labelled, spec)
        try:
            with steps("split"):
                split = split_inputs(data, spec, load_image, policy.validation_fraction)
            # Seeded by the project, not the round: a retrain on unchanged labels gives the same model, so
            # predictions do not churn and the stopping signal's kappa measures what new labels changed, not
            # the seed (a network's fit depends on its seed; a logistic model's does not).
            estimator = build_estimator(policy, spec, random_state=MODEL_SEED, strategy=strategy)
            with steps("fit"):
                estimator.fit(split.train_x, spec.model_targets(split.train_y))
            with steps("read_pool"):  # what is left of the listing once the model is fitted
                read = pending.finish()
                data.pool.extend(collect(pending.unlabelled, spec).pool)
        finally:
            pending.abandon()
        metrics: dict[str, Any] = {"skipped": data.skipped, "validation_source": split.validation_source,
                                   "read": read.stats(), "ignored_controls": list(config.ignored)}
        if getattr(estimator, "calibration_reason_", None):
            metrics["calibration_reason"] = estimator.calibration_reason_
        misaligned = misaligned_spans(estimator, split.train_ids)
        if misaligned:
            metrics["misaligned_spans"] = {"count": len(misaligned), "snapped": sum(m["snapped"] for m in misaligned),
                                           "first": misaligned[:100]}
        with steps("evaluate"):
            evaluation = evaluate_split(estimator, strategy, spec, split, metrics)
        if policy.control_fraction > 0:
            with steps("control"):
                metrics["control"] = self._compare_control(policy, spec, strategy, split, data, iteration.number)
        with steps("score"):
            pool_ids, pool = self._score_pool(estimator, strategy, spec, data, load_image,
                                              with_features=get_queue(policy.queue).needs_features
                                              or policy.warmup > 0)
        with steps("order"):
            stream = pool_streams(pool_ids, policy)
            queued = order(policy.queue, pool, random_state=iteration.number, reserved=stream != "active",
                           warmup=policy.warmup, labels_per_class=len(split.train_y) / max(1, pool.probs.shape[1]))
            difficulty = difficulty_of(pool.uncertainty, evaluation.thresholds)
        metrics["difficulty"] = {**evaluation.thresholds_json(), "counts": bucket_counts(difficulty),
                                 "rated": evaluation.thresholds.source != "default"}
        with steps("stopping"):
            kappa, stop_suggested = self._stopping(project, iteration, spec, pool_ids, pool.labels)
        metrics["stopping"] = {"threshold": policy.stop_kappa, "window": policy.stop_window,
                               "sample_size": min(len(pool_ids), STOP_SAMPLE)}
        with steps("save"):
            artifact, name = self.models.save(project.id, iteration.version, estimator)
            verify_loadable(artifact, policy.model, policy.trusted_types)
        with steps("push"):
            size = self._head_size(project, iteration)
            head = queued.order[:size] if size else queued.order
            predictions = [{"task": pool_ids[i], **spec.prediction(pool.labels[i], queued.scores[i], iteration.version,
                                                                   pool.display[i])} for i in head]
            metrics["label_studio"] = self._publish(gateway, project, iteration, predictions, still_owner)
            metrics["label_studio"]["served_by_predict"] = len(pool_ids) - len(predictions)
            metrics["label_studio"]["head"] = size
        metrics["skipped"] = data.skipped[:100]  # the reasons; n_skipped counts them all
        if policy.control_fraction > 0:
            metrics["control_stream"] = {"share": policy.control_fraction,
                                         "pool_tasks": int((stream == "control").sum())}
        metrics["timings"] = steps.seconds
        fields = {
            "labels_used": len(split.train_x) + len(split.val_x),
            "n_train": len(split.train_x),
            "n_validation": len(split.val_x),
            "n_pool": len(pool_ids),
            "n_skipped": len(data.skipped),
            "strategy": strategy,
            "model": policy.model,
            "trusted_types": list(policy.trusted_types),
            "label_config": config.text,
            "queue": policy.queue,
            "accuracy": evaluation.accuracy,
            "macro_f1": evaluation.macro_f1,
            "metrics": metrics,
            "fit_seconds": steps.seconds["fit"],
            "ece": evaluation.ece,
            "calibration": str(getattr(estimator, "calibration_", "none")),
            "kappa": kappa,
            "mean_uncertainty": mean_normalised_uncertainty(pool.uncertainty) if len(pool) else None,
            "stop_suggested": stop_suggested,
        }
        metrics["validation_stream"] = {"share": policy.validation_fraction,
                                        "pool_tasks": int((stream == "validation").sum())}
        rows = score_rows(pool_ids, pool, queued, difficulty, stream)
        return RoundResult(fields=fields, artifact=artifact, artifact_name=name, score_rows=rows)

    @staticmethod
    def _compare_control(policy: ProjectPolicy, spec: TaskType, strategy: str, split: Split,
                         data: Collected, seed: int) -> dict[str, Any]:
        """Active vs random at equal label counts on this round's validation split (backend/service/control.py).

        The training rows in the control stream are the random picks; rows of the random validation stream
        that train (ground truth is the yardstick) are random picks too, so they count on neither side.
        """
        control = {t for t in split.train_ids if in_control(t, policy.control_fraction, policy.validation_fraction)}
        excluded = {t for t in split.train_ids if in_validation(t, policy.validation_fraction)}
        return compare_control(policy, spec, strategy, split, data.labelled, control, excluded,
                               lambda: build_estimator(policy, spec, random_state=seed), seed)

    def _publish(self, gateway: LabelStudioGateway, project: Project, iteration: Iteration,
                 predictions: list[dict[str, Any]], still_owner: Callable[[], bool]) -> dict[str, Any]:
        """Push the head of the queue, point Label Studio at the version (while the lease is ours), push the rest.

        Label Studio serves the lowest score among the current version's predictions, and the scores
        rise along the queue, so once the first batch (the queue's head) is in, the version can be set:
        annotators get the new order after one batch instead of after the whole push, which under a
        fast crowd is most of a round. A failure after that keeps the round (the order is live; the
        tasks not pushed are answered by ``/predict`` from this round's rows) and is recorded.

        With nothing to push (every task labelled) Label Studio refuses a ``model_version`` that no
        prediction carries: the version is then served by labelloop without being set in Label Studio,
        and the history says so. Any other refusal fails the round.
        """
        began, pace = time.perf_counter(), PushPace(self.store, project.id)
        head, rest = predictions[: self.push_batch_size], predictions[self.push_batch_size :]
        if head:
            self._push(gateway, project, head, pace)
        outcome = self._set_version(gateway, project, iteration, bool(head), still_owner)
        # How long into the push annotators started getting this round's order (the rest is pre-labels).
        outcome["order_live_after_s"] = round(time.perf_counter() - began, 4)
        if rest:
            try:
                self._push(gateway, project, rest, pace)
            except LabelStudioError as exc:
                log.warning("project %s: %s is live with its queue's head; the rest of the push failed: %s",
                            project.id, iteration.version, exc)
                return {**outcome, "pushed": len(head), "push_error": str(exc), "paced": pace.paced}
        outcome["paced"] = pace.paced
        return {**outcome, "pushed": len(predictions)} if outcome["version_set"] else outcome

    def _push(self, gateway: LabelStudioGateway, project: Project, predictions: list[dict[str, Any]],
              pace: PushPace) -> None:
        try:
            gateway.import_predictions(project.id, predictions, self.push_batch_size, pace=pace)
        except LabelStudioError:
            # Perhaps a cached task no longer exists: the next round lists every task afresh.
            self.store.drop_task_cache(project.id)
            raise

    def _set_version(self, gateway: LabelStudioGateway, project: Project, iteration: Iteration, pushed: bool,
                     still_owner: Callable[[], bool]) -> dict[str, Any]:
        """Point Label Studio at the version, or record why it serves without (nothing was pushed)."""
        if not still_owner():
            raise TrainingError("lost the training lease before publishing (another worker took over)")
        try:
            gateway.publish_version(project.id, iteration.version, project.rules.set_sampling)
        except LabelStudioError as exc:
            if pushed:
                problem = diagnose(exc, gateway.url, gateway.key_source) or refused_version(
                    gateway.url, iteration.version, exc)
                raise ProblemError(problem.text(), problem) from exc
            log.warning("project %s: %s serves without being set in Label Studio (no unlabelled task to "
                        "predict): %s", project.id, iteration.version, exc)
            return {"pushed": 0, "version_set": False,
                    "reason": f"no unlabelled task to predict; Label Studio refused the version: {exc}"}
        return {"version_set": True}

    def _stopping(self, project: Project, iteration: Iteration, spec: TaskType, pool_ids: list[int],
                  pool_labels: list[list[str]]) -> tuple[float | None, bool]:
        """Stabilising predictions: agreement with the previous round on a fixed sample of the pool.

        The sample is chosen by task-id hash, so the same tasks are compared round after round for as
        long as they stay unlabelled; the previous round's predictions come from its stored task scores.
        """
        policy = project.rules
        previous = self.store.previous_succeeded(project.id, iteration.number)
        kappa = None
        if previous is not None and pool_ids:
            sample = stable_sample(pool_ids, STOP_SAMPLE, salt=f"project-{project.id}")
            before = self.store.predictions_of(previous.id, [int(t) for t in sample])
            now = dict(zip(pool_ids, pool_labels, strict=True))
            common = [int(t) for t in sample if int(t) in before]
            if common:
                prev_rows = [before[t] for t in common]
                cur_rows = [now[t] for t in common]
                kappa = spec.agreement(prev_rows, cur_rows)
        history = self.store.recent_kappas(project.id, iteration.number, policy.stop_window - 1)
        suggested = StopRule(threshold=policy.stop_kappa, window=policy.stop_window).suggested([*history, kappa])
        return kappa, bool(suggested)

    def _score_pool(self, estimator: Any, strategy: str, spec: TaskType, data: Collected,
                    load_image: ImageLoader | None, with_features: bool = False) -> tuple[list[int], Scored]:
        """Score the unlabelled pool in chunks (bounded memory for image pools); a bad task is skipped.

        Features are only computed when the queue needs them (cluster-aware ordering).
        """
        ids: list[int] = []

        def batches() -> Iterator[list[Any]]:
            for start in range(0, len(data.pool), SCORE_CHUNK):
                chunk_x: list[Any] = []
                for task in data.pool[start : start + SCORE_CHUNK]:
                    try:
                        chunk_x.append(task_input(task, spec, load_image))
                    except BadInput as exc:
                        data.skipped.append({"task_id": task.get("id"), "reason": str(exc)})
                        continue
                    ids.append(int(task["id"]))
                yield chunk_x

        scored = score_batches(estimator, strategy, batches(),
                               with_features=with_features)
        return ids, scored

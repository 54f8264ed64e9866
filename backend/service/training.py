"""One training iteration, start to finish: Label Studio tasks -> fitted model -> scored pool -> history.

The run either publishes a complete new version (artefact, predictions in Label Studio, history row)
or fails with a reason and leaves the previous version serving.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backend.labelstudio.gateway import LabelStudioGateway
from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.labelconfig import ChoiceSpec, parse_label_config
from backend.labelstudio.tasks import BadInput, annotation_labels, make_prediction, pick_annotation, task_input
from backend.store import Store
from backend.store.artifacts import ModelStore
from backend.store.schema import Iteration, Project
from model.calibration import expected_calibration_error
from model.difficulty import DifficultyThresholds, bucket, bucket_counts, fit_thresholds
from model.estimators import make_estimator
from model.evaluation import evaluate
from model.queue import get_queue, scores_for_order
from model.stopping import StopRule, mean_normalised_uncertainty, prediction_agreement_kappa, stable_sample
from model.thresholds import precision_coverage_curve
from model.uncertainty import confidence_score, decision_confidence, get_strategy, uncertainty_for

log = logging.getLogger(__name__)

SCORE_CHUNK = 1000
#: Unlabelled tasks compared between consecutive iterations for the stopping signal.
STOP_SAMPLE = 2000
#: How many versions just past the retention window each round re-checks for predictions to delete.
PRUNE_LOOKBACK = 5


class TrainingError(RuntimeError):
    """A reason the iteration cannot produce a model (recorded on the failed iteration)."""


def in_validation(task_id: int, fraction: float) -> bool:
    """Deterministic held-out split by task id: the same tasks stay out in every iteration."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"labelloop-validation:{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass
class Collected:
    """Tasks sorted into labelled examples and the unlabelled pool."""

    labelled: list[tuple[dict[str, Any], list[str]]] = field(default_factory=list)
    pool: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


def collect(tasks: Iterable[dict[str, Any]], spec: ChoiceSpec) -> Collected:
    """Pick each task's label (newest usable annotation, ground truth first) or put it in the pool."""
    out = Collected()
    for task in tasks:
        annotation = pick_annotation(task.get("annotations") or [])
        if annotation is None:
            out.pool.append(task)
            continue
        try:
            labels = annotation_labels(annotation, spec, where=f"annotation {annotation.get('id')}")
        except BadInput as exc:
            out.skipped.append({"task_id": task.get("id"), "reason": str(exc)})
            continue
        if labels is None:
            out.skipped.append({"task_id": task.get("id"), "reason": f"annotation has no '{spec.from_name}' result"})
            continue
        out.labelled.append((task, labels))
    return out


def _targets(spec: ChoiceSpec, labels: list[list[str]]) -> list[Any]:
    return labels if spec.multi_label else [row[0] for row in labels]


def _truth(spec: ChoiceSpec, labels: list[list[str]]) -> np.ndarray:
    """Ground truth as the calibration metrics want it: class indices, or a 0/1 indicator matrix."""
    index = {name: i for i, name in enumerate(spec.labels)}
    if not spec.multi_label:
        return np.array([index[row[0]] for row in labels], dtype=int)
    out = np.zeros((len(labels), len(spec.labels)), dtype=int)
    for i, row in enumerate(labels):
        out[i, [index[name] for name in row]] = 1
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
    trusts. Otherwise the deterministic hash split by task id. Either way the same tasks stay out in
    every iteration, so metrics are comparable across iterations.
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
    return {t for t in ids if in_validation(t, fraction)}, "hash"


class IterationRunner:
    """Runs one claimed iteration. Stateless between runs; shared by the server and the CLI."""

    def __init__(
        self,
        store: Store,
        models: ModelStore,
        gateway_for: Callable[[Project], LabelStudioGateway],
        push_batch_size: int = 500,
    ) -> None:
        self.store = store
        self.models = models
        self.gateway_for = gateway_for
        self.push_batch_size = push_batch_size

    def run(self, iteration: Iteration, still_owner: Callable[[], bool]) -> None:
        """Run and record the outcome. Never raises for a training failure: it is stored instead."""
        started = time.perf_counter()
        try:
            fields, artifact, name, scores = self._train(iteration, still_owner)
        except Exception as exc:  # any failure ends this iteration, never the worker
            log.exception("iteration %s of project %s failed", iteration.version, iteration.project_id)
            self.store.fail_iteration(iteration.id, f"{type(exc).__name__}: {exc}")
            return
        self.store.succeed_iteration(iteration.id, artifact=artifact, artifact_name=name, scores=scores, **fields)
        log.info(
            "project %s: published %s (%d labels, %.1fs)",
            iteration.project_id, iteration.version, fields["labels_used"], time.perf_counter() - started,
        )
        try:
            self.prune_versions(iteration.project_id)
        except Exception:  # housekeeping: the new version is already live, never fail it for this
            log.exception("project %s: deleting old predictions from Label Studio failed", iteration.project_id)

    def prune_versions(self, project_id: int) -> list[str]:
        """Delete Label Studio's predictions of versions older than the newest ``keep_versions``.

        Every round pushes a prediction per unlabelled task; kept forever they slow every later read
        of the project's tasks. Only versions this backend produced are touched, never those an
        auto-labelling run used (its labels would vanish), and only the few just past the window (so
        a round whose clean-up failed is caught up next time without re-deleting the whole history).
        """
        project = self.store.get_project(project_id)
        if project is None or project.keep_versions <= 0:
            return []
        versions = self.store.versions(project_id)
        protected = self.store.autolabelled_versions(project_id)
        stale = versions[max(0, len(versions) - project.keep_versions - PRUNE_LOOKBACK) : -project.keep_versions]
        gateway = self.gateway_for(project)
        deleted = []
        for version in stale:
            if version not in protected and gateway.delete_version(project_id, version):
                deleted.append(version)
        if deleted:
            log.info("project %s: deleted the predictions of %s from Label Studio", project_id, ", ".join(deleted))
        return deleted

    def _train(self, iteration: Iteration, still_owner: Callable[[], bool]):  # type: ignore[no-untyped-def]
        project = self.store.get_project(iteration.project_id)
        if project is None:
            raise TrainingError(f"project {iteration.project_id} is unknown")
        gateway = self.gateway_for(project)
        config = project.label_config or gateway.label_config(project.id)
        spec = parse_label_config(config)
        load_image = ImageFetcher(gateway.url, gateway.auth_headers) if spec.modality == "image" else None

        data = collect(gateway.iter_tasks(project.id), spec)
        held_out, validation_source = validation_split(data, project.validation_fraction)
        train_x: list[Any] = []
        train_y: list[list[str]] = []
        val_x: list[Any] = []
        val_y: list[list[str]] = []
        val_ids: list[int] = []
        for task, labels in data.labelled:
            try:
                x = task_input(task, spec, load_image)
            except BadInput as exc:
                data.skipped.append({"task_id": task.get("id"), "reason": str(exc)})
                continue
            if int(task["id"]) in held_out:
                val_ids.append(int(task["id"]))
                val_x.append(x)
                val_y.append(labels)
            else:
                train_x.append(x)
                train_y.append(labels)
        if not train_x:
            raise TrainingError(
                f"no labelled tasks to train on ({len(data.labelled)} labelled, {len(val_x)} held out "
                f"for validation, {len(data.skipped)} skipped)"
            )

        # The strategy decides the estimator kind: MC-dropout strategies need the torch MLP, committee
        # strategies a bootstrapped committee, softmax ones the plain logistic model.
        estimator = make_estimator(project.strategy, spec.modality, list(spec.labels), spec.multi_label,
                                   random_state=iteration.number, calibration=project.calibration)
        t0 = time.perf_counter()
        estimator.fit(train_x, _targets(spec, train_y))
        fit_seconds = time.perf_counter() - t0

        strategy = get_strategy(project.strategy)
        metrics: dict[str, Any] = {"skipped": data.skipped[:100], "validation_source": validation_source}
        calibration_used = str(getattr(estimator, "calibration_", "none"))
        if getattr(estimator, "calibration_reason_", None):
            metrics["calibration_reason"] = estimator.calibration_reason_
        accuracy = macro_f1 = ece = None
        thresholds = DifficultyThresholds(easy_below=0.2, hard_above=0.6, source="default")
        if val_x:
            val_probs, val_uncertainty = uncertainty_for(estimator, strategy, val_x, multi_label=spec.multi_label)
            predicted = estimator.labels_from_proba(val_probs)
            report = evaluate(_targets(spec, val_y), _targets(spec, predicted), list(spec.labels),
                              multi_label=spec.multi_label)
            accuracy, macro_f1 = report["accuracy"], report["macro_f1"]
            metrics["per_class"] = report["per_class"]
            metrics["confusion"] = report.get("confusion")
            correct = np.array([set(p) == set(t) for p, t in zip(predicted, val_y, strict=True)])
            thresholds = fit_thresholds(val_uncertainty, correct)
            ece = expected_calibration_error(val_probs, _truth(spec, val_y), multi_label=spec.multi_label)
            # What auto-labelling needs to pick a threshold for any target precision later, for this version.
            val_confidence = decision_confidence(val_probs, multi_label=spec.multi_label)
            metrics["validation"] = {
                "task_ids": val_ids,
                "confidence": [round(float(c), 6) for c in val_confidence],
                "correct": [int(c) for c in correct],
            }
            metrics["autolabel_curve"] = _curve_json(val_confidence, correct)

        queue = get_queue(project.queue)
        pool_ids, pool_labels, uncertainty, features = self._score_pool(
            estimator, strategy, spec, data, load_image, with_features=project.queue == "cluster"
        )
        confidence = confidence_score(uncertainty)
        queued = queue.order(uncertainty, features=features, random_state=iteration.number)
        scores = scores_for_order(confidence, queued.order)  # Label Studio serves ascending score
        rank = np.empty(len(queued.order), dtype=int)
        rank[queued.order] = np.arange(1, len(queued.order) + 1)
        difficulty = bucket(uncertainty, thresholds.easy_below, thresholds.hard_above)
        metrics["difficulty"] = {
            "easy_below": thresholds.easy_below,
            "hard_above": thresholds.hard_above,
            "source": thresholds.source,
            "counts": bucket_counts(difficulty),
        }

        kappa, stop_suggested = self._stopping(project, iteration, spec, pool_ids, pool_labels)
        metrics["stopping"] = {"threshold": project.stop_kappa, "window": project.stop_window,
                               "sample_size": min(len(pool_ids), STOP_SAMPLE)}

        artifact, name = self.models.save(project.id, iteration.version, estimator)
        predictions = [
            {"task": tid, **make_prediction(spec, labels, score, iteration.version)}
            for tid, labels, score in zip(pool_ids, pool_labels, scores, strict=True)
        ]
        gateway.import_predictions(project.id, predictions, self.push_batch_size)
        if not still_owner():
            raise TrainingError("lost the training lease before publishing (another worker took over)")
        gateway.publish_version(project.id, iteration.version, project.set_sampling)

        score_rows = [
            {
                "task_id": tid,
                "predicted": labels,
                "score": float(s),
                "uncertainty": float(u),
                "difficulty": str(d),
                "rank": int(r),
            }
            for tid, labels, s, u, d, r in zip(
                pool_ids, pool_labels, scores, uncertainty, difficulty, rank, strict=True
            )
        ]
        fields = {
            "labels_used": len(train_x) + len(val_x),
            "n_train": len(train_x),
            "n_validation": len(val_x),
            "n_pool": len(pool_ids),
            "n_skipped": len(data.skipped),
            "strategy": project.strategy,
            "queue": project.queue,
            "accuracy": accuracy,
            "macro_f1": macro_f1,
            "metrics": metrics,
            "fit_seconds": fit_seconds,
            "ece": ece,
            "calibration": calibration_used,
            "kappa": kappa,
            "mean_uncertainty": mean_normalised_uncertainty(uncertainty) if len(uncertainty) else None,
            "stop_suggested": stop_suggested,
        }
        return fields, artifact, name, score_rows

    def _stopping(self, project: Project, iteration: Iteration, spec: ChoiceSpec, pool_ids: list[int],
                  pool_labels: list[list[str]]) -> tuple[float | None, bool]:
        """Stabilising predictions: agreement with the previous round on a fixed sample of the pool.

        The sample is chosen by task-id hash, so the same tasks are compared round after round for as
        long as they stay unlabelled; the previous round's predictions come from its stored task scores.
        """
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
                kappa = prediction_agreement_kappa(
                    _targets(spec, prev_rows), _targets(spec, cur_rows), classes=list(spec.labels),
                    multi_label=spec.multi_label,
                )
        history = self.store.recent_kappas(project.id, iteration.number, project.stop_window - 1)
        suggested = StopRule(threshold=project.stop_kappa, window=project.stop_window).suggested([*history, kappa])
        return kappa, bool(suggested)

    def _score_pool(self, estimator, strategy, spec, data: Collected, load_image,  # type: ignore[no-untyped-def]
                    with_features: bool = False):
        """Predict the unlabelled pool in chunks (bounded memory for image pools).

        Features are only kept when the queue needs them (cluster-aware ordering).
        """
        ids: list[int] = []
        labels: list[list[str]] = []
        uncertainty: list[np.ndarray] = []
        features: list[Any] = []
        for start in range(0, len(data.pool), SCORE_CHUNK):
            chunk_ids: list[int] = []
            chunk_x: list[Any] = []
            for task in data.pool[start : start + SCORE_CHUNK]:
                try:
                    chunk_x.append(task_input(task, spec, load_image))
                except BadInput as exc:
                    data.skipped.append({"task_id": task.get("id"), "reason": str(exc)})
                    continue
                chunk_ids.append(int(task["id"]))
            if not chunk_x:
                continue
            probs, chunk_uncertainty = uncertainty_for(estimator, strategy, chunk_x, multi_label=spec.multi_label)
            ids.extend(chunk_ids)
            labels.extend(estimator.labels_from_proba(probs))
            uncertainty.append(chunk_uncertainty)
            if with_features:
                features.append(estimator.transform(chunk_x))
        values = np.concatenate(uncertainty) if uncertainty else np.zeros(0)
        return ids, labels, values, _stack(features) if with_features and features else None


def _stack(blocks: list[Any]) -> Any:
    """Stack feature chunks, sparse (tf-idf) or dense (pixels)."""
    import scipy.sparse as sp

    return sp.vstack(blocks).tocsr() if sp.issparse(blocks[0]) else np.vstack(blocks)

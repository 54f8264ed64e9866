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

from backend.images import ImageFetcher
from backend.labelconfig import ChoiceSpec, parse_label_config
from backend.labelstudio import LabelStudioGateway
from backend.model_store import ModelStore
from backend.schema import Iteration, Project
from backend.store import Store
from backend.tasks import BadInput, annotation_labels, make_prediction, pick_annotation, task_input
from model.difficulty import bucket
from model.estimators import ChoiceClassifier
from model.evaluation import evaluate
from model.uncertainty import confidence_score, get_strategy

log = logging.getLogger(__name__)

SCORE_CHUNK = 1000


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

    def _train(self, iteration: Iteration, still_owner: Callable[[], bool]):  # type: ignore[no-untyped-def]
        project = self.store.get_project(iteration.project_id)
        if project is None:
            raise TrainingError(f"project {iteration.project_id} is unknown")
        gateway = self.gateway_for(project)
        config = project.label_config or gateway.label_config(project.id)
        spec = parse_label_config(config)
        load_image = ImageFetcher(gateway.url, gateway.auth_headers) if spec.modality == "image" else None

        data = collect(gateway.iter_tasks(project.id), spec)
        train_x: list[Any] = []
        train_y: list[list[str]] = []
        val_x: list[Any] = []
        val_y: list[list[str]] = []
        for task, labels in data.labelled:
            try:
                x = task_input(task, spec, load_image)
            except BadInput as exc:
                data.skipped.append({"task_id": task.get("id"), "reason": str(exc)})
                continue
            if in_validation(int(task["id"]), project.validation_fraction):
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

        estimator = ChoiceClassifier(modality=spec.modality, classes=list(spec.labels), multi_label=spec.multi_label)
        t0 = time.perf_counter()
        estimator.fit(train_x, _targets(spec, train_y))
        fit_seconds = time.perf_counter() - t0

        metrics: dict[str, Any] = {"skipped": data.skipped[:100]}
        accuracy = macro_f1 = None
        if val_x:
            predicted = estimator.predict_labels(val_x)
            report = evaluate(_targets(spec, val_y), _targets(spec, predicted), list(spec.labels),
                              multi_label=spec.multi_label)
            accuracy, macro_f1 = report["accuracy"], report["macro_f1"]
            metrics["per_class"] = report["per_class"]

        strategy = get_strategy(project.strategy)
        pool_ids, pool_labels, uncertainty = self._score_pool(estimator, strategy, spec, data, load_image)
        scores = confidence_score(uncertainty)
        difficulty = bucket(uncertainty)
        order = np.argsort(scores, kind="stable")  # lowest confidence first: the order Label Studio serves
        rank = np.empty(len(order), dtype=int)
        rank[order] = np.arange(1, len(order) + 1)

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
            "accuracy": accuracy,
            "macro_f1": macro_f1,
            "metrics": metrics,
            "fit_seconds": fit_seconds,
        }
        return fields, artifact, name, score_rows

    def _score_pool(self, estimator, strategy, spec, data: Collected, load_image):  # type: ignore[no-untyped-def]
        """Predict the unlabelled pool in chunks (bounded memory for image pools)."""
        ids: list[int] = []
        labels: list[list[str]] = []
        uncertainty: list[np.ndarray] = []
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
            probs = estimator.predict_proba(chunk_x)
            ids.extend(chunk_ids)
            labels.extend(estimator.labels_from_proba(probs))
            uncertainty.append(strategy(probs, multi_label=spec.multi_label))
        values = np.concatenate(uncertainty) if uncertainty else np.zeros(0)
        return ids, labels, values

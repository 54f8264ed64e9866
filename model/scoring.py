"""The scoring kernel: one way from inputs to labels, uncertainty and confidence, and from those to a queue.

``/predict``, a training round (validation and pool), auto-labelling and ``labelloop simulate`` all
call :func:`score` and :func:`order`, so a new acquisition function, queue or model changes one room
and every caller gets it. Arrays in, arrays out: nothing here knows Label Studio or SQL.

The estimator follows the scikit-learn contract: ``classes_`` and ``predict_proba``; sampled
strategies (MC dropout, committees) also need ``predict_proba_samples``, feature-using queues need
``transform``. ``multi_label`` (an attribute or the caller's word) says whether the columns are
independent yes/no probabilities rather than one distribution.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.percontrol import PerControl
from model.queue import (
    QueueStrategy,
    blend_orders,
    cold_start_share,
    get_queue,
    place_at_random,
    representative_order,
    scores_for_order,
)
from model.uncertainty import AcquisitionFunction, confidence_score, decision_confidence, uncertainty_for


@dataclass(frozen=True)
class Scored:
    """What one pass of the model over a batch says, per item (all arrays in input order).

    ``confidence`` is ``1 - uncertainty`` (the score Label Studio orders by: lower = served first);
    ``decision`` is the probability that the predicted label set is right (what auto-labelling
    thresholds); ``features`` are kept only when a queue asked for them.
    """

    probs: np.ndarray
    labels: list[list[str]]
    uncertainty: np.ndarray
    confidence: np.ndarray
    decision: np.ndarray
    features: Any = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, indices: np.ndarray) -> Scored:
        """The rows at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=int)
        features = self.features[idx] if self.features is not None else None
        return Scored(self.probs[idx], [self.labels[i] for i in idx], self.uncertainty[idx], self.confidence[idx],
                      self.decision[idx], features)


@dataclass(frozen=True)
class Ordered:
    """A pool as a queue: ``order`` (pool indices, first served first), each item's 1-based ``rank``,
    and the ``scores`` to push so that Label Studio's ascending sort reproduces the order."""

    order: np.ndarray
    rank: np.ndarray
    scores: np.ndarray


def labels_from_proba(classes: Sequence[Any], probs: np.ndarray, multi_label: bool,
                      threshold: float = 0.5) -> list[list[str]]:
    """Label names per row: the top class, or every class at or above ``threshold`` when multi-label."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"expected probabilities of shape (n, {len(classes)}), got {probs.shape}")
    names = [str(c) for c in classes]
    if multi_label:
        return [[names[j] for j in np.flatnonzero(row >= threshold)] for row in probs]
    return [[names[j]] for j in probs.argmax(axis=1)]


def score(estimator: Any, strategy: AcquisitionFunction | str, X: Sequence[Any], *,
          multi_label: bool | None = None, with_features: bool = False) -> Scored:
    """Run the model once over ``X``: probabilities, labels, uncertainty, confidence (and features)."""
    if _predicts_boxes(estimator):  # a detector: per image its boxes (model.detection.kernel)
        from model.detection.kernel import score_boxes

        return score_boxes(estimator, strategy, X, with_features=with_features)
    if isinstance(estimator, PerControl):  # several controls: each scored by its own model, joined per task
        return _score_per_control(estimator, strategy, X, with_features)
    if multi_label is None:
        multi_label = bool(getattr(estimator, "multi_label", False))
    if len(X) == 0:
        width = len(getattr(estimator, "classes_", ()))
        return Scored(np.zeros((0, width)), [], np.zeros(0), np.zeros(0), np.zeros(0),
                      None if not with_features else np.zeros((0, 0)))
    probs, uncertainty = uncertainty_for(estimator, strategy, X, multi_label=multi_label)
    return Scored(
        probs=probs,
        labels=labels_from_proba(estimator.classes_, probs, multi_label),
        uncertainty=np.asarray(uncertainty, dtype=np.float64),
        confidence=confidence_score(uncertainty),
        decision=decision_confidence(probs, multi_label=multi_label),
        features=estimator.transform(X) if with_features else None,
    )


def score_batches(estimator: Any, strategy: AcquisitionFunction | str, batches: Iterable[Sequence[Any]], *,
                  multi_label: bool | None = None, with_features: bool = False) -> Scored:
    """:func:`score` batch by batch (bounded memory for large pools), joined into one result."""
    parts = [score(estimator, strategy, batch, multi_label=multi_label, with_features=with_features)
             for batch in batches if len(batch)]
    if not parts:
        return score(estimator, strategy, [], multi_label=multi_label, with_features=with_features)
    return Scored(
        probs=np.vstack([p.probs for p in parts]),
        labels=[label for p in parts for label in p.labels],
        uncertainty=np.concatenate([p.uncertainty for p in parts]),
        confidence=np.concatenate([p.confidence for p in parts]),
        decision=np.concatenate([p.decision for p in parts]),
        features=_stack([p.features for p in parts]) if with_features else None,
    )


def order(queue: QueueStrategy | str, scored: Scored, random_state: int | None = None,
          reserved: np.ndarray | None = None, *, warmup: float = 0.0,
          labels_per_class: float | None = None) -> Ordered:
    """Turn a scored pool into a queue with the ``queue`` strategy (features when it needs them).

    ``reserved`` (a boolean mask over the pool) marks items kept out of the strategy's ordering and
    placed at uniformly random positions instead (:func:`model.queue.place_at_random`): a random
    validation stream that annotators label like any other task.

    Cold start: with ``warmup`` K > 0 and ``labels_per_class`` L (the project's labelled tasks /
    its number of classes) below K, a share ``1 - L / K`` of the queue's positions, spread evenly,
    serve representative tasks instead (:func:`model.queue.representative_order`: the most typical
    task of each of ``ceil(K * classes)`` k-means clusters of the features), so the first labels
    cover the pool rather than the model's early outliers; from K labels per class on the queue is
    exactly the ``queue`` strategy's. It needs ``scored.features``; without them (a model that
    cannot ``transform``) the cold start is skipped. ``warmup=0`` (default) changes nothing.
    """
    if isinstance(queue, str):
        queue = get_queue(queue)
    if not len(scored):  # nothing left to queue (every task labelled): an empty queue, not an error
        empty = np.zeros(0, dtype=int)
        return Ordered(order=empty, rank=empty, scores=np.zeros(0))
    if queue.needs_features and scored.features is None:
        raise ValueError(f"the {queue.name!r} queue needs features: score with with_features=True")
    mask = np.zeros(len(scored), dtype=bool) if reserved is None else np.asarray(reserved, dtype=bool)
    main = np.flatnonzero(~mask)
    if main.size:
        main = main[_main_order(queue, scored, main, random_state, warmup, labels_per_class)]
    merged = place_at_random(main, np.flatnonzero(mask), random_state) if mask.any() else main
    rank = np.empty(len(merged), dtype=int)
    rank[merged] = np.arange(1, len(merged) + 1)
    return Ordered(order=merged, rank=rank, scores=scores_for_order(scored.confidence, merged))


def _main_order(queue: QueueStrategy, scored: Scored, main: np.ndarray, random_state: int | None,
                warmup: float, labels_per_class: float | None) -> np.ndarray:
    """The strategy's order of the ``main`` rows, blended with a representative order while warming up."""
    uncertainty, features = scored.uncertainty[main], _rows(scored.features, main)
    share = cold_start_share(labels_per_class, warmup)
    if share <= 0 or features is None:
        return queue.order(uncertainty, features=features, random_state=random_state).order
    n_clusters = math.ceil(warmup * max(1, scored.probs.shape[1]))
    typical = representative_order(uncertainty, features, n_clusters, random_state=random_state).order
    if share >= 1:  # nothing of the strategy's order would be served: do not compute it
        return typical
    return blend_orders(typical, queue.order(uncertainty, features=features, random_state=random_state).order, share)


def _rows(features: Any, idx: np.ndarray) -> Any:
    return None if features is None else features[idx]


def _stack(blocks: list[Any]) -> Any:
    """Stack feature blocks, sparse (tf-idf) or dense (pixels)."""
    import scipy.sparse as sp

    return sp.vstack(blocks).tocsr() if sp.issparse(blocks[0]) else np.vstack(blocks)


def _predicts_boxes(estimator: Any) -> bool:
    """Whether ``estimator`` is a detector (imports nothing heavy: the detector module loads torch lazily)."""
    from model.detection.detector import BoxDetector

    return isinstance(estimator, BoxDetector)


def _score_per_control(estimator: PerControl, strategy: AcquisitionFunction | str, X: Sequence[Any],
                       with_features: bool) -> Scored:
    """Per task ``{control: its answer}``; a task is as uncertain as its most uncertain question, and as
    sure of being right as its least sure answer."""
    parts = {name: score(estimator.estimators_[name], strategy, X) for name in estimator.controls_}
    n = len(X)
    stacked = np.vstack([p.uncertainty for p in parts.values()]) if n else np.zeros((len(parts), 0))
    uncertainty = stacked.max(axis=0) if len(parts) else np.zeros(n)
    return Scored(
        probs=np.hstack([p.probs for p in parts.values()]) if n else np.zeros((0, 0)),
        labels=[{name: p.labels[i] for name, p in parts.items()} for i in range(n)],
        uncertainty=uncertainty,
        confidence=confidence_score(uncertainty),
        decision=np.vstack([p.decision for p in parts.values()]).min(axis=0) if n else np.zeros(0),
        features=(estimator.transform(X) if n else np.zeros((0, 0))) if with_features else None,
    )

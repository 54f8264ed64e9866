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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.queue import QueueStrategy, get_queue, place_at_random, scores_for_order
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
          reserved: np.ndarray | None = None) -> Ordered:
    """Turn a scored pool into a queue with the ``queue`` strategy (features when it needs them).

    ``reserved`` (a boolean mask over the pool) marks items kept out of the strategy's ordering and
    placed at uniformly random positions instead (:func:`model.queue.place_at_random`): a random
    validation stream that annotators label like any other task.
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
        main = main[queue.order(scored.uncertainty[main], features=_rows(scored.features, main),
                                random_state=random_state).order]
    merged = place_at_random(main, np.flatnonzero(mask), random_state) if mask.any() else main
    rank = np.empty(len(merged), dtype=int)
    rank[merged] = np.arange(1, len(merged) + 1)
    return Ordered(order=merged, rank=rank, scores=scores_for_order(scored.confidence, merged))


def _rows(features: Any, idx: np.ndarray) -> Any:
    return None if features is None else features[idx]


def _stack(blocks: list[Any]) -> Any:
    """Stack feature blocks, sparse (tf-idf) or dense (pixels)."""
    import scipy.sparse as sp

    return sp.vstack(blocks).tocsr() if sp.issparse(blocks[0]) else np.vstack(blocks)

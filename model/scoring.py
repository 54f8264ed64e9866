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
from typing import Any

import numpy as np

from model.calibration import shown_confidence
from model.queue import (
    QueueStrategy,
    blend_orders,
    cold_start_share,
    get_queue,
    place_at_random,
    representative_order,
    scores_for_order,
)
from model.scored import Ordered, Scored, labels_from_proba
from model.uncertainty import AcquisitionFunction, confidence_score, decision_confidence, uncertainty_for

__all__ = ["Ordered", "Scored", "labels_from_proba", "order", "score", "score_batches"]


def score(estimator: Any, strategy: AcquisitionFunction | str, X: Sequence[Any], *,
          multi_label: bool | None = None, with_features: bool = False) -> Scored:
    """Run the model once over ``X``: probabilities, labels, uncertainty, confidence (and features).

    An estimator whose answers are not one class distribution per item (a detector's boxes, a tagger's
    spans, one model per control) scores itself: it has ``score_items(strategy, X, with_features=...)``
    returning a :class:`Scored`. The kernel knows no label family; the family's estimator does.
    """
    score_items = getattr(estimator, "score_items", None)
    if callable(score_items):
        return score_items(strategy, X, with_features=with_features)
    if multi_label is None:
        multi_label = bool(getattr(estimator, "multi_label", False))
    if len(X) == 0:
        return Scored.empty(len(getattr(estimator, "classes_", ())), with_features)
    probs, uncertainty = uncertainty_for(estimator, strategy, X, multi_label=multi_label)
    temperature = float(getattr(estimator, "shown_temperature_", 1.0))
    return Scored(
        probs=probs,
        labels=labels_from_proba(estimator.classes_, probs, multi_label),
        uncertainty=np.asarray(uncertainty, dtype=np.float64),
        confidence=confidence_score(uncertainty),
        decision=decision_confidence(probs, multi_label=multi_label),
        features=estimator.transform(X) if with_features else None,
        shown=shown_confidence(probs, temperature) if temperature != 1.0 and not multi_label else None,
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
        shown=None if all(p.shown is None for p in parts) else np.concatenate([p.display for p in parts]),
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

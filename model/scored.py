"""What the scoring kernel returns: a scored batch and a queue. A leaf module: it imports no model family.

Every label family (classes, boxes, spans) answers in these shapes, so the kernel, the queue, the
history and the replay treat any task alike; a family that scores its own items
(``estimator.score_items``, see :func:`model.scoring.score`) builds a :class:`Scored` from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Scored:
    """What one pass of the model over a batch says, per item (all arrays in input order).

    ``labels`` holds each item's prediction in its family's JSON-able form (class names, boxes,
    spans, or ``{control: answer}`` for several controls); ``confidence`` is ``1 - uncertainty``
    (the score Label Studio orders by: lower = served first); ``decision`` is the probability that
    the prediction is right (what auto-labelling thresholds); ``shown``, when set, is that probability
    as annotators read it (softened on the round's validation split, model.calibration.shown_temperature;
    :attr:`display` falls back to ``decision``); ``features`` are kept only when a queue asked for them.
    """

    probs: np.ndarray
    labels: list[Any]
    uncertainty: np.ndarray
    confidence: np.ndarray
    decision: np.ndarray
    features: Any = None
    shown: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def display(self) -> np.ndarray:
        """The probability a prediction's regions show (see the class docstring)."""
        return self.decision if self.shown is None else self.shown

    def take(self, indices: np.ndarray) -> Scored:
        """The rows at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=int)
        features = self.features[idx] if self.features is not None else None
        return Scored(self.probs[idx], [self.labels[i] for i in idx], self.uncertainty[idx], self.confidence[idx],
                      self.decision[idx], features, None if self.shown is None else self.shown[idx])

    @classmethod
    def empty(cls, width: int = 0, with_features: bool = False) -> Scored:
        """A pass over no items (``width`` probability columns)."""
        nothing = np.zeros(0)
        return cls(np.zeros((0, width)), [], nothing, nothing, nothing, np.zeros((0, 0)) if with_features else None)


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

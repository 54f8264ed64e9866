"""A detector's pass over images as a :class:`model.scored.Scored` (``BoxDetector.score_items``).

:func:`model.scoring.score` asks the detector to score itself, which lands here, so ``/predict``, a
round (validation and pool), auto-labelling and the queue treat an image like any other task: per
image a prediction (its boxes, JSON-able), an uncertainty, the confidence Label Studio sorts by,
and a decision confidence.
``probs`` is a per-image class-presence matrix (the best box score of each class): enough for the
queue's features and a calibration check, since a detector has no single distribution per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from model.detection.boxes import Detections
from model.detection.uncertainty import ALIASES, DETECTION_STRATEGIES, DetectionStrategy, score_images
from model.scored import Scored

#: The detection strategy for a classification strategy name that has no detection namesake.
SAMPLED_FALLBACK = "localization"
SINGLE_FALLBACK = "entropy"


def detection_strategy_name(strategy: Any) -> str:
    """The detection heuristic a project's ``strategy`` setting means for boxes.

    Names shared with classification (``margin``, ``entropy``, ``least_confidence``, ``random``,
    ``mc_dropout``) carry over; another sampled strategy (BALD, committees) becomes box localisation
    instability across MC-dropout passes, another single-pass one box entropy.
    """
    if isinstance(strategy, DetectionStrategy):
        return strategy.name
    name = strategy if isinstance(strategy, str) else str(getattr(strategy, "name", ""))
    if name in DETECTION_STRATEGIES or name in ALIASES:
        return name
    sampled = getattr(strategy, "input_ndim", 2) == 3
    if isinstance(strategy, str):
        from model.uncertainty import STRATEGIES

        sampled = name in STRATEGIES and STRATEGIES[name].input_ndim == 3
    return SAMPLED_FALLBACK if sampled else SINGLE_FALLBACK


def boxes_json(detections: Detections, digits: int = 5) -> list[dict[str, Any]]:
    """One image's boxes as the backend stores and answers them: ``{"box", "label", "score"}`` each."""
    return [
        {"box": [round(float(v), digits) for v in box], "label": label, "score": round(float(score), digits)}
        for box, label, score in zip(detections.boxes, detections.labels, detections.scores, strict=True)
    ]


def class_presence(detections: Sequence[Detections], classes: Sequence[str]) -> np.ndarray:
    """(n_images, n_classes): the best score of a box of each class in each image (0 without one)."""
    index = {str(c): j for j, c in enumerate(classes)}
    out = np.zeros((len(detections), len(classes)), dtype=np.float64)
    for i, d in enumerate(detections):
        for label, s in zip(d.labels, d.scores, strict=True):
            j = index.get(label)
            if j is not None:
                out[i, j] = max(out[i, j], float(s))
    return out


def score_boxes(estimator: Any, strategy: Any, X: Sequence[Any], *, with_features: bool = False) -> Scored:
    """Run the detector once over ``X`` and return a :class:`model.scored.Scored` (labels = box lists)."""
    classes = [str(c) for c in getattr(estimator, "classes_", [])]
    if len(X) == 0:
        return Scored.empty(len(classes), with_features)
    out = score_images(estimator, detection_strategy_name(strategy), X, with_features=with_features)
    return Scored(
        probs=class_presence(out.detections, classes),
        labels=[boxes_json(d) for d in out.detections],
        uncertainty=np.asarray(out.uncertainty, dtype=np.float64),
        confidence=np.asarray(out.confidence, dtype=np.float64),
        decision=np.asarray(out.decision, dtype=np.float64),
        features=out.features if with_features else None,
    )

"""Detection metrics: COCO-style mAP, box matching, and per-class precision / recall / F1.

Conventions (COCO's, minus its crowd and area-range machinery):

* a predicted box is a true positive at IoU threshold ``t`` if it has the same class as an
  unmatched ground-truth box of its image with IoU >= ``t``; predictions are matched greedily in
  descending score order, each to the unmatched truth box it overlaps most, and each truth box is
  used at most once (a second detection of one object is a false positive);
* AP of a class is the area under its interpolated precision-recall curve sampled at the 101
  recall points 0, 0.01, ..., 1 (precision made monotone from the right, 0 beyond the highest
  recall reached), over all images at once;
* ``map50`` averages AP at IoU 0.5 over the classes that have ground truth; ``map50_95`` averages
  AP over IoU 0.50, 0.55, ..., 0.95 and those classes. A class without ground truth is ignored (its
  predictions cannot be scored), as in COCO; with no ground truth at all both are 0.

Besides the ranking metrics, ``per_class`` reports precision and recall at one *operating point*
-- boxes with score >= :data:`OPERATING_SCORE` (0.5), matched at IoU 0.5 -- which is what a human
reviewing auto-labels sees; ``macro_f1`` is the mean F1 at that point over every class that has
ground truth or such predictions (a class that is only ever hallucinated counts, with F1 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from model.detection.boxes import Detections, iou_matrix

#: IoU thresholds of ``map50_95`` (COCO's 0.50:0.05:0.95).
IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
#: Recall points of the interpolated precision (COCO's 101).
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
#: Score from which a predicted box counts as "predicted" for precision / recall / F1.
OPERATING_SCORE = 0.5


def match(pred: Detections, truth: Detections, iou: float = 0.5) -> np.ndarray:
    """Per predicted box (in ``pred``'s order) whether it is a true positive at IoU >= ``iou``.

    Greedy by descending score (ties: earlier box first), same class, each truth box used once;
    among the unmatched truth boxes of its class a prediction takes the one it overlaps most.
    """
    return _match_many(pred, truth, np.asarray([iou]))[:, 0]


def _match_many(pred: Detections, truth: Detections, thresholds: np.ndarray) -> np.ndarray:
    """(n_pred, n_thresholds) bool: :func:`match` at several IoU thresholds sharing one IoU matrix."""
    result = np.zeros((len(pred), len(thresholds)), dtype=bool)
    if len(pred) == 0 or len(truth) == 0:
        return result
    overlaps = iou_matrix(pred.boxes, truth.boxes)
    same = np.asarray(pred.labels, dtype=object)[:, None] == np.asarray(truth.labels, dtype=object)[None, :]
    overlaps = np.where(same, overlaps, -1.0)
    order = np.argsort(-pred.scores, kind="stable")
    for k, threshold in enumerate(thresholds):
        used = np.zeros(len(truth), dtype=bool)
        for i in order:
            candidates = np.where(used, -1.0, overlaps[i])
            j = int(np.argmax(candidates))
            if candidates[j] >= threshold - 1e-12:
                used[j] = True
                result[i, k] = True
    return result


def average_precision(scores: np.ndarray, correct: np.ndarray, n_truth: int) -> float:
    """COCO's 101-point interpolated AP of detections ``scores`` / ``correct`` (TP flags) of one class.

    ``n_truth``: ground-truth boxes of the class (> 0). Sorting is stable on descending score, so
    tied detections keep their input order (COCO uses mergesort too).
    """
    if n_truth <= 0:
        raise ValueError("average precision needs at least one ground-truth box")
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    tp = np.cumsum(np.asarray(correct, dtype=np.float64)[order])
    fp = np.cumsum(1.0 - np.asarray(correct, dtype=np.float64)[order])
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or beyond
    where = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(where < len(envelope), envelope[np.minimum(where, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def evaluate_detections(
    truth: Sequence[Detections], predicted: Sequence[Detections], classes: Sequence[str]
) -> dict[str, Any]:
    """mAP@0.5, mAP@0.5:0.95 and per-class figures of ``predicted`` against ``truth`` (one entry per image).

    Returns ``map50``, ``map50_95``, ``accuracy`` (= ``map50``, the backend's headline figure),
    ``macro_f1``, ``per_class`` ({name: {"precision", "recall", "f1", "ap50", "ap50_95", "support",
    "n_predicted"}}), ``n_images``, ``n_boxes`` (ground-truth boxes) and ``operating_score``. See
    the module docstring for the conventions. Labels outside ``classes`` are ignored.
    """
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} ground-truth images but {len(predicted)} predicted ones")
    names = [str(c) for c in classes]
    scores: dict[str, list[np.ndarray]] = {c: [] for c in names}
    hits: dict[str, list[np.ndarray]] = {c: [] for c in names}
    support = dict.fromkeys(names, 0)
    for t, p in zip(truth, predicted, strict=True):
        matched = _match_many(p, t, IOU_THRESHOLDS)
        labels = np.asarray(p.labels, dtype=object)
        for c in names:
            mine = labels == c
            scores[c].append(p.scores[mine])
            hits[c].append(matched[mine])
            support[c] += sum(1 for label in t.labels if label == c)
    per_class = {c: _class_figures(np.concatenate(scores[c]), _stack(hits[c]), support[c]) for c in names}
    scored = [c for c in names if support[c] > 0]
    map50 = float(np.mean([per_class[c]["ap50"] for c in scored])) if scored else 0.0
    map50_95 = float(np.mean([per_class[c]["ap50_95"] for c in scored])) if scored else 0.0
    counted = [c for c in names if support[c] > 0 or per_class[c]["n_predicted"] > 0]
    return {
        "map50": map50,
        "map50_95": map50_95,
        "accuracy": map50,
        "macro_f1": float(np.mean([per_class[c]["f1"] for c in counted])) if counted else 0.0,
        "per_class": per_class,
        "n_images": len(truth),
        "n_boxes": int(sum(support.values())),
        "operating_score": OPERATING_SCORE,
    }


def _stack(blocks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(blocks, axis=0) if blocks else np.zeros((0, len(IOU_THRESHOLDS)), dtype=bool)


def _class_figures(scores: np.ndarray, hits: np.ndarray, support: int) -> dict[str, Any]:
    """AP at every IoU threshold, and precision / recall / F1 at the operating point, of one class."""
    operating = scores >= OPERATING_SCORE
    n_predicted = int(operating.sum())
    tp = int(hits[operating, 0].sum()) if n_predicted else 0
    precision = tp / n_predicted if n_predicted else 0.0
    recall = tp / support if support else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    if support:
        aps = [average_precision(scores, hits[:, k], support) for k in range(len(IOU_THRESHOLDS))]
    else:
        aps = [0.0]
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "ap50": float(aps[0]),
        "ap50_95": float(np.mean(aps)),
        "support": int(support),
        "n_predicted": n_predicted,
    }

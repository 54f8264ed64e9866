"""Held-out metrics for one training iteration, as plain JSON-ready Python.

The backend stores this dict per iteration; everything in it is a built-in type so it can
go into a JSON column or an HTTP response without conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
)
from sklearn.preprocessing import MultiLabelBinarizer


def evaluate(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    classes: Sequence[str],
    multi_label: bool = False,
) -> dict[str, Any]:
    """Compare predictions with ground truth over the configured ``classes``.

    ``y_true`` / ``y_pred`` look like ``ChoiceClassifier.fit``'s y: label names, or lists of
    label names when ``multi_label``. Returns::

        {"accuracy": float | None,   # subset accuracy (exact label set) for multi-label
         "macro_f1": float | None,
         "n": int,
         "per_class": {label: {"precision", "recall", "f1", "support"}},  # every class
         "confusion": ...}

    ``confusion`` is the raw count table behind those ratios, so a report can show *which*
    classes get confused (a macro F1 cannot). Every configured class is present, in
    ``classes`` order, even if it never occurs:

    * single-label: ``{"labels": classes, "matrix": [[int]]}``, rows = true class,
      columns = predicted class (``matrix[i][j]`` = rows of ``classes[i]`` predicted as
      ``classes[j]``);
    * multi-label: ``{"labels": classes, "per_class": {label: {"tp", "fp", "fn", "tn"}}}`` --
      labels are independent yes/no decisions, so one 2x2 table per label (a C x C matrix
      has no meaning when a row can carry several labels).

    ``macro_f1`` averages over the classes that occur in ``y_true`` or ``y_pred``: a class
    absent from both was neither missed nor wrongly predicted, and counting it as F1 = 0
    would penalise a model for the composition of the held-out sample. ``per_class`` still
    lists every configured class. Undefined ratios are reported as 0 (no warnings);
    ``macro_f1`` is None when no class occurs at all (only possible for multi-label).
    """
    classes = list(classes)
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true and y_pred have different lengths: {len(y_true)} != {len(y_pred)}")
    if len(y_true) == 0:
        return {
            "accuracy": None,
            "macro_f1": None,
            "n": 0,
            "per_class": {c: {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0} for c in classes},
            "confusion": _confusion(None, None, classes, multi_label),
        }

    if multi_label:
        check_known_labels([label for row in (*y_true, *y_pred) for label in label_row(row)], classes)
        binarizer = MultiLabelBinarizer(classes=classes).fit([])
        true = binarizer.transform([label_row(r) for r in y_true])
        pred = binarizer.transform([label_row(r) for r in y_pred])
        if len(classes) == 1:
            # sklearn reads a one-column indicator matrix as a binary *vector* whose classes are
            # the values 0 and 1, so labels=[0] would score "absent" as the positive class. A
            # never-set padding column makes it a real indicator matrix and changes no score.
            true, pred = (np.hstack([m, np.zeros_like(m)]) for m in (true, pred))
        labels: list[Any] = list(range(len(classes)))
        present = sorted(set(np.flatnonzero(true.any(axis=0) | pred.any(axis=0)).tolist()))
    else:
        check_known_labels([*y_true, *y_pred], classes)
        true, pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
        labels = classes
        occurring = set(y_true) | set(y_pred)
        present = [c for c in classes if c in occurring]

    precision, recall, f1, support = precision_recall_fscore_support(
        true, pred, labels=labels, average=None, zero_division=0
    )
    # No class occurring at all (multi-label, every row empty on both sides): F1 is undefined.
    macro = float(f1_score(true, pred, labels=present, average="macro", zero_division=0)) if present else None
    return {
        "accuracy": float(accuracy_score(true, pred)),
        "macro_f1": macro,
        "n": len(y_true),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion": _confusion(true, pred, classes, multi_label),
    }


def _confusion(true: Any, pred: Any, classes: list[str], multi_label: bool) -> dict[str, Any]:
    """The ``confusion`` entry of :func:`evaluate` (all zeros when ``true`` is None: no rows).

    ``true`` / ``pred`` are what :func:`evaluate` scored: label-name arrays (single-label) or
    0/1 indicator matrices over ``classes`` (multi-label).
    """
    n_classes = len(classes)
    if multi_label:
        # sklearn's per-label table is [[tn, fp], [fn, tp]].
        tables = (
            np.zeros((n_classes, 2, 2), dtype=np.int64)
            if true is None
            else multilabel_confusion_matrix(true, pred)[:n_classes]  # drops the one-class padding
        )
        per_class = {
            name: {
                "tp": int(tables[i, 1, 1]),
                "fp": int(tables[i, 0, 1]),
                "fn": int(tables[i, 1, 0]),
                "tn": int(tables[i, 0, 0]),
            }
            for i, name in enumerate(classes)
        }
        return {"labels": list(classes), "per_class": per_class}
    matrix = (
        np.zeros((n_classes, n_classes), dtype=np.int64)
        if true is None
        else confusion_matrix(true, pred, labels=classes)
    )
    return {"labels": list(classes), "matrix": [[int(v) for v in row] for row in matrix]}


def label_row(row: Any) -> list[Any]:
    """One multi-label row as a list of label names (a bare string is refused: it is not a row)."""
    if isinstance(row, str) or not isinstance(row, (list, tuple, set, frozenset, np.ndarray)):
        raise ValueError(f"multi-label rows must be lists of label names, got {row!r}")
    return list(row)


def check_known_labels(labels: Sequence[Any], classes: Sequence[str]) -> None:
    """Refuse labels outside the configured classes, naming them: a data/config mismatch to fix, not to skip."""
    known = set(classes)
    unknown = sorted({repr(label) for label in labels if not isinstance(label, str) or label not in known})
    if unknown:
        raise ValueError(f"unknown label(s) {', '.join(unknown)}; configured classes: {list(classes)}")


def proportion_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of a share ``successes / n`` (None without rows).

    Small validation splits are the norm in a project's first rounds (4 tasks at 20 labels): the Wilson
    interval stays inside [0, 1] and does not collapse to a point at 0/n or n/n as the normal one does,
    so "1.000 on 1 task" reads as [0.21, 1.00].
    """
    if n <= 0:
        return None
    from scipy.special import ndtri

    z = float(ndtri(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def bootstrap_interval(metric: Any, n: int, level: float = 0.95, draws: int = 200,
                       seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``metric(indices)`` over ``n`` rows resampled with replacement.

    For headline figures that are not a share of rows (mAP, span F1, a mean over controls); ``metric``
    may return None for a resample where it is undefined, which is left out.
    """
    if n <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = [v for v in (metric(rng.integers(0, n, n)) for _ in range(draws)) if v is not None]
    if not values:
        return None
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))

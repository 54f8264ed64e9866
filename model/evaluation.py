"""Held-out metrics for one training iteration, as plain JSON-ready Python.

The backend stores this dict per iteration; everything in it is a built-in type so it can
go into a JSON column or an HTTP response without conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support
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
         "per_class": {label: {"precision", "recall", "f1", "support"}}}  # every class

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
        }

    if multi_label:
        _check_known([label for row in (*y_true, *y_pred) for label in _row(row)], classes)
        binarizer = MultiLabelBinarizer(classes=classes).fit([])
        true = binarizer.transform([_row(r) for r in y_true])
        pred = binarizer.transform([_row(r) for r in y_pred])
        labels: list[Any] = list(range(len(classes)))
        present = sorted(set(np.flatnonzero(true.any(axis=0) | pred.any(axis=0)).tolist()))
    else:
        _check_known([*y_true, *y_pred], classes)
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
    }


def _row(row: Any) -> list[Any]:
    if isinstance(row, str) or not isinstance(row, (list, tuple, set, frozenset, np.ndarray)):
        raise ValueError(f"multi-label rows must be lists of label names, got {row!r}")
    return list(row)


def _check_known(labels: list[Any], classes: list[str]) -> None:
    known = set(classes)
    unknown = sorted({repr(label) for label in labels if not isinstance(label, str) or label not in known})
    if unknown:
        raise ValueError(f"unknown label(s) {', '.join(unknown)}; configured classes: {classes}")

"""Cross-fitted confidences: honest (confidence, correct) rows from every labelled example.

The auto-labelling threshold (:mod:`model.thresholds`) can only be certified from rows the model
did not train on. The validation split gives such rows, but only a fifth of the labels: with 300
labels, 60 rows -- barely the 59 that certifying 95 % needs when *every* one is right. Cross-fitting
turns the training rows into honest rows too: the training rows are dealt into ``n_folds`` folds,
and each fold is scored by an estimator fitted on the other folds only -- features, classifier and
its own probability calibration (which :class:`model.estimators.ChoiceClassifier` fits inside
``fit``, from the fold's training rows alone). No example is ever scored by a model that saw it.

The rows describe models trained on ``(n_folds - 1) / n_folds`` of the training rows, slightly
weaker than the final model and calibrated on fewer rows; a threshold certified on them carries
over to the final model approximately, not exactly (benchmarks/autolabel_precision.py measures how
well). Join them with the validation split's rows (scored by the final model) before choosing the
threshold::

    conf_cv, ok_cv, _ = cross_fitted_confidence(make, train_x, train_y)
    threshold = precision_threshold(np.r_[conf_cv, val_conf], np.r_[ok_cv, val_ok], target=0.95)

Cost: ``n_folds`` extra fits (each with its own calibration fits) per training round.

The rows must be scored the way the final model's tasks will be: with a sampled strategy (BALD)
a task's probabilities are the Monte-Carlo mean of its samples, not ``predict_proba``; pass that
``strategy`` and the folds are scored through :func:`model.uncertainty.uncertainty_for` as well.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from model.uncertainty import AcquisitionFunction, decision_confidence, uncertainty_for

#: Default number of folds: each fold model sees 80 % of the training rows.
N_FOLDS = 5


def cross_fitted_confidence(
    make_estimator: Callable[[], Any],
    X: Sequence[Any],
    y: Sequence[Any],
    n_folds: int = N_FOLDS,
    seed: int | None = 0,
    strategy: AcquisitionFunction | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score every row with an estimator fitted on the other folds; return ``(confidence, correct, fold)``.

    ``make_estimator()`` returns a fresh unfitted estimator (e.g. ``lambda: make_estimator("margin",
    "text", classes, False, calibration="auto")``) with ``fit(X, y)``, ``predict_proba(X)`` in the
    columns of ``classes_`` and, like :class:`~model.estimators.ChoiceClassifier`, a ``multi_label``
    attribute (absent = single-label). ``y`` is what its ``fit`` takes: a label name per row, or
    for multi-label a list of names per row (possibly empty). ``X`` is indexed as a list, so
    images of different sizes work.

    ``confidence`` (float64) is :func:`model.uncertainty.decision_confidence` of the out-of-fold
    probabilities, ``correct`` (bool) whether the predicted label -- or label set, all probabilities
    >= 0.5 for multi-label -- equals the truth, ``fold`` (int64) which fold scored the row; all in
    the order of ``X``. Folds are stratified (:func:`fold_assignment`). With fewer than 2 rows no
    row can be scored honestly and all three arrays are empty: the caller then has only its
    validation split. ``n_folds`` is lowered to the number of rows when there are fewer.
    ``strategy``: score the held-out rows as that strategy's scoring does (see the module docstring).
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if len(X) != len(y):
        raise ValueError(f"X and y have different lengths: {len(X)} != {len(y)}")
    n = len(y)
    if n < 2:
        return np.zeros(0), np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    multi_label = bool(getattr(make_estimator(), "multi_label", False))
    fold = fold_assignment(y, min(int(n_folds), n), seed=seed, multi_label=multi_label)
    confidence = np.zeros(n)
    correct = np.zeros(n, dtype=bool)
    for k in np.unique(fold):
        held, train = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        model = make_estimator().fit([X[i] for i in train], [y[i] for i in train])
        rows = [X[i] for i in held]
        if strategy is None:
            proba = np.asarray(model.predict_proba(rows), dtype=np.float64)
        else:  # the probabilities the strategy's scoring gives (the MC mean for a sampled one)
            proba = uncertainty_for(model, strategy, rows, multi_label=multi_label)[0]
        confidence[held] = decision_confidence(proba, multi_label=multi_label)
        predicted = _labels(model, proba, multi_label)
        correct[held] = [set(p) == _truth(y[i], multi_label) for p, i in zip(predicted, held, strict=True)]
    return confidence, correct, fold


def fold_assignment(y: Sequence[Any], n_folds: int, seed: int | None = 0, multi_label: bool = False) -> np.ndarray:
    """A fold number in ``range(n_folds)`` per row: stratified, seeded, sizes within one of each other.

    Rows are shuffled, grouped by stratum, and dealt round-robin with one counter running across
    the strata, so each stratum is spread as evenly as it can be -- a class with fewer rows than
    folds lands in as many different folds as it has rows (then some fold models never see it,
    and score its rows wrong: honestly so, a rare class is hard) -- and the fold sizes differ by
    at most one. The stratum of a single-label row is its label; of a multi-label row its rarest
    label (the empty set is a stratum of its own), which keeps the rare labels spread.
    """
    n = len(y)
    if n_folds < 1:
        raise ValueError(f"n_folds must be >= 1, got {n_folds}")
    strata = _strata(y, multi_label)
    order = np.random.default_rng(seed).permutation(n)
    order = order[np.argsort([strata[i] for i in order], kind="stable")]  # grouped by stratum, shuffled within
    fold = np.empty(n, dtype=np.int64)
    fold[order] = np.arange(n) % n_folds
    # Which fold gets the leftover rows should not depend on stratum order alone: relabel the folds at random.
    return np.random.default_rng(None if seed is None else seed + 1).permutation(n_folds)[fold]


def _strata(y: Sequence[Any], multi_label: bool) -> list[str]:
    if not multi_label:
        return [str(label) for label in y]
    counts = Counter(str(label) for row in y for label in set(row))
    # "" marks the empty label set; real labels get a prefix so that no label name can collide with it.
    return ["=" + min({str(v) for v in row}, key=lambda name: (counts[name], name)) if len(row) else "" for row in y]


def _labels(model: Any, proba: np.ndarray, multi_label: bool) -> list[list[str]]:
    """Predicted label names per row, as the model itself turns probabilities into labels."""
    if hasattr(model, "labels_from_proba"):
        return model.labels_from_proba(proba)
    classes = np.asarray(model.classes_)
    if multi_label:
        return [[str(c) for c in classes[row >= 0.5]] for row in proba]
    return [[str(classes[j])] for j in proba.argmax(axis=1)]


def _truth(label: Any, multi_label: bool) -> set[str]:
    return {str(v) for v in label} if multi_label else {str(label)}

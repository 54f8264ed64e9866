"""Logistic-regression "heads" over a feature matrix, and bootstrapped committees of them.

A head is the classifier part of :class:`model.estimators.ChoiceClassifier` once features are
extracted: one multinomial logistic regression (single-label) or one binary regression per
label (multi-label), with the constant fallbacks a young project needs. A committee is
``size`` heads fitted on bootstrap resamples of the same rows; their disagreement is what
vote entropy and KL-to-consensus measure (query by committee, Seung et al. 1992).

The members share one fitted feature extractor (owned by the estimator) instead of each
fitting its own: that keeps the committee's cost at ``size`` solver runs, its model file at
one vocabulary, and the members' columns aligned.

Heads are plain dicts of sklearn estimators and numpy arrays, which model.persistence stores natively.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

Head = dict[str, Any]


def fit_logistic_head(
    features: Any,
    targets: np.ndarray,
    *,
    multi_label: bool,
    make_logistic: Callable[[], LogisticRegression],
) -> Head:
    """Fit one head on ``features`` and return its state.

    Single-label (``targets`` = int column codes): ``{"model": LogisticRegression | None,
    "seen": int64 column indices}``; ``model`` is None when only one class occurs, because
    logistic regression refuses one-class data while the first labelled batch of a real
    project often is exactly that -- the honest model then is a constant one.

    Multi-label (``targets`` = 0/1 matrix): ``{"label_models": [LogisticRegression | None],
    "label_constant": float array}``, a None model for every label that is always or never
    positive. Their constant is the Laplace-smoothed positive rate ``(k + 1) / (n + 2)``: a
    label never positive so far gets a low probability that moves towards 0 as evidence
    accumulates, instead of a hard 0 that would make it look perfectly certain after one round.

    The solver runs with one BLAS thread: lbfgs on tf-idf rows makes many tiny dense BLAS
    calls, and with OpenBLAS's default of one thread per core a busy 2-core machine spent
    2.2 s instead of 0.18 s fitting 1,000 texts (threads spinning against each other and
    against the server's other workers).
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit_head(features, targets, multi_label, make_logistic)


def _fit_head(
    features: Any, targets: np.ndarray, multi_label: bool, make_logistic: Callable[[], LogisticRegression]
) -> Head:
    if multi_label:
        n = targets.shape[0]
        positives = targets.sum(axis=0)
        models = [
            make_logistic().fit(features, targets[:, j]) if 0 < positives[j] < n else None
            for j in range(targets.shape[1])
        ]
        return {"label_models": models, "label_constant": (positives + 1.0) / (n + 2.0)}
    seen = np.unique(targets).astype(np.int64)
    if len(seen) == 1:
        return {"model": None, "seen": seen}
    model = make_logistic().fit(features, targets)
    return {"model": model, "seen": model.classes_.astype(np.int64)}


def logistic_head_proba(head: Head, features: Any, n_classes: int, multi_label: bool) -> np.ndarray:
    """Return float64 (N, n_classes) probabilities of one head; unseen single-label columns are 0."""
    n_rows = features.shape[0]
    proba = np.zeros((n_rows, n_classes), dtype=np.float64)
    if n_rows == 0:
        return proba
    if multi_label:
        for j, model in enumerate(head["label_models"]):
            proba[:, j] = head["label_constant"][j] if model is None else model.predict_proba(features)[:, 1]
        return proba
    if head["model"] is None:
        proba[:, head["seen"][0]] = 1.0
    else:
        proba[:, head["seen"]] = head["model"].predict_proba(features)
    return proba


def bootstrap_rows(targets: np.ndarray, rng: np.random.Generator, multi_label: bool) -> np.ndarray:
    """Row indices of one bootstrap resample (with replacement) of ``len(targets)`` rows.

    Single-label resamples are stratified: each class keeps its count, drawn from its own
    rows. A plain bootstrap of a young project (say one "refund" among 20 rows) misses the rare
    class in ~1/e of the members; such a member puts probability 0 on it, which drags the
    committee mean down and makes every member "disagree" about a class it never saw rather
    than about the task. Stratifying keeps all members on the same label set, so the
    disagreement left is about the decision boundary, which is what query by committee wants.

    Multi-label rows have several labels at once, so there is no stratum per label; they are
    resampled plainly, and a member whose resample lost every positive of a label falls back
    to that label's Laplace constant, exactly as a single model does on such data.
    """
    n_rows = len(targets)
    if multi_label:
        return rng.integers(0, n_rows, size=n_rows)
    parts = []
    for code in np.unique(targets):
        rows = np.flatnonzero(targets == code)
        parts.append(rng.choice(rows, size=len(rows), replace=True))
    return np.sort(np.concatenate(parts))


def fit_committee(
    features: Any,
    targets: np.ndarray,
    *,
    size: int,
    multi_label: bool,
    make_logistic: Callable[[], LogisticRegression],
    random_state: int | None,
) -> list[Head]:
    """Fit ``size`` heads on bootstrap resamples drawn from a generator seeded by ``random_state``."""
    check_committee_size(size)
    rng = np.random.default_rng(random_state)
    members = []
    for _ in range(size):
        rows = bootstrap_rows(targets, rng, multi_label)
        head = fit_logistic_head(features[rows], targets[rows], multi_label=multi_label, make_logistic=make_logistic)
        members.append(head)
    return members


def check_committee_size(size: Any) -> None:
    """Raise ValueError unless ``size`` is an integer >= 2 (one member cannot disagree with itself)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"committee_size must be an integer >= 2 (one member cannot disagree), got {size!r}")


def committee_proba(members: list[Head], features: Any, n_classes: int, multi_label: bool) -> np.ndarray:
    """Return the members' probabilities stacked as float64 (M, N, n_classes)."""
    return np.stack([logistic_head_proba(head, features, n_classes, multi_label) for head in members])

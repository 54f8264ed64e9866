"""When to stop labelling: the stabilising-predictions signal (Bloodgood & Vijay-Shanker, 2009).

Accuracy on a small validation split is too noisy to say "more labels no longer help". A
steadier signal needs no labels at all: fix a *stop set* of unlabelled tasks, predict it after
every training iteration, and measure how much consecutive models agree (Cohen's kappa). Once
new labels stop changing the model's answers -- kappa stays near 1 for a few iterations in
a row -- further labelling buys little. The pieces:

* :func:`stable_sample` picks the stop set: a fixed, deterministic subset of task ids, so the
  same tasks are compared across iterations (while they stay unlabelled);
* :func:`prediction_agreement_kappa` scores two iterations' predictions on those tasks;
* :class:`StopRule` turns the sequence of kappas into a suggestion;
* :func:`mean_normalised_uncertainty` is a companion number for reports (the model's mean
  uncertainty over the pool), the "overall uncertainty" criterion of Zhu et al. (2008).

The rule only *suggests* stopping; a person decides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score
from sklearn.preprocessing import MultiLabelBinarizer

from model.evaluation import check_known_labels, label_row

# Uncertainties come out of model.uncertainty clipped to [0, 1]; anything further out is a bug.
_TOLERANCE = 1e-6


def prediction_agreement_kappa(
    previous: Sequence[Any],
    current: Sequence[Any],
    classes: Sequence[Any] | None = None,
    multi_label: bool = False,
) -> float | None:
    """Cohen's kappa between two iterations' predicted labels for the same tasks, in order.

    Single-label: ``previous`` / ``current`` are label names (one per task). Multi-label:
    rows are lists of label names, or 0/1 indicator matrices; kappa is taken over the
    flattened (task x label) yes/no decisions.

    ``classes`` (the configured labels) is optional for single-label -- kappa depends only on
    labels that occur -- but matters for multi-label name lists: every label adds a column of
    decisions, and agreeing "no"s on a never-predicted label raise kappa's chance agreement as
    well as its observed agreement. Pass the configured classes so the value means the same
    in every iteration; without them the labels occurring in either input are used. Labels
    outside ``classes`` raise ValueError.

    Returns None for no tasks. When both iterations predict one and the same constant (every
    task the same class, or no label anywhere), kappa is 0 / 0; that is perfect agreement,
    so 1.0 is returned. (Constant but *different* predictions give kappa 0.)
    """
    if len(previous) != len(current):
        raise ValueError(f"previous and current have different lengths: {len(previous)} != {len(current)}")
    if len(previous) == 0:
        return None
    if multi_label:
        a, b = _indicators(previous, current, classes)
        a, b = a.ravel(), b.ravel()
        if a.size == 0:  # no labels configured: nothing to disagree about
            return 1.0
    else:
        a, b = np.asarray(previous, dtype=object), np.asarray(current, dtype=object)
        if classes is not None:
            check_known_labels([*previous, *current], classes)
    if len(set(a.tolist()) | set(b.tolist())) == 1:
        return 1.0  # one constant on both sides: complete agreement, kappa's 0 / 0
    return float(cohen_kappa_score(a, b))


def stable_sample(task_ids: Sequence[Hashable], size: int, salt: str = "") -> list[Hashable]:
    """Return ``min(size, n)`` of ``task_ids``, chosen by a hash of each id: the same ids every time.

    Every id gets a pseudo-random rank, ``sha256(salt + ":" + str(id))``, and the ``size``
    lowest ranks are taken (a "bottom-k" hash sample). An id's rank never depends on the other
    ids, so as tasks get labelled and are dropped from the pool, the remaining members of the
    sample stay in it and only the next-ranked ids move up -- consecutive iterations compare
    predictions on largely the same tasks. Unlike a seeded ``random.sample``, this holds
    across processes and restarts. ``salt`` (e.g. the project id) gives another project an
    unrelated sample.

    The result is in rank order; duplicate ids count once. ids are compared by ``str``, so
    ``1`` and ``"1"`` are the same task.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"size must be a non-negative integer, got {size!r}")
    unique = list(dict.fromkeys(task_ids))
    ranked = sorted(unique, key=lambda task_id: (_rank(task_id, salt), str(task_id)))
    return ranked[: int(size)]


def mean_normalised_uncertainty(uncertainty: np.ndarray | Sequence[float]) -> float | None:
    """Mean of per-task uncertainties on the [0, 1] scale of :mod:`model.uncertainty`; None if empty.

    Falling towards a plateau, it says the pool holds few tasks the model still finds hard.
    Because the scores are normalised by the number of classes, the value is comparable
    across projects and iterations -- as long as the acquisition function stays the same.
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    if u.ndim != 1:
        raise ValueError(f"uncertainty must be 1-D, got shape {u.shape}")
    if u.size == 0:
        return None
    if not np.all(np.isfinite(u)) or u.min() < -_TOLERANCE or u.max() > 1.0 + _TOLERANCE:
        raise ValueError("uncertainty must be finite and within [0, 1]")
    return float(np.clip(u, 0.0, 1.0).mean())


@dataclass(frozen=True)
class StopRule:
    """Suggest stopping once ``window`` consecutive agreement kappas are all >= ``threshold``.

    Bloodgood & Vijay-Shanker stop when kappa between consecutive models on the stop set has
    stayed above 0.99 for three checks; requiring *every* one of the last ``window`` values
    (rather than their mean) keeps one very high value from hiding a dip. A None in the
    sequence -- an iteration where kappa could not be computed (empty stop set, first model,
    changed label set) -- breaks the run: stability must be observed, not assumed.
    """

    threshold: float = 0.99
    window: int = 3

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be a kappa in [-1, 1], got {self.threshold!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, (int, np.integer)) or self.window < 1:
            raise ValueError(f"window must be a positive integer, got {self.window!r}")

    def suggested(self, kappas: Sequence[float | None]) -> bool:
        """True if the last ``window`` entries of ``kappas`` (oldest first) all reach ``threshold``."""
        if len(kappas) < self.window:
            return False
        return all(k is not None and k >= self.threshold for k in list(kappas)[-self.window :])


def _rank(task_id: Hashable, salt: str) -> bytes:
    return hashlib.sha256(f"{salt}:{task_id}".encode()).digest()


def _indicators(previous: Sequence[Any], current: Sequence[Any], classes: Sequence[Any] | None) -> tuple[Any, Any]:
    """Both inputs as 0/1 matrices over the same label columns."""
    if _is_matrix(previous) and _is_matrix(current):
        a, b = np.asarray(previous), np.asarray(current)
        if a.shape != b.shape:
            raise ValueError(f"indicator matrices have different shapes: {a.shape} != {b.shape}")
        if classes is not None and a.shape[1] != len(classes):
            raise ValueError(f"indicator matrices have {a.shape[1]} columns for {len(classes)} classes")
        if not (np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all()):
            raise ValueError("indicator matrices must hold only 0 and 1")
        return a.astype(np.int64), b.astype(np.int64)
    rows = [label_row(r) for r in (*previous, *current)]
    labels = [label for row in rows for label in row]
    if classes is None:
        classes = sorted(set(labels), key=str)
    else:
        check_known_labels(labels, classes)
    binarizer = MultiLabelBinarizer(classes=list(classes)).fit([])
    n = len(previous)
    return binarizer.transform(rows[:n]), binarizer.transform(rows[n:])


def _is_matrix(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.ndim == 2

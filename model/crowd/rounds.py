"""One training round's crowd step: consensus, cross-fitted probabilities, label issues, annotator quality.

The pieces of :mod:`model.crowd` have to run in one order, and the server should not re-derive it:
the consensus from the annotations alone gives the fold models their targets, the fold models give
honest probabilities, and only then can the model vote (as each item's prior in Dawid-Skene), the
issues be ranked and the annotators be judged. :func:`crowd_round` is that order; the result holds
everything a round records (:meth:`CrowdRound.summary`) and what the final fit trains on
(:meth:`CrowdRound.training_targets`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.crowd.annotations import Annotations
from model.crowd.annotators import AnnotatorStats, annotator_report
from model.crowd.consensus import Consensus, crowdlab, dawid_skene, majority_vote
from model.crowd.issues import LabelIssues, cross_fitted_proba, crowd_label_issues, label_issues
from model.uncertainty import AcquisitionFunction

#: Consensus methods of :func:`crowd_round`; ``dawid_skene`` measured best (benchmarks/crowd_replay.py).
CONSENSUS_METHODS = ("dawid_skene", "crowdlab", "majority")


@dataclass(frozen=True)
class CrowdRound:
    """The crowd step of one round; ``proba`` is cross-fitted, NaN rows for items it could not score."""

    consensus: Consensus
    proba: np.ndarray
    fold: np.ndarray
    issues: LabelIssues
    annotators: list[AnnotatorStats]

    def training_targets(self, min_confidence: float = 0.0) -> tuple[np.ndarray, list[str]]:
        """``(item indices, label names)`` to fit on: items with a consensus of at least ``min_confidence``."""
        confident = np.nan_to_num(self.consensus.confidence) >= min_confidence
        keep = np.flatnonzero((self.consensus.label >= 0) & confident)
        return keep, [self.consensus.classes[k] for k in self.consensus.label[keep]]

    def summary(self, issues: int = 20) -> dict[str, Any]:
        """JSON-ready figures for the round's history: counts, agreement, the first ``issues`` issues, annotators."""
        return {**self.consensus.summary(), "label_issues_flagged": self.issues.n_flagged,
                "label_issues": self.issues.rows(limit=issues),
                "annotators": [s.as_dict() for s in self.annotators]}


def crowd_round(ann: Annotations, X: Sequence[Any], make_estimator: Callable[[], Any], method: str = "dawid_skene",
                strategy: AcquisitionFunction | None = None, n_folds: int = 5, seed: int | None = 0) -> CrowdRound:
    """Run the crowd step on ``ann`` (items = rows of ``X``, e.g. the round's labelled tasks).

    ``make_estimator()`` gives a fresh unfitted estimator (the round's own, so its probabilities are
    what the project serves; ``strategy`` scores as that acquisition function does). Items without
    annotations get no consensus and are not scored. With fewer than two annotated items nothing
    can be scored honestly: the consensus then comes from the annotations alone.
    """
    if method not in CONSENSUS_METHODS:
        raise ValueError(f"method must be one of {CONSENSUS_METHODS}, got {method!r}")
    if len(X) != ann.n_items:
        raise ValueError(f"X has {len(X)} rows for {ann.n_items} items")
    first = dawid_skene(ann) if method == "dawid_skene" else majority_vote(ann)
    rows = np.flatnonzero(first.label >= 0)
    names = first.label_names()
    scored, fold_rows = cross_fitted_proba(make_estimator, [X[i] for i in rows], [names[i] for i in rows],
                                           ann.classes, n_folds=n_folds, seed=seed, strategy=strategy)
    proba = np.full((ann.n_items, ann.n_classes), np.nan)
    proba[rows] = scored
    fold = np.full(ann.n_items, -1, dtype=np.int64)
    fold[rows] = fold_rows
    usable = np.all(np.isfinite(proba[rows])) and rows.size >= 2
    prior = np.where(np.isfinite(proba), proba, 1.0 / ann.n_classes)  # unscored items: no opinion
    if not usable:
        final = first
    elif method == "dawid_skene":
        final = dawid_skene(ann, proba=prior)
    elif method == "crowdlab":
        final = crowdlab(ann, prior)
    else:
        final = majority_vote(ann, proba=prior)
    report = annotator_report(ann, final, prior if usable else None)
    if method == "majority" and usable:  # vote shares are no evidence against the vote: the model's are
        issues = label_issues(final.label, prior, ann.classes)
    else:
        issues = crowd_label_issues(ann, final)
    return CrowdRound(consensus=final, proba=proba, fold=fold, issues=issues, annotators=report)

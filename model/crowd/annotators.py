"""Annotator quality: per Label Studio user, how often their labels are right, with an interval.

Agreement alone misleads: agreeing with a consensus one helped form flatters, and agreeing with a
model trained on one's own labels flatters more. So the figures here are, per annotator:

* agreement with the consensus on items that someone else labelled too (the consensus includes
  the annotator's own answer, as cleanlab's ``agreement_with_consensus`` does; items labelled once
  would agree trivially and are left out);
* agreement with the *cross-fitted* model on every item they labelled (no item scored by a model
  that saw its label);
* an estimated accuracy with a 95 % Wilson interval: where the annotator shares at least
  ``min_truth`` items with a ground-truth answer by someone else, the share of those they got right
  (the yardstick); otherwise the mean posterior probability that their answers are right under a
  Dawid-Skene consensus that uses the cross-fitted model as each item's prior -- the expected
  accuracy under that fit (the interval treats it as a count of successes, so it reflects the
  number of labels, not the model's own uncertainty);
* a reliability weight: that accuracy corrected for chance, ``(acc - 1/K) / (1 - 1/K)`` clipped to
  [0, 1] -- 0 for a spammer, whose labels :func:`model.crowd.consensus.majority_vote` then ignores.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import asdict, dataclass

import numpy as np

from model.crowd.annotations import Annotations
from model.crowd.consensus import Consensus, dawid_skene
from model.evaluation import proportion_interval

#: Ground-truth overlaps needed before the accuracy is measured on them instead of estimated.
MIN_TRUTH = 10


@dataclass(frozen=True)
class AnnotatorStats:
    """One annotator's figures; ``basis`` says where ``accuracy`` comes from (``ground_truth`` / ``posterior``)."""

    annotator: Hashable
    n_labels: int
    n_shared: int
    agreement_consensus: float | None
    agreement_model: float | None
    n_ground_truth: int
    accuracy: float
    interval: tuple[float, float]
    basis: str
    weight: float
    unreliable: bool

    def as_dict(self) -> dict:
        out = asdict(self)
        out["interval"] = list(self.interval)
        return out


def annotator_report(ann: Annotations, consensus: Consensus, proba: np.ndarray | None = None,
                     min_truth: int = MIN_TRUTH, flag_below: float = 0.5) -> list[AnnotatorStats]:
    """Per annotator (best estimated accuracy first, so a spammer comes last).

    ``consensus`` gives the agreement column; the accuracy estimate needs Dawid-Skene's posterior,
    so another consensus (majority, CROWDLAB) is complemented by ``dawid_skene(ann, proba)`` here.
    ``proba``: cross-fitted ``(n_items, K)`` probabilities (:func:`model.crowd.issues.cross_fitted_proba`).
    ``unreliable``: the interval's upper end is below ``flag_below`` -- evidence, not a hunch.
    """
    posterior = consensus if consensus.confusion is not None else dawid_skene(ann, proba=proba)
    shared = ann.per_item()[ann.item] >= 2
    right = posterior.proba[ann.item, ann.label]
    agrees = ann.label == consensus.label[ann.item]
    model_agrees = None if proba is None else ann.label == np.argmax(np.asarray(proba), axis=1)[ann.item]
    truth = ann.truth()[ann.item]
    on_truth = (truth >= 0) & ~ann.ground_truth  # someone else's trusted answer on the same item
    chance = 1.0 / ann.n_classes
    out = []
    for a, name in enumerate(ann.annotators):
        mine = ann.annotator == a
        n = int(mine.sum())
        n_truth = int((mine & on_truth).sum())
        if n_truth >= min_truth:
            hits = int(np.sum(ann.label[mine & on_truth] == truth[mine & on_truth]))
            accuracy, basis, interval = hits / n_truth, "ground_truth", proportion_interval(hits, n_truth)
        else:
            accuracy, basis = float(np.mean(right[mine])), "posterior"
            interval = proportion_interval(int(round(accuracy * n)), n)
        out.append(AnnotatorStats(
            annotator=name, n_labels=n, n_shared=int((mine & shared).sum()),
            agreement_consensus=_share(agrees[mine & shared]),
            agreement_model=None if model_agrees is None else _share(model_agrees[mine]),
            n_ground_truth=n_truth, accuracy=float(accuracy), interval=interval or (0.0, 1.0), basis=basis,
            weight=float(np.clip((accuracy - chance) / (1 - chance), 0.0, 1.0)) if ann.n_classes > 1 else 1.0,
            unreliable=bool(interval is not None and interval[1] < flag_below),
        ))
    return sorted(out, key=lambda s: (-s.accuracy, -s.n_labels, str(s.annotator)))


def weights_of(ann: Annotations, report: list[AnnotatorStats]) -> np.ndarray:
    """The reliability weights in annotator-code order: what ``majority_vote(weights=...)`` takes."""
    by_name = {s.annotator: s.weight for s in report}
    return np.asarray([by_name.get(name, 1.0) for name in ann.annotators], dtype=np.float64)


def _share(mask: np.ndarray) -> float | None:
    return float(np.mean(mask)) if mask.size else None

"""Suspected label errors: cross-fitted probabilities, confident learning, ActiveLab scores.

A model cannot judge a label it was trained on: it has fitted that label, right or wrong. So every
labelled item is scored by a model fitted on the *other* folds only (:func:`cross_fitted_proba`,
the folds of :func:`model.crossfit.fold_assignment`), and an item's label is suspect when those
honest probabilities disagree with it. Confident learning (Northcutt, Jiang & Chuang, 2021)
decides *how many* are suspect without a global threshold: per class the mean probability the
model gives to items labelled that class is that class's threshold, an item counts in the
confident joint at (given, j) for the likeliest class j above its threshold, and the off-diagonal
is the set of issues. The ranking -- which to look at first -- is by a label-quality score (self
confidence ``p[given]``, or the normalized margin), lowest first.

With several annotations per item, pass the consensus posterior
(:func:`model.crowd.consensus.dawid_skene` with ``proba``) instead of the bare model: it already
weighs the model against annotators of estimated reliability, so a label from a careful annotator
the model doubts ranks below one from a spammer. :func:`activelab_scores` (Goh & Mueller, 2023)
turns the same quantities into "which labelled item needs another annotation, and is that worth
more than labelling a new item".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.crossfit import N_FOLDS, fold_assignment
from model.crowd.annotations import Annotations
from model.crowd.consensus import Consensus, crowdlab, majority_vote
from model.uncertainty import AcquisitionFunction, uncertainty_for

METHODS = ("self_confidence", "normalized_margin")
FLAGS = ("confident_learning", "argmax")


def cross_fitted_proba(make_estimator: Callable[[], Any], X: Sequence[Any], y: Sequence[str],
                       classes: Sequence[str], n_folds: int = N_FOLDS, seed: int | None = 0,
                       strategy: AcquisitionFunction | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per row, class probabilities from an estimator fitted on the other folds; returns ``(proba, fold)``.

    ``proba`` is ``(n, K)`` in the order of ``classes`` (a fold model's ``classes_`` are mapped onto
    them; a class it never saw gets 0), ``fold`` the fold that scored each row. ``y`` is one
    training target per row (e.g. :meth:`Consensus.label_names`); folds are stratified by it and
    seeded. One row is one item: all of an item's annotations sit in its row, so no annotation of a
    scored item reached its model. ``strategy``: score as that acquisition function does (the
    Monte-Carlo mean for BALD). With fewer than 2 rows nothing can be scored honestly: ``proba``
    is NaN and ``fold`` -1 (:func:`label_issues` skips NaN rows).
    """
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2, got {n_folds!r}")
    if len(X) != len(y):
        raise ValueError(f"X and y have different lengths: {len(X)} != {len(y)}")
    classes = [str(c) for c in classes]
    n = len(y)
    proba = np.full((n, len(classes)), np.nan)
    if n < 2:
        return proba, np.full(n, -1, dtype=np.int64)
    fold = fold_assignment(y, min(int(n_folds), n), seed=seed)
    column = {c: j for j, c in enumerate(classes)}
    for k in np.unique(fold):
        held, train = np.flatnonzero(fold == k), np.flatnonzero(fold != k)
        model = make_estimator().fit([X[i] for i in train], [y[i] for i in train])
        rows = [X[i] for i in held]
        if strategy is None:
            scored = np.asarray(model.predict_proba(rows), dtype=np.float64)
        else:
            scored = uncertainty_for(model, strategy, rows, multi_label=False)[0]
        proba[held] = 0.0
        for j, name in enumerate(np.asarray(model.classes_).tolist()):
            if str(name) in column:
                proba[held, column[str(name)]] = scored[:, j]
    return proba, fold


@dataclass(frozen=True)
class LabelIssues:
    """Items ranked from most to least suspect: ``index`` (item), ``given``, ``suggested``, ``quality``.

    ``quality`` in [0, 1], lower = likelier wrong (:data:`METHODS`); ``suggested`` is the likeliest
    other class for a flagged item, the likeliest class otherwise; ``flagged`` marks the likely
    issues (``flag`` of :func:`label_issues`: the off-diagonal of ``confident_joint``, rows = given,
    columns = likely true, or the posterior's argmax overturning the label), and ``n_flagged`` is the
    estimate of how many labels are wrong. ``confident_joint`` is always confident learning's.
    Items that could not be scored (NaN probabilities) are left out.
    """

    index: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    quality: np.ndarray
    flagged: np.ndarray
    confident_joint: np.ndarray
    thresholds: np.ndarray
    classes: tuple[str, ...]
    method: str

    @property
    def n_flagged(self) -> int:
        return int(self.flagged.sum())

    def rows(self, limit: int | None = None, flagged_only: bool = False) -> list[dict[str, Any]]:
        """JSON-ready rows, most suspect first: what a report or an API lists."""
        order = np.flatnonzero(self.flagged) if flagged_only else np.arange(self.index.size)
        return [{"index": int(self.index[r]), "given": self.classes[self.given[r]],
                 "suggested": self.classes[self.suggested[r]], "quality": float(self.quality[r]),
                 "flagged": bool(self.flagged[r])} for r in order[:limit]]


def label_quality(given: np.ndarray, proba: np.ndarray, method: str = "self_confidence") -> np.ndarray:
    """Per row, how much the probabilities support the given class (lower = likelier a wrong label).

    ``self_confidence`` is ``p[given]``; ``normalized_margin`` is ``(p[given] - max other p + 1) / 2``,
    which also looks at how strong the best alternative is.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    rows = np.arange(given.size)
    mine = proba[rows, given]
    if method == "self_confidence":
        return mine
    others = proba.copy()
    others[rows, given] = -np.inf
    return (mine - others.max(axis=1) + 1) / 2


def confident_learning(given: np.ndarray, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class thresholds, the confident joint and each row's confident class (-1: none above threshold).

    The threshold of class k is the mean ``p[k]`` over rows labelled k (a class nobody gave is never
    "confident": infinite threshold); a row's confident class is its likeliest class among those at
    or above their thresholds.
    """
    n, k = proba.shape
    sums = np.bincount(given, weights=proba[np.arange(n), given], minlength=k)
    counts = np.bincount(given, minlength=k)
    thresholds = np.divide(sums, counts, out=np.full(k, np.inf), where=counts > 0)
    above = proba >= thresholds[None, :] - 1e-12
    confident = np.where(above.any(axis=1), np.argmax(np.where(above, proba, -np.inf), axis=1), -1)
    joint = np.zeros((k, k), dtype=np.int64)
    mask = confident >= 0
    np.add.at(joint, (given[mask], confident[mask]), 1)
    return thresholds, joint, confident


def label_issues(given: Sequence[int] | Sequence[str], proba: np.ndarray, classes: Sequence[str],
                 method: str = "self_confidence", flag: str = "confident_learning") -> LabelIssues:
    """Rank the items by ``label_quality`` and flag the likely issues.

    ``given``: per item the label the project trains on (class names or indices; for several
    annotations per item, the majority vote: see :func:`crowd_label_issues`). ``proba``: honest
    ``(n, K)`` probabilities -- :func:`cross_fitted_proba`, or a consensus posterior built on them.
    ``flag``: ``confident_learning`` (the off-diagonal of the confident joint: for a model's
    probabilities, which are over- or under-confident per class) or ``argmax`` (the probabilities'
    own decision differs from the given label: for a posterior that already weighs the evidence).
    """
    if flag not in FLAGS:
        raise ValueError(f"flag must be one of {FLAGS}, got {flag!r}")
    classes = tuple(str(c) for c in classes)
    codes = _codes(given, classes)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (codes.size, len(classes)):
        raise ValueError(f"proba must have shape {(codes.size, len(classes))}, got {proba.shape}")
    scored = np.flatnonzero(np.all(np.isfinite(proba), axis=1) & (codes >= 0))
    g, p = codes[scored], proba[scored]
    thresholds, joint, confident = confident_learning(g, p)
    quality = label_quality(g, p, method)
    others = p.copy()
    others[np.arange(g.size), g] = -np.inf
    if flag == "argmax":
        confident = p.argmax(axis=1)
    flagged = (confident >= 0) & (confident != g)
    suggested = np.where(flagged, confident, np.where(p.argmax(axis=1) == g, g, others.argmax(axis=1)))
    order = np.lexsort((scored, quality))  # lowest quality first; ties in item order
    return LabelIssues(index=scored[order], given=g[order], suggested=suggested[order], quality=quality[order],
                       flagged=flagged[order], confident_joint=joint, thresholds=thresholds, classes=classes,
                       method=method)


def crowd_label_issues(ann: Annotations, consensus: Consensus, method: str = "self_confidence") -> LabelIssues:
    """Label issues when items have several annotations: the vote judged by the consensus posterior.

    ``given`` is what the annotators said (the majority vote, ties to the posterior), the
    probabilities are ``consensus.proba`` (use :func:`model.crowd.consensus.dawid_skene` with the
    cross-fitted ``proba``: annotator reliability and the model together). An item whose vote the
    posterior overturns is flagged with the posterior's class as the suggestion (``flag="argmax"``:
    confident learning's per-class thresholds would be set by the given labels' own share of the
    posterior, which is why a posterior that includes them flags too few).
    """
    vote = majority_vote(ann, proba=consensus.proba)
    return label_issues(vote.label, consensus.proba, ann.classes, method, flag="argmax")


def activelab_scores(ann: Annotations, proba: np.ndarray,
                     proba_unlabelled: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ActiveLab: per labelled item and per unlabelled item, how settled its label is (lower = ask next).

    For a labelled item, CROWDLAB's consensus quality averaged with the chance level ``1/K``, the
    first weighted by the model's and its annotators' weights, the second by one average
    annotator's (the value of one more answer); for an unlabelled item, the model's top probability
    averaged with ``1/K`` by the model's weight and one annotator's. So the two lists compare: an item
    whose three annotators split is asked again before a new item the model is sure of, as in
    cleanlab.multiannotator.get_active_learning_scores, whose temperature scaling of the model's
    probabilities (fitted to the annotators' answers when some item has several) is kept too.
    Items without annotations in ``ann`` get NaN in the first list.
    """
    k = ann.n_classes
    temperature = _best_temperature(ann, proba) if np.any(ann.per_item() >= 2) else 1.0
    proba = _temper(np.asarray(proba, dtype=np.float64), temperature)
    consensus = crowdlab(ann, proba)
    weights = consensus.weights or {"model": 1.0, "annotators": [1.0] * ann.n_annotators}
    model_w, annotator_w = weights["model"], np.asarray(weights["annotators"], dtype=np.float64)
    mean_w = float(annotator_w.mean()) if annotator_w.size else 1.0
    item_w = model_w + np.bincount(ann.item, weights=annotator_w[ann.annotator], minlength=ann.n_items)
    quality = consensus.confidence
    if not np.any(ann.per_item() >= 2):  # one answer per item: the model's support for it, as cleanlab does
        quality = proba[np.arange(ann.n_items), np.maximum(consensus.label, 0)]
    labelled = (quality * item_w + mean_w / k) / (item_w + mean_w)
    labelled = np.where(ann.per_item() > 0, labelled, np.nan)
    if proba_unlabelled is None:
        return labelled, np.zeros(0)
    unlabelled = np.asarray(proba_unlabelled, dtype=np.float64)
    if unlabelled.ndim != 2 or unlabelled.shape[1] != k:
        raise ValueError(f"proba_unlabelled must have shape (n, {k}), got {unlabelled.shape}")
    unlabelled = _temper(unlabelled, temperature)
    return labelled, (unlabelled.max(axis=1) * model_w + mean_w / k) / (model_w + mean_w)


_COARSE_TEMPERATURES = (0.1, 0.2, 0.5, 0.8, 1.0, 2.0, 3.0, 5.0, 8.0)


def _temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: T < 1 sharpens, T > 1 flattens (cleanlab's temp_scale_pred_probs)."""
    p = np.clip(proba, 1e-30, None)
    scaled = np.exp(np.log(p / p.sum(axis=1, keepdims=True)) / max(temperature, 1e-16))
    return scaled / scaled.sum(axis=1, keepdims=True)


def _best_temperature(ann: Annotations, proba: np.ndarray) -> float:
    """The temperature whose probabilities best match the answers' shares (soft cross-entropy; coarse, then fine).

    The model is fitted to one target per item; where annotators split, a sharp model is
    over-confident, and ActiveLab would otherwise trust it over the split.
    """
    annotated = ann.per_item() > 0
    votes = ann.votes()[annotated]
    shares = votes / votes.sum(axis=1, keepdims=True)
    p = np.asarray(proba, dtype=np.float64)[annotated]

    def loss(t: float) -> float:
        return float(np.mean(-np.sum(shares * np.log(np.clip(_temper(p, t), 1e-30, None)), axis=1)))

    coarse = _COARSE_TEMPERATURES
    best = int(np.argmin([loss(t) for t in coarse]))
    fine: list[float] = []
    if best > 0:
        fine += list(np.linspace(coarse[best - 1], coarse[best], 4, endpoint=False))
    if best < len(coarse) - 1:
        fine += list(np.linspace(coarse[best], coarse[best + 1], 5, endpoint=True))
    return float(fine[int(np.argmin([loss(t) for t in fine]))])


def relabel_or_new(labelled: np.ndarray, unlabelled: np.ndarray, n: int) -> list[tuple[str, int]]:
    """The ``n`` lowest ActiveLab scores across both lists: ``("relabel", item)`` or ``("new", row)``.

    Ties go to the new item (another answer on a labelled item is the costlier bet); NaN scores
    are never picked.
    """
    kinds = np.r_[np.zeros(unlabelled.size, dtype=np.int64), np.ones(labelled.size, dtype=np.int64)]
    scores = np.r_[unlabelled, labelled]
    index = np.r_[np.arange(unlabelled.size), np.arange(labelled.size)]
    keep = np.isfinite(scores)
    order = np.lexsort((kinds[keep], scores[keep]))[: max(0, int(n))]
    names = ("new", "relabel")
    return [(names[kinds[keep][o]], int(index[keep][o])) for o in order]


def _codes(given: Sequence[int] | Sequence[str], classes: tuple[str, ...]) -> np.ndarray:
    """Class indices of ``given`` (names or indices; -1 or None = no label)."""
    values = list(given)
    if all(isinstance(v, (int, np.integer)) for v in values):
        codes = np.asarray(values, dtype=np.int64).reshape(-1)
        if codes.size and codes.max() >= len(classes):
            raise ValueError(f"label index {int(codes.max())} out of range for {len(classes)} classes")
        return codes
    index = {c: k for k, c in enumerate(classes)}
    unknown = sorted({repr(v) for v in values if v is not None and v not in index})
    if unknown:
        raise ValueError(f"unknown label(s) {', '.join(unknown)}; configured classes: {list(classes)}")
    return np.asarray([-1 if v is None else index[v] for v in values], dtype=np.int64)

"""One training target per item from several annotations: majority vote, Dawid-Skene, CROWDLAB.

Why three: majority vote is the floor every project understands, but it weighs a spammer like a
careful annotator and cannot break a 1-1 tie on its own. Dawid & Skene (1979) estimate a confusion
matrix per annotator by EM and weigh each answer by how often that annotator is right (and what
they confuse), which beats the vote when annotators differ in quality. Given a model's
*cross-fitted* probabilities (:func:`model.crowd.issues.cross_fitted_proba`), the same EM takes
them as each item's prior instead of the global class shares (Raykar et al., 2010, "Learning
from crowds"): then an item with one annotation by an unreliable annotator leans on the model.
CROWDLAB (Goh, Tkachenko & Mueller, 2022; cleanlab.multiannotator) is the other way to use the
model: a weighted average of the model's probabilities and the annotators' votes, the weights
from agreement on items with several annotations; it is re-implemented here in numpy (cleanlab
would bring pandas into the worker) and checked against cleanlab by benchmarks/crowd_replay.py.

Every method returns a :class:`Consensus`. Items flagged with a ground-truth annotation keep that
label with confidence 1 in every method: a trusted answer is not up for a vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.crowd.annotations import Annotations

#: Floor of probabilities and of CROWDLAB's weights (cleanlab's CLIPPING_LOWER_BOUND), so logs and ratios stay finite.
_FLOOR = 1e-6


@dataclass(frozen=True)
class Consensus:
    """Per item: the consensus class, its probability, and how many of the annotators agree.

    ``label``: int64 class index, -1 for an item without annotations. ``proba``: ``(n_items, K)``
    posterior (vote shares for majority vote). ``confidence``: ``proba`` of ``label`` (NaN
    without annotations). ``agreement``: share of the item's annotations equal to ``label`` (NaN
    without annotations; 1.0 for a single annotation, so averages use items with >= 2 only).
    ``tied``: majority vote found several top classes (the tie-break is documented at
    :func:`majority_vote`); the posterior methods report an exact tie of the top posterior.
    ``alpha``: Krippendorff's alpha of the whole set (:func:`krippendorff_alpha`).
    Dawid-Skene also fills ``confusion`` (``(n_annotators, K, K)``, row = true class, column = the
    answer) and ``item_prior`` (the prior each item's posterior started from); CROWDLAB fills
    ``weights`` (``{"model": float, "annotators": [float]}``).
    """

    method: str
    classes: tuple[str, ...]
    label: np.ndarray
    proba: np.ndarray
    confidence: np.ndarray
    agreement: np.ndarray
    n_annotations: np.ndarray
    tied: np.ndarray
    alpha: float | None
    confusion: np.ndarray | None = None
    item_prior: np.ndarray | None = None
    weights: dict[str, Any] | None = None
    iterations: int = 0

    def label_names(self) -> list[str | None]:
        """The consensus as class names (None for an item without annotations): what ``fit`` takes."""
        return [self.classes[k] if k >= 0 else None for k in self.label]

    def summary(self) -> dict[str, Any]:
        """What a round records: tasks, annotations, how many had several, the agreement, ties (JSON-ready)."""
        annotated = self.n_annotations > 0
        multi = self.n_annotations >= 2
        return {
            "method": self.method,
            "tasks": int(annotated.sum()),
            "annotations": int(self.n_annotations.sum()),
            "multi_annotated_tasks": int(multi.sum()),
            "mean_agreement": float(np.mean(self.agreement[multi])) if multi.any() else None,
            "unanimous_share": float(np.mean(self.agreement[multi] == 1.0)) if multi.any() else None,
            "krippendorff_alpha": self.alpha,
            "ties": int(self.tied.sum()),
            "mean_confidence": float(np.mean(self.confidence[annotated])) if annotated.any() else None,
        }


def majority_vote(ann: Annotations, weights: np.ndarray | None = None, proba: np.ndarray | None = None) -> Consensus:
    """The most frequent answer per item (optionally weighted per annotator), ties broken deterministically.

    A tie goes to the tied class the model finds likelier (``proba``, e.g. cross-fitted), then to
    the class most frequent among all annotations (the prior a person would bet on), then to the
    first in the configured order; ``tied`` marks the items whose vote was tied, whatever broke it.
    ``weights`` (one per annotator, e.g. :attr:`model.crowd.annotators.AnnotatorStats.weight`)
    down-weight unreliable annotators; a weight of 0 silences one.
    """
    if weights is not None and (np.shape(weights) != (ann.n_annotators,) or np.any(np.asarray(weights) < 0)):
        raise ValueError(f"annotator weights must be {ann.n_annotators} numbers >= 0 (one per annotator)")
    votes = ann.votes(weights)
    top = votes.max(axis=1, keepdims=True)
    annotated = ann.per_item() > 0
    candidates = (votes >= top - 1e-12) & annotated[:, None]
    tied = candidates.sum(axis=1) > 1
    frequency = np.bincount(ann.label, minlength=ann.n_classes) / max(1, len(ann))
    key = frequency * 1e-6 if proba is None else _check_proba(proba, ann) + frequency * 1e-6
    label = np.where(annotated, np.argmax(np.where(candidates, key, -np.inf), axis=1), -1)
    totals = votes.sum(axis=1, keepdims=True)
    shares = np.divide(votes, totals, out=np.zeros_like(votes), where=totals > 0)
    return _finish("majority", ann, label, shares, tied)


def dawid_skene(ann: Annotations, proba: np.ndarray | None = None, max_iter: int = 100, tol: float = 1e-6,
                prior_strength: float = 2.0, prior_accuracy: float = 0.7) -> Consensus:
    """Dawid-Skene EM: a confusion matrix per annotator, the posterior of each item's true class.

    Starts from the majority vote's shares, then alternates the M-step (class shares, and each
    annotator's confusion rows from the posterior-weighted answers plus a Dirichlet prior of
    ``prior_strength`` pseudo-answers per row with mean accuracy ``prior_accuracy``, so an
    annotator with five labels is not declared perfect or hopeless) and the E-step. With
    ``proba`` (``(n_items, K)``, cross-fitted: a model that saw an item's label must not vote on
    it) each item's prior is the model's probability, not the global class shares. Stops when no
    posterior moves by more than ``tol`` or after ``max_iter`` rounds.
    """
    if not 0 < prior_accuracy < 1 or prior_strength < 0:
        raise ValueError("prior_accuracy must be in (0, 1) and prior_strength >= 0")
    model = None if proba is None else np.clip(_check_proba(proba, ann), _FLOOR, None)
    annotated = ann.per_item() > 0
    truth = ann.truth()
    posterior = majority_vote(ann, proba=model).proba
    posterior[~annotated] = 1.0 / ann.n_classes
    pseudo = _confusion_prior(ann.n_classes, prior_strength, prior_accuracy)
    iterations = 0
    for iterations in range(1, max_iter + 1):  # noqa: B007  (the count is reported after the loop)
        confusion = _m_step(ann, posterior, pseudo)
        shares = posterior[annotated].mean(axis=0) if annotated.any() else np.full(ann.n_classes, 1 / ann.n_classes)
        prior = np.broadcast_to(np.clip(shares, _FLOOR, None), posterior.shape) if model is None else model
        updated = _e_step(ann, np.log(prior), confusion)
        _clamp_truth(updated, truth)
        change = float(np.max(np.abs(updated - posterior))) if updated.size else 0.0
        posterior = updated
        if change < tol:
            break
    label = np.where(annotated, np.argmax(posterior, axis=1), -1)
    top_two = np.sort(posterior, axis=1)[:, -2:]
    tied = annotated & (np.ptp(top_two, axis=1) < 1e-12) if ann.n_classes > 1 else np.zeros(ann.n_items, bool)
    return _finish("dawid_skene" if model is None else "dawid_skene+model", ann, label, posterior, tied,
                   confusion=confusion, item_prior=np.array(prior), iterations=iterations)


def _confusion_prior(n_classes: int, strength: float, accuracy: float) -> np.ndarray:
    """Dirichlet pseudo-counts of one confusion row per true class: ``strength`` answers, ``accuracy`` of them right."""
    if n_classes == 1:
        return np.full((1, 1), strength)
    off = strength * (1 - accuracy) / (n_classes - 1)
    return np.full((n_classes, n_classes), off) + np.eye(n_classes) * (strength * accuracy - off)


def _m_step(ann: Annotations, posterior: np.ndarray, pseudo: np.ndarray) -> np.ndarray:
    """Each annotator's confusion matrix (rows: true class, sum to 1) from the posterior-weighted answers."""
    counts = np.broadcast_to(pseudo, (ann.n_annotators, *pseudo.shape)).copy()
    # counts[a, k, l] += P(item true = k) for every answer l of annotator a
    np.add.at(counts, (ann.annotator, slice(None), ann.label), posterior[ann.item])
    return counts / np.clip(counts.sum(axis=2, keepdims=True), _FLOOR, None)


def _e_step(ann: Annotations, log_prior: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """Posterior of each item's true class: prior times the likelihood of every answer it got."""
    log_post = np.array(log_prior, dtype=np.float64)
    np.add.at(log_post, ann.item, np.log(np.clip(confusion[ann.annotator, :, ann.label], _FLOOR, None)))
    log_post -= log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post)
    return post / post.sum(axis=1, keepdims=True)


def crowdlab(ann: Annotations, proba: np.ndarray) -> Consensus:
    """CROWDLAB's consensus: the model's probabilities and the votes averaged with estimated weights.

    As cleanlab.multiannotator.get_label_quality_multiannotator (quality_method="crowdlab") does
    it: start from the majority vote (ties to the model), weigh the model and each annotator by
    how much better than "always the commonest class" they agree with that consensus on items with
    several annotations, take the posterior's argmax as the consensus (ties keep the vote) and
    recompute the weights and the posterior once for it (the consensus is not moved again).
    Without any item labelled twice there is nothing to weigh by; then, as ActiveLab does, model
    and annotators all get weight 1.
    """
    model = _check_proba(proba, ann)
    vote = majority_vote(ann, proba=model)
    post, _ = _crowdlab_posterior(ann, model, vote.label)
    annotated = ann.per_item() > 0
    best = post >= post.max(axis=1, keepdims=True) - 1e-12
    unique = best.sum(axis=1) == 1
    label = np.where(annotated, np.where(unique, np.argmax(post, axis=1), vote.label), -1)
    post, weights = _crowdlab_posterior(ann, model, label)  # the consensus stays; its weights are refreshed
    return _finish("crowdlab", ann, label, post, vote.tied, weights=weights)


def _crowdlab_posterior(ann: Annotations, model: np.ndarray, consensus: np.ndarray) -> tuple[np.ndarray, dict]:
    """CROWDLAB's weighted average for one consensus; returns it and the weights used."""
    k = ann.n_classes
    m = ann.per_item()
    multi = m >= 2
    if multi.any():
        agreement = _agreement(ann, consensus)
        likely = float(np.mean(agreement[multi]))
        mode = np.bincount(consensus[multi], minlength=k).argmax()
        baseline_error = max(float(np.mean(consensus[multi] != mode)), _FLOOR)
        agree = _agreement_with_others(ann)
        annotator_w = np.clip(1 - (1 - agree) / baseline_error, _FLOOR, None)
        model_error = float(np.mean(np.argmax(model[multi], axis=1) != consensus[multi]))
        model_w = max(1 - model_error / baseline_error, _FLOOR) * float(np.sqrt(np.mean(m[m > 0])))
    else:
        likely, annotator_w, model_w = 1.0, np.ones(ann.n_annotators), 1.0
    unlikely = (1 - likely) / (k - 1) if k > 1 else 0.0
    post = model * model_w
    answers = np.where(np.arange(k)[None, :] == ann.label[:, None], likely, unlikely)
    np.add.at(post, ann.item, answers * annotator_w[ann.annotator][:, None])
    total = model_w + np.bincount(ann.item, weights=annotator_w[ann.annotator], minlength=ann.n_items)
    post = post / total[:, None]
    _clamp_truth(post, ann.truth())
    return post, {"model": float(model_w), "annotators": [float(w) for w in annotator_w]}


def _agreement_with_others(ann: Annotations) -> np.ndarray:
    """Per annotator: share of the *other* annotations of their items that give their answer (items with >= 2).

    cleanlab's "agreement with annotators"; an annotator who shares no item with anyone gets the
    mean of the others (no evidence either way), and 1.0 if nobody shares any item.
    """
    votes = ann.votes()
    m = ann.per_item()[ann.item]
    multi = m >= 2
    same = votes[ann.item, ann.label] - 1  # the annotation itself is not agreement
    agree = np.bincount(ann.annotator[multi], weights=same[multi], minlength=ann.n_annotators)
    pairs = np.bincount(ann.annotator[multi], weights=m[multi] - 1, minlength=ann.n_annotators)
    out = np.divide(agree, pairs, out=np.full(ann.n_annotators, np.nan), where=pairs > 0)
    fill = float(np.nanmean(out)) if np.isfinite(out).any() else 1.0
    return np.where(np.isnan(out), fill, out)


def _agreement(ann: Annotations, label: np.ndarray) -> np.ndarray:
    """Per item: share of its annotations equal to ``label`` (NaN for an item without annotations)."""
    m = ann.per_item()
    hits = np.bincount(ann.item, weights=(ann.label == label[ann.item]).astype(float), minlength=ann.n_items)
    return np.divide(hits, m, out=np.full(ann.n_items, np.nan), where=m > 0)


def _clamp_truth(post: np.ndarray, truth: np.ndarray) -> None:
    """Items with a ground-truth answer: all the probability on it (in place)."""
    known = truth >= 0
    if known.any():
        post[known] = 0.0
        post[known, truth[known]] = 1.0


def _check_proba(proba: np.ndarray, ann: Annotations) -> np.ndarray:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (ann.n_items, ann.n_classes):
        raise ValueError(f"proba must have shape (n_items, n_classes) = {(ann.n_items, ann.n_classes)}, "
                         f"got {proba.shape}")
    if not np.all(np.isfinite(proba)) or proba.min() < 0:
        raise ValueError("proba must be finite and >= 0")
    return proba


def _finish(method: str, ann: Annotations, label: np.ndarray, proba: np.ndarray, tied: np.ndarray,
            **extra: Any) -> Consensus:
    """Apply ground truth, then fill confidence and agreement: the same for every method."""
    proba = np.array(proba, dtype=np.float64)
    truth = ann.truth()
    _clamp_truth(proba, truth)
    label = np.where(truth >= 0, truth, label).astype(np.int64)
    has = label >= 0
    confidence = np.where(has, proba[np.arange(ann.n_items), np.maximum(label, 0)], np.nan)
    return Consensus(method=method, classes=ann.classes, label=label, proba=proba, confidence=confidence,
                     agreement=_agreement(ann, label), n_annotations=ann.per_item(),
                     tied=np.asarray(tied, dtype=bool) & has, alpha=krippendorff_alpha(ann), **extra)


def krippendorff_alpha(ann: Annotations) -> float | None:
    """Krippendorff's alpha (nominal) of the annotations: 1 = perfect agreement, 0 = chance, < 0 = worse.

    Chosen over Fleiss' kappa because it allows any number of annotations per item (missing ones
    are the norm in Label Studio) and corrects for chance from the pooled label shares. Built from
    the coincidence matrix of the items with >= 2 annotations (Krippendorff, "Computing
    Krippendorff's Alpha-Reliability", 2011). None when undefined: fewer than two pairable answers,
    or every answer the same class (no disagreement is possible).
    """
    m = ann.per_item()
    multi = m >= 2
    if not multi.any():
        return None
    votes = ann.votes()[multi]
    scaled = votes / (m[multi] - 1)[:, None]
    coincidence = scaled.T @ votes - np.diag(scaled.sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = float(n_c.sum())
    expected = n * n - float(np.sum(n_c * n_c))
    if n < 2 or expected <= 0:
        return None
    observed = n - float(np.trace(coincidence))
    return float(1 - (n - 1) * observed / expected)

"""Acquisition functions: class probabilities -> one uncertainty per task, in [0, 1].

The backend orders the Label Studio queue with these, so every function obeys one contract:

* input: probabilities, rows are tasks (``(N, C)``; sampled functions will take ``(T, N, C)``);
* output: float64 ``(N,)`` with 0 = the model is sure, 1 = maximally unsure;
* normalised by the number of classes, so scores are comparable across projects and a
  threshold such as the difficulty buckets means the same for 2 or 20 labels.

Each function is a small class (as in baal's heuristics) rather than a bare function, so it
has a ``name`` for the registry and configuration, a ``model`` naming the estimator kind it
is designed for, and a home for parameters.

Two families:

* single distribution, ``input_ndim = 2`` (``model = "logreg"``): least confidence, margin,
  entropy -- over ``(N, C)`` probabilities;
* sampled, ``input_ndim = 3``: ``(T, N, C)`` probabilities from T stochastic forward passes of
  an MC-dropout network (``model = "mlp"``: BALD, predictive entropy, variation ratio, mean
  std) or from the T members of a committee (``model = "committee"``: vote entropy,
  KL-to-consensus). Any sampled function accepts either kind of samples; ``model`` only says
  which estimator :func:`model.estimators.make_estimator` builds for it.

:func:`uncertainty_for` runs an estimator the right way for a strategy. To add a function,
subclass :class:`AcquisitionFunction` and implement :meth:`AcquisitionFunction.score`,
reducing the sample axis 0 (if sampled) and the class axis -1; validation and the
multi-label handling of the base class then apply unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

# Probabilities from a solver can overshoot [0, 1] by rounding; anything beyond this is a bug.
_TOLERANCE = 1e-6


class AcquisitionFunction:
    """Base class: validates input and handles multi-label; subclasses implement :meth:`score`."""

    name: ClassVar[str] = ""
    #: Dimensions of the ``probs`` argument: 2 for (N, C), 3 for sampled (T, N, C).
    input_ndim: ClassVar[int] = 2
    #: The estimator kind (``ChoiceClassifier(model=...)``) this function is designed for.
    model: ClassVar[str] = "logreg"

    def __call__(self, probs: np.ndarray, multi_label: bool = False) -> np.ndarray:
        """Return per-row uncertainty in [0, 1], shape (N,).

        With ``multi_label=True`` the last axis holds L independent Bernoulli probabilities
        (one per label, not summing to 1). Each label is scored as its own two-class problem
        ``[1 - p, p]`` and the L scores are averaged: the queue needs one score per task, and
        averaging lets every label count -- a task is uncertain in proportion to how many of
        its labels the model is unsure about, rather than only its worst or best label.
        """
        p = _validate(probs, self.input_ndim)
        if self.input_ndim == 3 and p.shape[0] == 0:
            raise ValueError(f"expected at least one sample on axis 0, got shape {p.shape}")
        n_rows = p.shape[-2]
        if multi_label:
            if p.shape[-1] == 0:
                return np.zeros(n_rows, dtype=np.float64)
            per_label = self.score(np.stack([1.0 - p, p], axis=-1))  # (N, L)
            return np.clip(per_label.mean(axis=-1), 0.0, 1.0)
        if p.shape[-1] <= 1:
            # One class leaves nothing to be uncertain about (and the normalisers divide by 0).
            return np.zeros(n_rows, dtype=np.float64)
        return np.clip(self.score(p), 0.0, 1.0)

    def score(self, probs: np.ndarray) -> np.ndarray:
        """Map probabilities (..., C) -- sampled: (T, ..., C) -- with C >= 2 to uncertainties (...) in [0, 1]."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LeastConfidence(AcquisitionFunction):
    """``(1 - max p) / (1 - 1/C)``: how far the top class is from certainty.

    The divisor is the largest possible value of ``1 - max p`` (reached by the uniform
    distribution), so uniform scores 1 whatever the number of classes.
    """

    name = "least_confidence"

    def score(self, probs: np.ndarray) -> np.ndarray:
        n_classes = probs.shape[-1]
        return (1.0 - probs.max(axis=-1)) / (1.0 - 1.0 / n_classes)


class Margin(AcquisitionFunction):
    """``1 - (p_top1 - p_top2)``: the model is torn between its two best guesses.

    Ignores the tail of the distribution, which makes it the most robust default for
    ranking: a task the model hesitates on between two labels is exactly what a human
    answer resolves.
    """

    name = "margin"

    def score(self, probs: np.ndarray) -> np.ndarray:
        top2 = np.partition(probs, -2, axis=-1)[..., -2:]
        return 1.0 - (top2[..., 1] - top2[..., 0])


class Entropy(AcquisitionFunction):
    """Shannon entropy divided by ``log C``: uncertainty over the whole distribution."""

    name = "entropy"

    def score(self, probs: np.ndarray) -> np.ndarray:
        n_classes = probs.shape[-1]
        # 0 * log 0 is taken as 0 (its limit); log is only evaluated where p > 0.
        plogp = probs * np.log(np.where(probs > 0.0, probs, 1.0))
        return -plogp.sum(axis=-1) / np.log(n_classes)


class BALD(AcquisitionFunction):
    """Mutual information between the label and the model, ``H[mean_t p_t] - mean_t H[p_t]``.

    Bayesian Active Learning by Disagreement (Houlsby et al. 2011; with MC dropout, Gal et al.
    2017): high only where the samples are individually confident but disagree with each
    other, i.e. where a label would teach the model something. A task the model finds
    inherently ambiguous (every sample says 50/50) scores 0, unlike predictive entropy.

    Normalised by ``log(min(T, C))``, an upper bound of the mutual information (it is at most
    the entropy of the label, ``log C``, and of the uniformly drawn sample index, ``log T``).
    It is reached by one-hot samples spread evenly over ``min(T, C)`` classes. T = 1 gives 0.
    """

    name = "bald"
    input_ndim = 3
    model = "mlp"

    def score(self, probs: np.ndarray) -> np.ndarray:
        n_samples, n_classes = probs.shape[0], probs.shape[-1]
        bound = math.log(min(n_samples, n_classes))
        if bound == 0.0:
            return np.zeros(probs.shape[1:-1])
        return (_entropy(probs.mean(axis=0)) - _entropy(probs).mean(axis=0)) / bound


class PredictiveEntropy(AcquisitionFunction):
    """Entropy of the mean prediction ``H[mean_t p_t] / log C``.

    The total uncertainty of the Bayesian model average: disagreement between samples (what
    BALD measures) plus the ambiguity every sample agrees on. Same normaliser as
    :class:`Entropy`, of which it is the sampled counterpart.
    """

    name = "predictive_entropy"
    input_ndim = 3
    model = "mlp"

    def score(self, probs: np.ndarray) -> np.ndarray:
        return _entropy(probs.mean(axis=0)) / math.log(probs.shape[-1])


class VariationRatio(AcquisitionFunction):
    """``1 - f_mode / T``: the share of samples whose top class is not the most voted one.

    Freeman's variation ratio over the samples' argmax votes. It only sees votes: samples that
    all say 0.4 / 0.35 / 0.25 agree perfectly and score 0.

    Normalised by its largest value for T votes over C classes, ``1 - ceil(T / C) / T`` (votes
    spread as evenly as T allows; ``1 - 1/C`` when C divides T), so the most even split scores
    1. T = 1 gives 0.
    """

    name = "variation_ratio"
    input_ndim = 3
    model = "mlp"

    def score(self, probs: np.ndarray) -> np.ndarray:
        n_samples, n_classes = probs.shape[0], probs.shape[-1]
        bound = 1.0 - math.ceil(n_samples / n_classes) / n_samples
        if bound <= 0.0:
            return np.zeros(probs.shape[1:-1])
        mode_share = _vote_counts(probs).max(axis=-1) / n_samples
        return (1.0 - mode_share) / bound


class MeanStd(AcquisitionFunction):
    """Mean over classes of the standard deviation of ``p_t[c]`` across samples (Kampffmeyer et al. 2016).

    Uses the population std (ddof=0). Normalised by its maximum ``sqrt(C - 1) / C`` (0.5 for
    two classes): ``Var_t p[c] <= E p[c] - (E p[c])^2`` because ``p^2 <= p`` on [0, 1], and the
    mean of ``sqrt(m_c (1 - m_c))`` under ``sum_c m_c = 1`` is largest at ``m_c = 1/C`` (concavity);
    one-hot samples with equal class frequencies reach it.
    """

    name = "mean_std"
    input_ndim = 3
    model = "mlp"

    def score(self, probs: np.ndarray) -> np.ndarray:
        n_classes = probs.shape[-1]
        return probs.std(axis=0).mean(axis=-1) / (math.sqrt(n_classes - 1) / n_classes)


class VoteEntropy(AcquisitionFunction):
    """Entropy of the members' argmax votes (Dagan & Engelson 1995), query by committee.

    Normalised by the largest vote entropy T members can produce over C classes: votes spread
    as evenly as possible (``r = T mod C`` classes get ``ceil(T/C)`` votes, the others
    ``floor(T/C)``). That is ``log C`` when C divides T and ``log T`` when T <= C (the
    ``log(min(T, C))`` bound), and slightly less otherwise -- 5 members over 3 classes can at
    best vote 2/2/1, which then scores 1. T = 1 gives 0.
    """

    name = "vote_entropy"
    input_ndim = 3
    model = "committee"

    def score(self, probs: np.ndarray) -> np.ndarray:
        n_samples, n_classes = probs.shape[0], probs.shape[-1]
        bound = _even_split_entropy(n_samples, n_classes)
        if bound <= 0.0:
            return np.zeros(probs.shape[1:-1])
        return _entropy(_vote_counts(probs) / n_samples) / bound


class KLToConsensus(AcquisitionFunction):
    """Kullback-Leibler divergence of each member from the consensus ``mean_t p_t``.

    ``reduction="mean"`` (the registered default) is McCallum & Nigam's (1998) average KL to
    the mean. Note the identity ``mean_t KL(p_t || mean p) = H[mean p] - mean_t H[p_t]``: it
    *is* the mutual information, so on the same samples it equals :class:`BALD` (same
    normaliser ``log(min(T, C))``); it is kept under its query-by-committee name for
    configuration. ``reduction="max"`` is the "max disagreement" variant (the one outlier
    member decides), normalised by its bound ``log T`` (``mean p >= p_t / T``), not ``log C``:
    one member alone against four unanimous others reaches ``log 5`` even for two classes.
    """

    name = "kl_consensus"
    input_ndim = 3
    model = "committee"

    def __init__(self, reduction: str = "mean"):
        if reduction not in ("mean", "max"):
            raise ValueError(f"reduction must be 'mean' or 'max', got {reduction!r}")
        self.reduction = reduction

    def score(self, probs: np.ndarray) -> np.ndarray:
        n_samples, n_classes = probs.shape[0], probs.shape[-1]
        bound = math.log(min(n_samples, n_classes) if self.reduction == "mean" else n_samples)
        if bound == 0.0:
            return np.zeros(probs.shape[1:-1])
        consensus = probs.mean(axis=0)
        # p_t > 0 implies consensus >= p_t / T > 0, so the ratio is finite wherever it is used.
        ratio = np.where(probs > 0.0, probs / np.where(consensus > 0.0, consensus, 1.0), 1.0)
        kl = (probs * np.log(ratio)).sum(axis=-1)
        reduced = kl.mean(axis=0) if self.reduction == "mean" else kl.max(axis=0)
        return reduced / bound

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


STRATEGIES: dict[str, type[AcquisitionFunction]] = {
    cls.name: cls
    for cls in (
        LeastConfidence,
        Margin,
        Entropy,
        BALD,
        PredictiveEntropy,
        VariationRatio,
        MeanStd,
        VoteEntropy,
        KLToConsensus,
    )
}

DEFAULT_STRATEGY = "margin"

#: The strategy name that means "the default for this kind of input" (:func:`default_strategy`).
AUTO = "auto"


def default_strategy(modality: str) -> str:
    """The strategy that served each kind of input best where we measured it, for ``strategy="auto"``.

    Text: BALD (an MLP with Monte-Carlo dropout). On short texts whose classes overlap (docstrings
    by package) margin and entropy tie random sampling -- they keep asking about generic texts no
    model can place -- while BALD asks where the model's plausible fits disagree and beat random in
    10 of 10 seeds; on man pages and gcloud pages it still beats random in every seed but one tie,
    trailing margin by 1-2 points of learning-curve area. Images and anything else:
    margin, which beat BALD on digits with a logistic model at a fraction of the cost. The figures and
    the commands that print them are in the README ("Simulate", "The live loop").
    """
    return "bald" if modality == "text" else DEFAULT_STRATEGY


def get_strategy(name: str = DEFAULT_STRATEGY) -> AcquisitionFunction:
    """Return a new instance of the acquisition function registered under ``name``."""
    try:
        return STRATEGIES[name]()
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown uncertainty strategy {name!r}; valid names: {', '.join(sorted(STRATEGIES))}"
        ) from None


class ProbabilisticEstimator(Protocol):
    """What :func:`uncertainty_for` needs from an estimator (e.g. ``ChoiceClassifier``)."""

    multi_label: bool

    def predict_proba(self, X: Sequence[Any]) -> np.ndarray: ...

    def predict_proba_samples(self, X: Sequence[Any]) -> np.ndarray: ...


def uncertainty_for(
    estimator: ProbabilisticEstimator,
    strategy: AcquisitionFunction | str,
    X: Sequence[Any],
    multi_label: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``estimator`` once on ``X`` and return ``(probs (N, C), uncertainty (N,))``.

    A sampled strategy (``input_ndim == 3``) gets ``estimator.predict_proba_samples(X)`` and
    ``probs`` is their mean over the samples -- the MC / committee average, which is also the
    better prediction for the labels. Otherwise ``probs = estimator.predict_proba(X)``.
    ``strategy`` may be a registered name. ``multi_label`` defaults to the estimator's own
    ``multi_label``, so a caller cannot score Bernoulli columns as one distribution by omission.
    """
    if isinstance(strategy, str):
        strategy = get_strategy(strategy)
    if multi_label is None:
        multi_label = bool(getattr(estimator, "multi_label", False))
    if strategy.input_ndim == 3:
        samples = np.asarray(estimator.predict_proba_samples(X), dtype=np.float64)
        return samples.mean(axis=0), strategy(samples, multi_label=multi_label)
    probs = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    return probs, strategy(probs, multi_label=multi_label)


def confidence_score(uncertainty: np.ndarray | float) -> np.ndarray:
    """Return ``1 - uncertainty`` clipped to [0, 1].

    This is the prediction ``score`` Label Studio sorts by: ascending order then puts the
    most uncertain tasks first.
    """
    return np.clip(1.0 - np.asarray(uncertainty, dtype=np.float64), 0.0, 1.0)


def decision_confidence(probs: np.ndarray, multi_label: bool = False) -> np.ndarray:
    """Probability that the predicted label (set) is right, per task, for auto-labelling thresholds.

    Single-label: the top class's probability. Multi-label: the product over classes of
    ``max(p, 1 - p)`` -- the chance that every independent yes/no decision at 0.5 is right. Unlike
    the acquisition scores this is not normalised per strategy: it is the quantity whose
    precision the validation split measures.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be (n_tasks, n_classes), got shape {probs.shape}")
    if probs.shape[0] == 0:
        return np.zeros(0)
    if multi_label:
        return np.prod(np.maximum(probs, 1.0 - probs), axis=1)
    return probs.max(axis=1)


def _entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) over the last axis, with 0 * log 0 taken as 0."""
    return -(probs * np.log(np.where(probs > 0.0, probs, 1.0))).sum(axis=-1)


def _vote_counts(probs: np.ndarray) -> np.ndarray:
    """Argmax votes of the samples on axis 0, counted per class: (T, ..., C) -> (..., C)."""
    votes = probs.argmax(axis=-1)
    return (votes[..., np.newaxis] == np.arange(probs.shape[-1])).sum(axis=0)


def _even_split_entropy(n_votes: int, n_classes: int) -> float:
    """Entropy (nats) of ``n_votes`` votes spread as evenly as possible over ``n_classes``."""
    low, extra = divmod(n_votes, n_classes)
    shares = [(low + 1) / n_votes] * extra + ([low / n_votes] * (n_classes - extra) if low else [])
    return -sum(q * math.log(q) for q in shares)


def _validate(probs: np.ndarray, ndim: int) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != ndim:
        raise ValueError(f"expected probabilities with {ndim} dimensions, got shape {p.shape}")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < -_TOLERANCE or p.max() > 1.0 + _TOLERANCE):
        raise ValueError("probabilities must be finite and within [0, 1]")
    return np.clip(p, 0.0, 1.0)

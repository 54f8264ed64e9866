"""Acquisition functions: class probabilities -> one uncertainty per task, in [0, 1].

The backend orders the Label Studio queue with these, so every function obeys one contract:

* input: probabilities, rows are tasks (``(N, C)``; sampled functions will take ``(T, N, C)``);
* output: float64 ``(N,)`` with 0 = the model is sure, 1 = maximally unsure;
* normalised by the number of classes, so scores are comparable across projects and a
  threshold such as the difficulty buckets means the same for 2 or 20 labels.

Each function is a small class (as in baal's heuristics) rather than a bare function, so it
has a ``name`` for the registry and configuration, and a home for parameters later on.

Extending (issue #3, MC-dropout / committees): subclass :class:`AcquisitionFunction`, set
``input_ndim = 3`` and implement :meth:`AcquisitionFunction.score` for ``(T, ..., C)`` arrays,
reducing the sample axis 0 and the class axis -1. Validation and the multi-label handling of
the base class then apply unchanged.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

# Probabilities from a solver can overshoot [0, 1] by rounding; anything beyond this is a bug.
_TOLERANCE = 1e-6


class AcquisitionFunction:
    """Base class: validates input and handles multi-label; subclasses implement :meth:`score`."""

    name: ClassVar[str] = ""
    #: Dimensions of the ``probs`` argument: 2 for (N, C), 3 for sampled (T, N, C).
    input_ndim: ClassVar[int] = 2

    def __call__(self, probs: np.ndarray, multi_label: bool = False) -> np.ndarray:
        """Return per-row uncertainty in [0, 1], shape (N,).

        With ``multi_label=True`` the last axis holds L independent Bernoulli probabilities
        (one per label, not summing to 1). Each label is scored as its own two-class problem
        ``[1 - p, p]`` and the L scores are averaged: the queue needs one score per task, and
        averaging lets every label count -- a task is uncertain in proportion to how many of
        its labels the model is unsure about, rather than only its worst or best label.
        """
        p = _validate(probs, self.input_ndim)
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
        """Map probabilities (..., C) with C >= 2 to uncertainties (...) in [0, 1]."""
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


STRATEGIES: dict[str, type[AcquisitionFunction]] = {
    cls.name: cls for cls in (LeastConfidence, Margin, Entropy)
}

DEFAULT_STRATEGY = "margin"


def get_strategy(name: str = DEFAULT_STRATEGY) -> AcquisitionFunction:
    """Return a new instance of the acquisition function registered under ``name``."""
    try:
        return STRATEGIES[name]()
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown uncertainty strategy {name!r}; valid names: {', '.join(sorted(STRATEGIES))}"
        ) from None


def confidence_score(uncertainty: np.ndarray | float) -> np.ndarray:
    """Return ``1 - uncertainty`` clipped to [0, 1].

    This is the prediction ``score`` Label Studio sorts by: ascending order then puts the
    most uncertain tasks first.
    """
    return np.clip(1.0 - np.asarray(uncertainty, dtype=np.float64), 0.0, 1.0)


def _validate(probs: np.ndarray, ndim: int) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != ndim:
        raise ValueError(f"expected probabilities with {ndim} dimensions, got shape {p.shape}")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < -_TOLERANCE or p.max() > 1.0 + _TOLERANCE):
        raise ValueError("probabilities must be finite and within [0, 1]")
    return np.clip(p, 0.0, 1.0)

"""Coarse difficulty buckets over uncertainty, for humans (filters, dashboards, routing).

A raw score such as 0.43 means little to an annotator or a project manager; three named
buckets do, and they let the backend route "hard" tasks to experienced annotators.

Where the thresholds come from
------------------------------
Fixed thresholds (``easy_below=0.2``, ``hard_above=0.6``) say nothing about *this* model: one
model is right 99 % of the time at u = 0.5, another only 60 %. :func:`fit_thresholds` derives
them from the held-out validation split instead, so a bucket names an error rate:

1. Each validation row gives its uncertainty ``u`` and whether the prediction was wrong.
2. The error rate as a function of ``u``, ``err(u)``, is estimated by isotonic regression of
   the 0/1 error on ``u`` (increasing). Isotonic regression is the least-squares fit among all
   non-decreasing functions: more uncertainty never means fewer errors, so the buckets come out
   as three intervals whatever the noise, and no bin width has to be chosen. Between fitted
   points ``err`` is linearly interpolated, and constant beyond the observed range.
3. ``easy_below`` is the largest ``u`` with ``err(u) < easy_error`` (default 5 %), 0 if there
   is none; ``hard_above`` the smallest ``u`` with ``err(u) > hard_error`` (default 30 %), 1 if
   there is none. (Both are where the interpolated curve crosses the rate, so ``bucket``'s
   strict ``u < easy_below`` / ``u > hard_above`` select exactly those regions.)
4. With fewer than ``min_samples`` validation rows, or when they are all right or all wrong
   (no information on how error depends on ``u``), the fixed defaults are used and the result
   says ``source="default"``.

Always ``0 <= easy_below <= hard_above <= 1``, so the result can be passed to :func:`bucket`
(or :meth:`DifficultyThresholds.bucket`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression

EASY = "easy"
MEDIUM = "medium"
HARD = "hard"
#: No bucket yet: the validation split is too small to fit the thresholds (see fit_thresholds' min_samples).
UNRATED = "unrated"

#: Fallback thresholds (and :func:`bucket`'s defaults) on the [0, 1] uncertainty scale.
DEFAULT_EASY_BELOW = 0.2
DEFAULT_HARD_ABOVE = 0.6

_SOURCES = ("validation", "default")
# Uncertainties come out of model.uncertainty clipped to [0, 1]; anything further out is a bug.
_TOLERANCE = 1e-6


def bucket(uncertainty: np.ndarray, easy_below: float = 0.2, hard_above: float = 0.6) -> np.ndarray:
    """Return an object array of "easy" / "medium" / "hard", same shape as ``uncertainty``.

    ``u < easy_below`` is easy, ``u > hard_above`` is hard, everything in between (bounds
    included) is medium. Thresholds are on the [0, 1] uncertainty scale of
    :mod:`model.uncertainty`, so they mean the same whatever the number of classes.
    """
    if not (0.0 <= easy_below <= hard_above <= 1.0):
        raise ValueError(
            "need 0 <= easy_below <= hard_above <= 1, "
            f"got easy_below={easy_below!r}, hard_above={hard_above!r}"
        )
    u = np.asarray(uncertainty, dtype=np.float64)
    if not np.all(np.isfinite(u)):
        # NaN compares False with everything and would quietly land in "medium".
        raise ValueError("uncertainty contains NaN or infinite values")
    out = np.full(u.shape, MEDIUM, dtype=object)
    out[u < easy_below] = EASY
    out[u > hard_above] = HARD
    return out


@dataclass(frozen=True)
class DifficultyThresholds:
    """Bucket thresholds on the uncertainty scale, and where they came from.

    ``source`` is ``"validation"`` when fitted by :func:`fit_thresholds`, ``"default"`` for the
    fixed fallback -- worth showing next to the buckets, since only the former is calibrated.
    """

    easy_below: float
    hard_above: float
    source: str

    def __post_init__(self) -> None:
        if not (0.0 <= self.easy_below <= self.hard_above <= 1.0):
            raise ValueError(
                "need 0 <= easy_below <= hard_above <= 1, "
                f"got easy_below={self.easy_below!r}, hard_above={self.hard_above!r}"
            )
        if self.source not in _SOURCES:
            raise ValueError(f"source must be one of {_SOURCES}, got {self.source!r}")

    def bucket(self, uncertainty: np.ndarray) -> np.ndarray:
        """:func:`bucket` with these thresholds."""
        return bucket(uncertainty, easy_below=self.easy_below, hard_above=self.hard_above)


DEFAULT_THRESHOLDS = DifficultyThresholds(DEFAULT_EASY_BELOW, DEFAULT_HARD_ABOVE, "default")


def fit_thresholds(
    uncertainty: np.ndarray,
    correct: np.ndarray,
    hard_error: float = 0.30,
    easy_error: float = 0.05,
    min_samples: int = 20,
) -> DifficultyThresholds:
    """Derive bucket thresholds from validation outcomes (the rule is in the module docstring).

    Parameters
    ----------
    uncertainty:
        float ``(n,)`` in [0, 1], the model's uncertainty on each validation row.
    correct:
        bool ``(n,)`` (or 0/1), whether the model's prediction on that row was right.
    hard_error, easy_error:
        Error rates defining the buckets: "hard" where ``err(u) > hard_error``, "easy" where
        ``err(u) < easy_error``. Need ``0 <= easy_error <= hard_error <= 1``.
    min_samples:
        Below this many rows the estimate is too noisy and the defaults are returned.
    """
    if not (0.0 <= easy_error <= hard_error <= 1.0):
        raise ValueError(
            f"need 0 <= easy_error <= hard_error <= 1, got easy_error={easy_error!r}, hard_error={hard_error!r}"
        )
    if isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer)) or min_samples < 1:
        raise ValueError(f"min_samples must be a positive integer, got {min_samples!r}")
    u = np.asarray(uncertainty, dtype=np.float64)
    ok = np.asarray(correct)
    if u.ndim != 1 or ok.shape != u.shape:
        raise ValueError(f"uncertainty and correct must be 1-D of equal length, got {u.shape} and {ok.shape}")
    if u.size and (not np.all(np.isfinite(u)) or u.min() < -_TOLERANCE or u.max() > 1.0 + _TOLERANCE):
        raise ValueError("uncertainty must be finite and within [0, 1]")
    if ok.size and not np.isin(ok, (0, 1)).all():
        raise ValueError("correct must hold booleans (or 0/1)")
    error = 1.0 - ok.astype(np.float64)
    if u.size < min_samples or np.unique(error).size < 2:
        return DEFAULT_THRESHOLDS

    iso = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(np.clip(u, 0.0, 1.0), error)
    xs = np.asarray(iso.X_thresholds_, dtype=np.float64)
    ys = np.asarray(iso.y_thresholds_, dtype=np.float64)
    easy_below = _last_below(xs, ys, easy_error)
    hard_above = _first_above(xs, ys, hard_error)
    # Monotone err and easy_error <= hard_error already give easy <= hard; min/clip guard rounding.
    hard_above = float(np.clip(hard_above, 0.0, 1.0))
    easy_below = float(np.clip(min(easy_below, hard_above), 0.0, 1.0))
    return DifficultyThresholds(easy_below, hard_above, "validation")


def bucket_counts(labels: Iterable[str] | np.ndarray) -> dict[str, int]:
    """Count "easy" / "medium" / "hard" labels; all three keys are always present, in that order, and
    "unrated" is added when any task has no bucket yet.

    Dashboards and iteration records want a fixed shape even when a bucket is empty.
    """
    counts = {EASY: 0, MEDIUM: 0, HARD: 0}
    values = np.asarray(labels, dtype=object).ravel() if isinstance(labels, np.ndarray) else labels
    for label in values:
        if label == UNRATED:
            counts[UNRATED] = counts.get(UNRATED, 0) + 1
            continue
        if label not in counts:
            raise ValueError(f"unknown difficulty label {label!r}; expected one of {list(counts)}")
        counts[label] += 1
    return counts


def _last_below(xs: np.ndarray, ys: np.ndarray, rate: float) -> float:
    """sup{u in [0, 1] : err(u) < rate} for the non-decreasing interpolant through (xs, ys)."""
    if ys[0] >= rate:
        return 0.0
    if ys[-1] < rate:
        return 1.0
    i = int(np.argmax(ys >= rate))  # first knot at or above; i >= 1 as ys[0] < rate
    return _cross(xs[i - 1], ys[i - 1], xs[i], ys[i], rate)


def _first_above(xs: np.ndarray, ys: np.ndarray, rate: float) -> float:
    """inf{u in [0, 1] : err(u) > rate} for the non-decreasing interpolant through (xs, ys)."""
    if ys[-1] <= rate:
        return 1.0
    if ys[0] > rate:
        return 0.0
    j = int(np.argmax(ys > rate)) - 1  # last knot at or below; j >= 0 as ys[0] <= rate
    return _cross(xs[j], ys[j], xs[j + 1], ys[j + 1], rate)


def _cross(x0: float, y0: float, x1: float, y1: float, rate: float) -> float:
    """Where the segment (x0, y0) -> (x1, y1), y0 <= rate <= y1, y0 < y1, reaches ``rate``."""
    return float(x0 + (rate - y0) / (y1 - y0) * (x1 - x0))

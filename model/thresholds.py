"""The auto-labelling threshold: how confident must a prediction be to accept it unreviewed?

Auto-labelling accepts the model's label for every task whose confidence is at or above a
threshold. The threshold is chosen on the held-out validation split to meet a *target
precision* -- "at most 2 % of auto-labels wrong" is a promise a project manager can sign --
and among the thresholds that meet it the lowest, which auto-labels the most tasks
(maximum coverage at the target precision):

1. Each validation row gives the model's confidence in its prediction and whether that
   prediction was correct.
2. Every observed confidence ``t`` is a candidate; it selects the rows with confidence
   ``>= t``. All rows sharing a confidence are selected together -- a threshold cannot
   accept half of a tie, and the same rule applies later to the unlabelled pool.
3. The threshold is the smallest candidate whose selected rows are correct at a rate of at
   least ``target``. If none is, nothing is auto-labelled.

Precision need not fall monotonically as the threshold drops, so the chosen threshold can
sit below candidates that miss the target; the promise is about the whole selected set,
which is what auto-labelling acts on. With few validation rows the measured precision is
noisy -- a threshold selecting 3 rows, all correct, "reaches" 99 % -- so callers should show
``n_selected`` next to it, or require a minimum before acting. ``confidence_level`` does the
latter properly: the selected rows must then reach the target with their one-sided
Clopper-Pearson *lower* bound, so the promise holds with that probability on new tasks drawn
like the validation split (at the price of coverage, and of no threshold at all when the split
is too small to certify the target: 99 % at 95 % confidence needs about 300 correct rows).

Confidence is whatever the caller ranks by (e.g. the top-label probability of a calibrated
model); this module never looks at probabilities itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ThresholdResult:
    """The chosen threshold and what it does on the validation rows.

    ``threshold`` / ``precision`` are None and ``reached`` False when no threshold meets the
    target (or there are no rows); ``coverage`` is then 0. Otherwise ``precision`` is the
    share correct among the ``n_selected`` rows with confidence >= ``threshold``, and
    ``coverage = n_selected / n``.
    """

    threshold: float | None
    precision: float | None
    coverage: float
    n_selected: int
    n: int
    reached: bool
    #: One-sided Clopper-Pearson lower bound of ``precision`` at ``level`` (None when nothing is selected).
    precision_lower: float | None = field(default=None, compare=False)
    level: float = field(default=0.95, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy (all fields are built-in types)."""
        return asdict(self)


def precision_coverage_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(thresholds, precision, coverage)`` for every distinct observed confidence.

    ``thresholds`` are the distinct confidences in decreasing order; entry ``i`` describes
    auto-labelling every row with confidence ``>= thresholds[i]``: ``precision[i]`` is the
    share of those rows that are correct, ``coverage[i]`` their share of all rows. Coverage
    therefore increases along the arrays and ends at 1. All three are float64 and empty for
    empty input -- ready for a precision-vs-coverage plot.

    (The same cumulative counts as :func:`sklearn.metrics.precision_recall_curve`, but that
    returns recall -- correct selected over all correct -- rather than coverage, which is
    what auto-labelling needs, and it warns when every prediction is correct.)
    """
    thresholds, n_correct, n_selected = _cumulative(confidence, correct)
    selected = n_selected.astype(np.float64)
    return thresholds, n_correct / np.maximum(selected, 1.0), selected / max(len(np.asarray(confidence)), 1)


def precision_threshold(
    confidence: np.ndarray, correct: np.ndarray, target: float, confidence_level: float | None = None
) -> ThresholdResult:
    """The lowest confidence threshold whose selected rows are at least ``target`` correct.

    See the module docstring for the rule. ``confidence`` is float ``(n,)`` (finite, any
    scale), ``correct`` bool or 0/1 ``(n,)``, ``target`` in (0, 1]. With ``confidence_level``
    (in (0, 1), e.g. 0.95) the selected rows' precision lower bound at that level must reach
    the target instead of their measured precision.
    """
    if isinstance(target, bool) or not isinstance(target, (int, float, np.floating)) or not 0.0 < target <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {target!r}")
    if confidence_level is not None and not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level!r}")
    level = 0.95 if confidence_level is None else float(confidence_level)
    thresholds, n_correct, n_selected = _cumulative(confidence, correct)
    n = int(np.asarray(confidence).size)
    precision = n_correct / np.maximum(n_selected, 1)
    lower = precision_lower_bound(n_correct, n_selected, level)
    criterion = precision if confidence_level is None else lower
    # A precision equal to the target reaches it; the tolerance absorbs rounding when the target
    # was itself computed (say 1 - 1 / 30) and lands an ulp above the same ratio k / n.
    meets = np.flatnonzero(criterion >= target - 1e-12)
    if meets.size == 0:
        return ThresholdResult(threshold=None, precision=None, coverage=0.0, n_selected=0, n=n, reached=False,
                               level=level)
    best = int(meets[-1])  # thresholds decrease along the curve: the last hit is the lowest
    return ThresholdResult(
        threshold=float(thresholds[best]),
        precision=float(precision[best]),
        coverage=float(n_selected[best] / n),
        n_selected=int(n_selected[best]),
        n=n,
        reached=True,
        precision_lower=float(lower[best]),
        level=level,
    )


def precision_lower_bound(n_correct: Any, n_selected: Any, level: float = 0.95) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound of a precision ``n_correct / n_selected`` at ``level``.

    The exact binomial bound: the true precision is at least this with probability ``level``.
    0 where nothing is correct (or nothing selected).
    """
    from scipy.stats import beta

    k = np.asarray(n_correct, dtype=np.float64)
    m = np.asarray(n_selected, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = beta.ppf(1.0 - level, k, m - k + 1.0)
    return np.where((k > 0) & (m > 0), np.nan_to_num(bound, nan=0.0), 0.0)


def coverage_at(threshold: float | None, confidence: np.ndarray) -> float:
    """Share of ``confidence`` at or above ``threshold``: what auto-labelling would take from a pool.

    Returns 0.0 when ``threshold`` is None (no threshold met the target) or the pool is empty.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    if conf.ndim != 1:
        raise ValueError(f"confidence must be 1-D, got shape {conf.shape}")
    if not np.all(np.isfinite(conf)):
        raise ValueError("confidence contains NaN or infinite values")
    if threshold is None or conf.size == 0:
        return 0.0
    return float(np.mean(conf >= threshold))


def _cumulative(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct confidences (decreasing), and the correct / selected row counts at each as a threshold."""
    conf, ok = _validated(confidence, correct)
    order = np.argsort(-conf, kind="stable")
    conf, ok = conf[order], ok[order]
    # Last index of each run of equal confidence: a threshold selects whole ties.
    ends = np.flatnonzero(np.r_[conf[1:] != conf[:-1], True]) if conf.size else np.zeros(0, dtype=np.int64)
    return conf[ends], np.cumsum(ok)[ends], (ends + 1).astype(np.int64)


def _validated(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct)
    if conf.ndim != 1 or ok.shape != conf.shape:
        raise ValueError(f"confidence and correct must be 1-D of equal length, got {conf.shape} and {ok.shape}")
    if not np.all(np.isfinite(conf)):
        raise ValueError("confidence contains NaN or infinite values")
    if ok.size and not np.isin(ok, (0, 1)).all():
        raise ValueError("correct must hold booleans (or 0/1)")
    return conf, ok.astype(np.float64)

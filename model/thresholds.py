"""The auto-labelling threshold: how confident must a prediction be to accept it unreviewed?

Auto-labelling accepts the model's label for every task whose confidence is at or above a
threshold. The threshold is chosen on labelled rows the model did not train on -- the validation
split, optionally joined by cross-fitted training rows (:mod:`model.crossfit`) -- to meet a
*target precision*: "at most 5 % of auto-labels wrong" is a promise a project manager can sign.
Each row gives the model's confidence in its prediction and whether that prediction was right.
Every observed confidence ``t`` is a candidate threshold; it selects the rows with confidence
``>= t``, all rows sharing a confidence together (a threshold cannot accept half of a tie, and
the same rule applies later to the unlabelled pool).

Rule ``"guaranteed"`` (the default): a promise that holds on new tasks
---------------------------------------------------------------------
Picking the lowest threshold whose rows *measure* at least the target (rule ``"point"``) breaks
the promise about half the time near the boundary, and more with few rows: 3 rows, all right,
"reach" 99 %. Measured on real data, a promised 95 % gave 88 % on held-out tasks. The default
therefore tests, Learn-then-Test style, the hypothesis "the precision of the rows at or above
``t`` is below the target" with a one-sided exact binomial (Clopper-Pearson) test at level
``alpha = 1 - confidence_level`` (default confidence 0.95), at a *fixed sequence* of candidates
walked from confident to less confident, and stops at the first candidate it cannot reject. The
threshold is the last candidate that passed; its Clopper-Pearson lower bound is at least the
target. Fixed-sequence testing controls the family-wise error at ``alpha`` without a Bonferroni
correction: with probability at least ``confidence_level`` every passed threshold, the chosen
one included, really has precision >= target on tasks drawn like the labelled rows. (Scanning
all thresholds and taking the lowest whose bound passes -- this module's former opt-in -- is not
covered: among hundreds of tested thresholds, some pass by luck. It was removed.)

Which candidates are tested, and in which order, may depend on the confidences but never on
which rows are correct; given the confidences, the sequence is then fixed in advance, which is
all the guarantee needs (:func:`candidate_sequence`):

* Candidates selecting fewer rows than a bound can ever certify are skipped: the lower bound of
  ``m`` rows all correct is ``(1 - confidence_level) ** (1 / m)``, so 95 % needs at least 59 rows
  at 95 % confidence and 99 % needs 299. Testing (and failing) them would end every walk at once.
* The walk starts where a calibrated model is most likely to pass (``start="guided"``): for each
  candidate, the chance that the selected rows hold few enough errors to pass if each row is
  right with probability equal to its confidence. Starting at the top instead (``start="top"``)
  lets one unlucky confident error among the first 59 rows end the walk before it reaches the
  thresholds that matter. In simulations (calibrated and mis-calibrated scores, 300-2,000 rows)
  the guided start auto-labelled up to 1.7x as much at the same error rate, and as much where
  rows are few (both starts then coincide); on the real data sets of
  benchmarks/autolabel_precision.py it labelled about as much or more in all settings but one.
  Mis-calibration costs coverage, never validity.
* From there the walk thins the candidates: the next one tested is the first that adds at least
  ``min_step`` rows (default 1 % of the rows), and the last candidate (all rows) is always
  tested. A bad row right after a pass then meets the rows that follow it before it is judged,
  rather than ending the walk on its own; it also keeps the number of tests (and the time)
  bounded on large sets.

A higher target never gets a lower threshold with ``start="top", min_step=1`` (apart from large
ties straddling the first candidate): the lower target's walk tests every candidate the higher
one's does, each an easier test, plus a few above them whose rows the higher target's first
pass has shown to be all correct. The guided start and thinning move with the target, so there
it holds as a rule, not always (in simulations 98 % of data sets were monotone over 8 targets).

When no candidate passes, :attr:`ThresholdResult.more_labels_estimate` says roughly how many more
labelled rows would let the target be certified: for each candidate whose measured precision
exceeds the target, the number of rows at which a Clopper-Pearson bound at that precision
reaches it, divided by the share of rows that candidate selects (those rows are all that count),
minus the rows there are; the smallest over candidates. A rough estimate: it trusts a measured
precision that is itself noisy, and it counts rows of the kind given (validation rows, or all
labelled rows when cross-fitted rows are included).

Rule ``"point"``: the measured precision of the selected rows must reach the target; the
lowest such threshold wins, even below candidates that miss it. No guarantee -- an explicit
opt-out for comparisons and for callers who show ``n_selected`` next to it.

Confidence is whatever the caller ranks by (e.g. the top-label probability of a calibrated
model); this module never looks at probabilities itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Threshold rules of :func:`precision_threshold`; the first is the default.
RULES = ("guaranteed", "point")
#: Where the guaranteed rule's walk starts (see the module docstring).
STARTS = ("guided", "top")
#: Confidence level of the guaranteed rule (and of the reported lower bound) when none is given.
DEFAULT_CONFIDENCE_LEVEL = 0.95
#: Default thinning of the walk: a candidate must add at least this share of the rows (>= 1 row).
DEFAULT_STEP_SHARE = 0.01
# Comparisons with the target allow this much rounding: a target computed as 1 - 1 / 30 can land
# an ulp above the very same ratio k / n.
_EPS = 1e-12
# The labels-needed search gives up beyond this many rows (the target is then out of reach).
_MAX_ROWS = 2.0**27


@dataclass(frozen=True)
class ThresholdResult:
    """The chosen threshold, the promise behind it and what it does on the labelled rows.

    ``threshold`` is None, ``reached`` False and ``coverage`` 0 when no threshold meets the target
    (or there are no rows). Otherwise ``precision`` is the share correct among the ``n_selected``
    rows with confidence >= ``threshold``, ``precision_lower`` its one-sided Clopper-Pearson lower
    bound at ``level`` (>= ``target`` under the guaranteed rule), and ``coverage = n_selected / n``.
    ``n`` is every row the choice was made on: the labelled examples standing behind the bound.
    ``rule`` and ``level`` say how it was chosen (``level``: the confidence of the guarantee).
    ``more_labels_estimate`` (only when not reached): a rough count of further rows, of the kind
    given, that would let the target be certified (see the module docstring); None when no region
    of the rows measures above the target (more labels of this model will not help; a better model
    might). A small value means the rows at hand nearly suffice: a region measures well enough, but
    the walk stopped before reaching it.
    """

    target: float
    threshold: float | None
    precision_lower: float | None
    precision: float | None
    coverage: float
    n_selected: int
    n: int
    rule: str
    level: float
    reached: bool
    more_labels_estimate: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready copy (all fields are built-in types)."""
        return asdict(self)


def precision_threshold(
    confidence: Any,
    correct: Any,
    target: float,
    confidence_level: float | None = None,
    *,
    rule: str = "guaranteed",
    min_step: int | None = None,
    start: str = "guided",
) -> ThresholdResult:
    """The auto-labelling threshold for ``target`` precision under ``rule`` (see the module docstring).

    ``confidence`` is float ``(n,)`` (finite, any scale), ``correct`` bool or 0/1 ``(n,)``,
    ``target`` in (0, 1]. ``confidence_level`` in (0, 1) is the probability that the guaranteed
    rule's promise holds (None: :data:`DEFAULT_CONFIDENCE_LEVEL`); under ``rule="point"`` it only
    sets the level of the reported ``precision_lower``. ``min_step`` and ``start`` shape the
    guaranteed rule's walk (:func:`candidate_sequence`). A target of 1.0 can never be certified:
    only the point rule reaches it.
    """
    level = _checked(target, confidence_level, rule, min_step, start)
    thresholds, n_correct, n_selected = _cumulative(confidence, correct)
    n = int(np.asarray(confidence).size)
    lower = precision_lower_bound(n_correct, n_selected, level)
    precision = n_correct / np.maximum(n_selected, 1)
    if rule == "point":
        hits = np.flatnonzero(precision >= target - _EPS)
        best = int(hits[-1]) if hits.size else None  # thresholds decrease along the curve: the lowest
    else:
        best = None
        for j in _walk(np.asarray(confidence, dtype=np.float64), target, level, min_step, start):
            if lower[j] < target - _EPS:
                break  # fixed-sequence testing: the first failure ends the walk, whatever follows
            best = int(j)
    common = {"target": float(target), "n": n, "rule": rule, "level": level}
    if best is None:
        estimate = _more_labels(precision, n_selected, n, target, level) if n_selected.size else None
        return ThresholdResult(threshold=None, precision_lower=None, precision=None, coverage=0.0, n_selected=0,
                               reached=False, more_labels_estimate=estimate, **common)
    return ThresholdResult(
        threshold=float(thresholds[best]),
        precision_lower=float(lower[best]),
        precision=float(precision[best]),
        coverage=float(n_selected[best] / n),
        n_selected=int(n_selected[best]),
        reached=True,
        **common,
    )


def candidate_sequence(
    confidence: Any,
    target: float,
    confidence_level: float | None = None,
    *,
    min_step: int | None = None,
    start: str = "guided",
) -> np.ndarray:
    """The thresholds the guaranteed rule tests, in order (float64, decreasing).

    A function of the confidences alone -- never of which rows are correct -- which is what makes
    the fixed-sequence guarantee hold (see the module docstring). ``min_step`` (>= 1; None: 1 % of
    the rows) thins the walk; ``start`` is ``"guided"`` or ``"top"``.
    """
    level = _checked(target, confidence_level, "guaranteed", min_step, start)
    conf = _validated(confidence, np.zeros(np.shape(confidence), dtype=bool))[0]
    thresholds, _ = _distinct(conf)
    return thresholds[_walk(conf, target, level, min_step, start)]


def precision_coverage_curve(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def precision_lower_bound(n_correct: Any, n_selected: Any, level: float = DEFAULT_CONFIDENCE_LEVEL) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound of a precision ``n_correct / n_selected`` at ``level``.

    The exact binomial bound: the true precision is at least this with probability ``level``.
    0 where nothing is correct (or nothing selected). Counts may be fractional (the labels-needed
    estimate evaluates the bound at a measured precision times a hypothetical row count).
    """
    from scipy.special import betaincinv  # the Beta quantile, without scipy.stats' per-call overhead

    k = np.asarray(n_correct, dtype=np.float64)
    m = np.asarray(n_selected, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = betaincinv(k, m - k + 1.0, 1.0 - level)
    return np.where((k > 0) & (m > 0), np.nan_to_num(bound, nan=0.0), 0.0)


def coverage_at(threshold: float | None, confidence: Any) -> float:
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


# ----------------------------------------------------------------------------- the walk


def _walk(conf: np.ndarray, target: float, level: float, min_step: int | None, start: str) -> np.ndarray:
    """Indices (into the distinct decreasing confidences) of the candidates tested, in order."""
    thresholds, n_selected = _distinct(conf)
    # Fewer rows than this cannot pass even when all are right: skipping them depends on counts only.
    possible = np.flatnonzero(precision_lower_bound(n_selected, n_selected, level) >= target - _EPS)
    if possible.size == 0:
        return possible
    first = int(possible[0])
    if start == "guided":
        first += int(np.argmax(_pass_chance(np.sort(conf)[::-1], n_selected[first:], target, level)))
    step = max(1, round(DEFAULT_STEP_SHARE * conf.size)) if min_step is None else int(min_step)
    walk, last = [first], int(n_selected[first])
    for j in range(first + 1, len(thresholds)):
        if n_selected[j] - last >= step or j == len(thresholds) - 1:
            walk.append(j)
            last = int(n_selected[j])
    return np.asarray(walk, dtype=np.int64)


def _pass_chance(conf_desc: np.ndarray, n_selected: np.ndarray, target: float, level: float) -> np.ndarray:
    """Chance that the top ``n_selected[i]`` rows pass the test, if each is right with its confidence.

    Uses confidences only (clipped to [0, 1]): it guides where the walk starts and never decides a
    test. The number of errors among the top rows is Poisson-binomial; a binomial with the same
    mean approximates it (slightly wider), which is ample for a guide and vectorises.
    """
    from scipy.special import bdtr

    allowed = n_selected - _fewest_correct(n_selected, target, level)  # errors a pass tolerates
    expected_errors = np.cumsum(1.0 - np.clip(conf_desc, 0.0, 1.0))[n_selected - 1]
    return bdtr(allowed, n_selected, np.clip(expected_errors / n_selected, 0.0, 1.0))


def _fewest_correct(n_selected: np.ndarray, target: float, level: float) -> np.ndarray:
    """Per row count ``m``, the fewest correct rows whose Clopper-Pearson bound reaches ``target``.

    ``m + 1`` where none does. The bound reaches the target exactly when seeing that many correct
    rows would be unlikely (<= ``1 - level``) at precision ``target`` -- a binomial tail, cheaper
    than the bound itself. Bisection on the count (the tail shrinks as it grows), vectorised.
    """
    from scipy.special import bdtrc  # bdtrc(k, m, p) = P(Binomial(m, p) > k)

    m = np.asarray(n_selected, dtype=np.int64)
    low, high = np.zeros_like(m), m + 1  # invariant: low fails (0 correct always does), high passes
    while np.any(high - low > 1):
        mid = (low + high) // 2
        passes = bdtrc(mid - 1, m, target) <= 1.0 - level
        high, low = np.where(passes, mid, high), np.where(passes, low, mid)
    return high


def _more_labels(precision: np.ndarray, n_selected: np.ndarray, n: int, target: float, level: float) -> int | None:
    """Rough number of further labelled rows that would certify ``target`` (module docstring); None if none would."""
    above = precision > target + _EPS
    if not above.any():
        return None
    # Per distinct precision only its largest region matters (the same rows needed, the largest share).
    p, first = np.unique(precision[above][::-1], return_index=True)
    share = n_selected[above][::-1][first] / n
    # Rows at which a Clopper-Pearson bound at measured precision p reaches the target: double a
    # row count until it passes, then bisect (the bound is slow to evaluate at huge counts).
    high = np.ones(p.size)
    while True:
        failing = (precision_lower_bound(p * high, high, level) < target) & (high < _MAX_ROWS)
        if not failing.any():
            break
        high = np.where(failing, high * 2.0, high)
    low = np.where(high > 1.0, high / 2.0, 0.0)
    while np.any(high - low > 1.0):
        mid = np.floor((low + high) / 2.0)
        passes = precision_lower_bound(p * mid, mid, level) >= target
        high, low = np.where(passes, mid, high), np.where(passes, low, mid)
    total = np.where(high < _MAX_ROWS, high / share, np.inf)  # a region holds only its share of the rows
    return None if np.isinf(total.min()) else max(1, int(np.ceil(total.min())) - n)


# ----------------------------------------------------------------------------- helpers


def _checked(target: Any, confidence_level: Any, rule: Any, min_step: Any, start: Any) -> float:
    """Validate the common arguments; return the confidence level to use."""
    if isinstance(target, bool) or not isinstance(target, (int, float, np.floating)) or not 0.0 < target <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {target!r}")
    if confidence_level is not None and (isinstance(confidence_level, bool) or not 0.0 < confidence_level < 1.0):
        raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level!r}")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, got {start!r}")
    if min_step is not None and (isinstance(min_step, bool) or not isinstance(min_step, (int, np.integer))
                                 or min_step < 1):
        raise ValueError(f"min_step must be a positive integer, got {min_step!r}")
    return DEFAULT_CONFIDENCE_LEVEL if confidence_level is None else float(confidence_level)


def _distinct(conf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct confidences (decreasing) and how many rows each selects as a threshold."""
    ordered = np.sort(conf)[::-1]
    # Last index of each run of equal confidence: a threshold selects whole ties.
    ends = np.flatnonzero(np.r_[ordered[1:] != ordered[:-1], True]) if ordered.size else np.zeros(0, dtype=np.int64)
    return ordered[ends], (ends + 1).astype(np.int64)


def _cumulative(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct confidences (decreasing), and the correct / selected row counts at each as a threshold."""
    conf, ok = _validated(confidence, correct)
    order = np.argsort(-conf, kind="stable")
    conf, ok = conf[order], ok[order]
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

"""How far to trust a probability: calibration error, reliability curves, and recalibration.

Auto-labelling ("accept every prediction above 0.9") and the difficulty buckets read the
model's probabilities as frequencies. A tf-idf logistic regression on a few hundred rows is
usually over-confident, so this module offers both the measurement and a fix:

* :func:`expected_calibration_error` and :func:`reliability_curve` measure, on held-out rows,
  how far stated confidence is from observed accuracy (the numbers behind a reliability plot).
* :class:`ProbabilityCalibrator` maps a classifier's probabilities to calibrated ones.
  :class:`model.estimators.ChoiceClassifier` fits one at ``fit`` time (``calibration=``) on
  *out-of-fold* probabilities of its training rows (:func:`out_of_fold_proba`): in-sample
  probabilities of a fitted model are over-confident by construction, and the validation split
  must stay untouched so that the calibration error measured on it stays honest.
* :func:`choose_calibration` is the rule deciding whether there are enough labels to do so.

Everything here is arrays in, arrays out: ``proba`` is (N, C) in the column order of the
configured classes; ``y`` is int column indices (single-label) or a 0/1 indicator matrix (N, C)
(multi-label).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, logit, softmax
from sklearn.base import BaseEstimator, clone
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold

#: Accepted values of ``ChoiceClassifier(calibration=...)``.
CALIBRATIONS = ("none", "sigmoid", "isotonic", "temperature", "auto")
#: The methods a :class:`ProbabilityCalibrator` implements.
METHODS = ("sigmoid", "isotonic", "temperature")
#: Folds of the out-of-fold predictions the calibrator is fitted on.
N_FOLDS = 3
#: Fewer labelled rows than this and no calibration is fitted (see :func:`choose_calibration`).
MIN_CALIBRATION_ROWS = 50
#: Rows a class (single-label), or both the positives and the negatives of a label
#: (multi-label), need before it is calibrated: one per fold, so that every fold sees it.
MIN_CLASS_ROWS = N_FOLDS

# Probabilities are clipped to [_EPS, 1 - _EPS] before taking logs / logits: a solver's exact 0
# or 1 would otherwise become an infinite logit. 1e-12 is what scikit-learn uses for the same.
_EPS = 1e-12
# Range searched for the temperature T: far beyond what a sane model needs in either direction.
_LOG_T_BOUNDS = (float(np.log(1e-2)), float(np.log(1e2)))
# Probabilities from a solver can overshoot [0, 1] by rounding; anything beyond this is a bug.
_TOLERANCE = 1e-6


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin statistics of a reliability diagram over equal-width confidence bins.

    Bin ``b`` holds the confidences in ``(edges[b], edges[b + 1]]`` (the first bin also holds
    0), the binning of :func:`sklearn.calibration.calibration_curve`. Empty bins have
    ``count`` 0 and NaN ``confidence`` / ``accuracy``, so all arrays have ``n_bins`` entries
    and a bar plot needs no bookkeeping.

    * ``confidence``: mean stated confidence in the bin (top-label probability, or for
      multi-label the label probability ``p``);
    * ``accuracy``: observed frequency in the bin (share correct, or for multi-label the share
      of positive labels) -- on a calibrated model the two agree.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray

    @property
    def n(self) -> int:
        """Number of (row, or row x label) predictions binned."""
        return int(self.count.sum())

    def ece(self) -> float | None:
        """Count-weighted mean ``|accuracy - confidence|`` over the bins; None when empty."""
        if self.n == 0:
            return None
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.count[filled] * gaps) / self.n)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"edges": [float], "confidence": [float | None], "accuracy": [float | None],
        "count": [int]}`` (None where a bin is empty)."""

        def floats(values: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else float(v) for v in values]

        return {
            "edges": [float(e) for e in self.edges],
            "confidence": floats(self.confidence),
            "accuracy": floats(self.accuracy),
            "count": [int(c) for c in self.count],
        }


def reliability_curve(
    proba: np.ndarray, y_true: np.ndarray, n_bins: int = 15, multi_label: bool = False
) -> ReliabilityCurve:
    """Bin held-out predictions by confidence for a reliability plot.

    Single-label: one point per row, its top-label probability against whether the argmax was
    right. Multi-label: one point per (row, label), the label's probability against whether
    the label is set -- all labels pooled into one curve, since a plot per label is unreadable
    with many labels and too sparse with few rows. (:func:`expected_calibration_error` instead
    averages per-label errors, so that frequent labels do not hide badly calibrated rare ones.)
    """
    p, y = _validated(proba, y_true, multi_label)
    _check_bins(n_bins)
    if multi_label:
        return _binned(p.ravel(), y.ravel().astype(np.float64), n_bins)
    confidence, hit = _top_label(p, y)
    return _binned(confidence, hit, n_bins)


def expected_calibration_error(
    proba: np.ndarray, y_true: np.ndarray, n_bins: int = 15, multi_label: bool = False
) -> float | None:
    """Expected calibration error over ``n_bins`` equal-width bins; None for empty input.

    * single-label: the top-label ECE of Guo et al. (2017): rows binned by their highest
      probability, ``sum_b n_b / N * |accuracy_b - confidence_b|``. This is the error that
      matters for auto-labelling, which acts on the top label only.
    * multi-label: the classwise ECE -- the binary ECE of every label column (its probability
      against the 0/1 truth), averaged over the labels. Each label is its own yes/no decision,
      and averaging per label keeps a rare, badly calibrated label visible.

    Equal-width bins make values comparable across iterations and projects; with few rows the
    estimate is noisy and biased upwards (every bin's gap is at least its sampling noise).
    """
    p, y = _validated(proba, y_true, multi_label)
    _check_bins(n_bins)
    if p.shape[0] == 0 or p.shape[1] == 0:
        return None
    if multi_label:
        errors = [_binned(p[:, j], y[:, j].astype(np.float64), n_bins).ece() for j in range(p.shape[1])]
        return float(np.mean(errors))
    return _binned(*_top_label(p, y), n_bins).ece()


def _top_label(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def _binned(confidence: np.ndarray, outcome: np.ndarray, n_bins: int) -> ReliabilityCurve:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Same assignment as sklearn.calibration.calibration_curve(strategy="uniform"): right-closed bins.
    ids = np.searchsorted(edges[1:-1], np.clip(confidence, 0.0, 1.0))
    count = np.bincount(ids, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(ids, weights=confidence, minlength=n_bins) / count
        mean_outcome = np.bincount(ids, weights=outcome, minlength=n_bins) / count
    return ReliabilityCurve(edges=edges, confidence=mean_confidence, accuracy=mean_outcome, count=count)


def _check_bins(n_bins: Any) -> None:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")


def _validated(proba: Any, y_true: Any, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """float64 (N, C) probabilities in [0, 1] and int64 targets (N,) or (N, C), checked."""
    p = _check_proba(proba)
    y = np.asarray(y_true)
    if y.size == 0:
        y = y.astype(np.int64)
    if y.dtype.kind not in "biu":
        raise ValueError(f"y_true must hold integers (or booleans), got dtype {y.dtype}")
    y = y.astype(np.int64)
    if multi_label:
        if y.shape != p.shape:
            raise ValueError(f"multi-label y_true must be an indicator matrix of shape {p.shape}, got {y.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("multi-label y_true must hold only 0 and 1")
    else:
        if y.shape != (p.shape[0],):
            raise ValueError(f"y_true must be class indices of shape ({p.shape[0]},), got {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
            raise ValueError(f"y_true class indices must be in [0, {p.shape[1]})")
    return p, y


def _check_proba(proba: Any) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"expected probabilities of shape (n, n_classes), got {p.shape}")
    if p.size and (not np.all(np.isfinite(p)) or p.min() < -_TOLERANCE or p.max() > 1.0 + _TOLERANCE):
        raise ValueError("probabilities must be finite and within [0, 1]")
    return np.clip(p, 0.0, 1.0)


# --------------------------------------------------------------------------- the rule


def choose_calibration(requested: str, y: np.ndarray, multi_label: bool) -> tuple[str, str]:
    """Return ``(method, reason)``: the calibration to fit on training targets ``y``, and why.

    ``method`` is ``"none"`` or one of :data:`METHODS`. The rule, for explicit methods and
    ``"auto"`` alike:

    * fewer than :data:`MIN_CALIBRATION_ROWS` (50) rows: none. The calibrator is fitted on
      out-of-fold predictions of 2/3-size models; on fewer rows it would learn noise, and the
      three extra fits would slow the first, most frequent, training rounds for nothing.
    * single-label: at least two classes labelled, each with at least :data:`MIN_CLASS_ROWS`
      (3) rows -- one per fold, so that every fold's model knows every class (a fold model
      blind to a class would give it probability 0 and teach the calibrator that it never
      happens). One rare class therefore blocks calibration until it has 3 examples.
    * multi-label: at least one label with 3 positive and 3 negative rows; only such labels
      are calibrated, the others keep their probabilities.

    ``"auto"`` then picks ``"temperature"`` for single-label -- one parameter, the least data
    hungry, and it keeps the argmax, so accuracy and the confusion matrix do not move -- and
    ``"sigmoid"`` (one Platt scaling per label) for multi-label, where labels are independent
    and a shared temperature cannot fix a label whose bias differs from the others'.
    """
    if requested not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {requested!r}")
    if requested == "none":
        return "none", "not requested"
    method = requested if requested != "auto" else ("sigmoid" if multi_label else "temperature")
    y = np.asarray(y)
    n = len(y)
    if n < MIN_CALIBRATION_ROWS:
        return "none", f"too few labelled rows to calibrate: {n} < {MIN_CALIBRATION_ROWS}"
    if multi_label:
        if not _calibratable_labels(y).any():
            return "none", f"no label has {MIN_CLASS_ROWS} positive and {MIN_CLASS_ROWS} negative rows yet"
    else:
        counts = np.bincount(y)
        counts = counts[counts > 0]
        if len(counts) < 2:
            return "none", "only one class labelled: nothing to calibrate"
        if counts.min() < MIN_CLASS_ROWS:
            return "none", (
                f"a labelled class has only {counts.min()} row(s); every class needs {MIN_CLASS_ROWS} "
                f"(one per cross-validation fold)"
            )
    if requested == "auto":
        kind = "multi-label" if multi_label else "single-label"
        return method, f"auto: {method} for {kind} with {n} labelled rows"
    return method, "requested"


def _calibratable_labels(y: np.ndarray) -> np.ndarray:
    positives = y.sum(axis=0)
    return (positives >= MIN_CLASS_ROWS) & (len(y) - positives >= MIN_CLASS_ROWS)


def out_of_fold_proba(
    estimator: Any,
    X: Sequence[Any],
    y: Sequence[Any],
    targets: np.ndarray,
    multi_label: bool,
    n_splits: int = N_FOLDS,
    random_state: int | None = 0,
) -> np.ndarray:
    """Predict every row of X with a clone of ``estimator`` fitted on the other folds.

    ``y`` is what the estimator's ``fit`` takes; ``targets`` its encoding (class indices or
    indicator matrix), used to stratify single-label folds. Multi-label folds are plain
    shuffled folds (there is no stratum per row when rows have several labels). X is indexed
    as a list, so images of different sizes work.

    Hand-rolled rather than :func:`sklearn.model_selection.cross_val_predict`, which reorders
    ``predict_proba`` columns by the labels present in y and so cannot return the columns of
    configured-but-unlabelled classes, and does not take multi-label rows of names.
    """
    targets = np.asarray(targets)
    if multi_label:
        splitter: Any = KFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    else:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    out: np.ndarray | None = None
    for train, test in splitter.split(np.zeros((len(targets), 1)), None if multi_label else targets):
        fold = clone(estimator).fit([X[i] for i in train], [y[i] for i in train])
        proba = fold.predict_proba([X[i] for i in test])
        if out is None:
            out = np.zeros((len(targets), proba.shape[1]), dtype=np.float64)
        out[test] = proba
    assert out is not None  # n_splits >= 2 folds always ran
    return out


# --------------------------------------------------------------------------- calibrator


class ProbabilityCalibrator(BaseEstimator):
    """A fitted map from a classifier's probabilities to calibrated ones.

    Fit it on probabilities the classifier gave rows it was *not* trained on (see
    :func:`out_of_fold_proba`), then :meth:`transform` any later output of the same classifier.

    Methods
    -------
    ``"temperature"``
        Single-label: ``softmax(log p / T)`` with one scalar T minimising the log-loss. Dividing
        all logits by the same T > 0 keeps their order, so the argmax (and accuracy) never
        changes; only the confidence does. Multi-label: the same with one shared T on every
        calibrated label's logit, which keeps every label's side of 0.5.
    ``"sigmoid"``
        Platt scaling per column: a one-feature logistic regression on ``logit(p)`` (it reduces
        to a temperature plus a bias per label). Single-label columns are then renormalised.
    ``"isotonic"``
        Per column a non-decreasing step function (:class:`sklearn.isotonic.IsotonicRegression`).
        The most flexible and the most data-hungry; it produces ties and exact 0 / 1.

    Single-label sigmoid/isotonic follow scikit-learn's one-vs-rest scheme: with two classes
    one column is calibrated and the other is its complement, with more each column is
    calibrated and rows are renormalised (uniform if every column maps to 0). Renormalising
    can move the argmax, so unlike temperature these may change accuracy slightly.

    Only columns of classes that occur in the training targets (single-label) or labels with
    :data:`MIN_CLASS_ROWS` positives and negatives (multi-label) are calibrated; the others
    pass through unchanged -- a configured-but-unlabelled class keeps its probability 0.

    Why not :class:`sklearn.calibration.CalibratedClassifierCV`: it wraps and refits the
    classifier itself, so it would lose configured-but-unlabelled class columns, cannot take
    multi-label targets, and its ``"temperature"`` method needs scikit-learn >= 1.8 (this
    project supports 1.4) and would give the zero columns of unlabelled classes mass. The
    building blocks (logistic regression, isotonic regression) are scikit-learn's.

    Attributes (after fit)
    ----------------------
    n_classes_: number of probability columns.
    columns_: int64 indices of the calibrated columns.
    temperature_: "temperature" -- the fitted T (> 1 softens over-confident probabilities).
    models_: "sigmoid" / "isotonic" -- per entry of ``columns_`` a fitted LogisticRegression /
        IsotonicRegression, or None for the column a binary single-label problem derives as a
        complement.
    """

    def __init__(self, method: str = "temperature", multi_label: bool = False):
        self.method = method
        self.multi_label = multi_label

    def fit(self, proba: np.ndarray, y: np.ndarray) -> ProbabilityCalibrator:
        """Fit on held-out ``proba`` (N, C) and targets ``y`` (class indices, or 0/1 (N, C))."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        p, y = _validated(proba, y, self.multi_label)
        if p.shape[0] == 0:
            raise ValueError("cannot fit a calibrator on zero rows")
        self.n_classes_ = p.shape[1]
        if self.multi_label:
            self.columns_ = np.flatnonzero(_calibratable_labels(y)).astype(np.int64)
            truth = y[:, self.columns_]
        else:
            self.columns_ = np.flatnonzero(np.bincount(y, minlength=p.shape[1]) > 0).astype(np.int64)
            truth = (y[:, np.newaxis] == self.columns_).astype(np.int64)
        if len(self.columns_) == 0 or (not self.multi_label and len(self.columns_) < 2):
            raise ValueError("nothing to calibrate: no column with both positive and negative rows")
        scores = p[:, self.columns_]

        self.temperature_ = None
        self.models_ = None
        if self.method == "temperature":
            self.temperature_ = _fit_temperature(scores, truth, self.multi_label)
            return self
        models: list[Any] = []
        for j in range(scores.shape[1]):
            if not self.multi_label and len(self.columns_) == 2 and j == 0:
                models.append(None)  # binary: column 0 is derived as 1 - column 1
                continue
            models.append(_fit_column(self.method, scores[:, j], truth[:, j]))
        self.models_ = models
        return self

    def transform(self, proba: np.ndarray) -> np.ndarray:
        """Return calibrated float64 probabilities, same shape and contract as ``proba``."""
        p = _check_proba(proba)
        if p.shape[1] != self.n_classes_:
            raise ValueError(f"expected probabilities of shape (n, {self.n_classes_}), got {p.shape}")
        out = p.copy()
        if p.shape[0] == 0:
            return out
        scores = p[:, self.columns_]
        if self.method == "temperature":
            t = self.temperature_
            if self.multi_label:
                calibrated = expit(logit(np.clip(scores, _EPS, 1.0 - _EPS)) / t)
            else:
                calibrated = softmax(np.log(np.clip(scores, _EPS, 1.0)) / t, axis=1)
        else:
            calibrated = np.column_stack(
                [
                    np.zeros(len(p)) if model is None else _predict_column(model, scores[:, j])
                    for j, model in enumerate(self.models_)
                ]
            )
            if not self.multi_label:
                calibrated = _renormalised(calibrated)
        out[:, self.columns_] = calibrated
        return out


def _fit_temperature(scores: np.ndarray, truth: np.ndarray, multi_label: bool) -> float:
    """The T > 0 minimising the mean log-loss of the temperature-scaled ``scores``.

    Single-label: ``truth`` is one-hot over the columns; multi-label: independent 0/1 labels.
    A bounded 1-D search over log T (as scikit-learn's own temperature scaling does).
    """
    if multi_label:
        z = logit(np.clip(scores, _EPS, 1.0 - _EPS))
        sign = np.where(truth == 1, -1.0, 1.0)

        def loss(log_t: float) -> float:
            # binary cross-entropy of sigmoid(z / T): log(1 + exp(-z/T)) if y = 1 else log(1 + exp(z/T))
            return float(np.mean(np.logaddexp(0.0, sign * z / np.exp(log_t))))

    else:
        log_p = np.log(np.clip(scores, _EPS, 1.0))
        target = truth.argmax(axis=1)
        rows = np.arange(len(target))

        def loss(log_t: float) -> float:
            return float(-np.mean(log_softmax(log_p / np.exp(log_t), axis=1)[rows, target]))

    result = minimize_scalar(loss, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


def _fit_column(method: str, score: np.ndarray, truth: np.ndarray) -> Any:
    if method == "isotonic":
        return IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(score, truth)
    # Platt scaling on the logit. The default L2 penalty (C=1) keeps the slope finite when the
    # out-of-fold scores separate the classes perfectly, where an unpenalised fit diverges.
    return LogisticRegression(C=1.0).fit(_logit_feature(score), truth)


def _predict_column(model: Any, score: np.ndarray) -> np.ndarray:
    if isinstance(model, IsotonicRegression):
        return np.clip(model.predict(score), 0.0, 1.0)
    return model.predict_proba(_logit_feature(score))[:, 1]


def _logit_feature(score: np.ndarray) -> np.ndarray:
    return logit(np.clip(score, _EPS, 1.0 - _EPS)).reshape(-1, 1)


def _renormalised(calibrated: np.ndarray) -> np.ndarray:
    """Rows summing to 1: a binary pair as (1 - p, p), otherwise divided by the row sum."""
    if calibrated.shape[1] == 2:
        calibrated[:, 0] = 1.0 - calibrated[:, 1]
        return calibrated
    total = calibrated.sum(axis=1, keepdims=True)
    uniform = np.full_like(calibrated, 1.0 / calibrated.shape[1])
    return np.divide(calibrated, total, out=uniform, where=total > 0)


#: A shown confidence may be softened, never sharpened: fitted on a round's few validation rows, a
#: sharpening temperature would be noise that makes annotators trust the model more.
SHOWN_T_BOUNDS = (0.0, float(np.log(20.0)))
#: Below this many held-out rows nothing is fitted (the temperature stays 1).
MIN_SHOWN_ROWS = 4


def shown_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The softening temperature T in [1, 20] for what annotators read as a choice's confidence.

    Fitted by log-loss on held-out rows (a round's validation split, scored by the model that never trained
    on them), single-label only. Why: a Monte-Carlo-dropout MLP trained on 32 texts says 0.9 and more for
    tasks it gets right 71-81 % of the time (benchmarks/shown_confidence.py); the validation rows are free,
    and one parameter is what a handful of them can fit. Only what is shown changes: ordering, labels and
    the auto-labelling threshold (certified on these same rows) use the model's own probabilities.
    """
    p, target = _validated(proba, y, False)
    if len(target) < MIN_SHOWN_ROWS or p.shape[1] < 2:
        return 1.0
    log_p = np.log(np.clip(p, _EPS, 1.0))
    rows = np.arange(len(target))

    def loss(log_t: float) -> float:
        return float(-np.mean(log_softmax(log_p / np.exp(log_t), axis=1)[rows, target]))

    result = minimize_scalar(loss, bounds=SHOWN_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))


def shown_confidence(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Each row's top-class probability after softening by ``temperature`` (see :func:`shown_temperature`)."""
    p = np.asarray(proba, dtype=np.float64)
    if p.size == 0 or temperature == 1.0:
        return p.max(axis=1) if p.size else np.zeros(len(p))
    return softmax(np.log(np.clip(p, _EPS, 1.0)) / temperature, axis=1).max(axis=1)

"""Image-level acquisition functions for detection: box-level doubts -> one uncertainty per image.

The contract is :mod:`model.uncertainty`'s: float64 ``(n,)`` in [0, 1], 0 = the model is sure, so
the queue, the difficulty buckets and Label Studio's ``score`` work unchanged. The names
``entropy``, ``margin``, ``least_confidence`` and ``random`` are the classification strategies'
names, so a project's ``strategy`` setting carries over when its task type is boxes.

How box doubts become an image's doubt
--------------------------------------
A detector emits many weak candidates (score 0.05-0.2) that are almost surely background; their
class confusion says nothing about the image. Every box therefore contributes its uncertainty
``u_i`` *weighted by its score* ``s_i`` (the chance it is a real object), and ``aggregate`` says
how contributions combine:

* ``max``: ``max_i s_i u_i`` -- the most doubtful probable object decides;
* ``mean``: ``sum s_i u_i / sum s_i`` -- the typical doubt among the image's probable objects;
* ``sum``: ``1 - exp(-sum s_i u_i)`` -- total doubt, squashed into [0, 1]: images with many
  doubtful objects first (they also yield the most labelled boxes per image reviewed).

What the boxes do not show, the *missed* term adds (``include_missed=True``, the default):
candidates scoring in a band just below a useful detection (:data:`MISSED_BAND`, 0.1-0.4) are
objects the detector half-sees. Their score mass ``m`` gives ``1 - exp(-m / 0.25)`` (one candidate
at 0.25: 0.63), combined with the box term as a noisy-or ``1 - (1 - u_box)(1 - u_missed)``. An image
with no candidate at all scores ``empty`` (default 0.1): a detector that sees nothing is usually
right, but not always. An image whose only boxes are confident therefore scores near 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from model.detection.boxes import Detections, iou_matrix

AGGREGATES = ("max", "mean", "sum")
#: Scores of "half-seen" candidates: objects the detector probably missed (see the module docstring).
MISSED_BAND = (0.1, 0.4)
#: Score mass that makes the missed term 1 - 1/e.
MISSED_SCALE = 0.25
#: Score from which a box is an accepted detection (auto-labelling, image-level ``decision``).
DECISION_THRESHOLD = 0.5


class DetectionStrategy:
    """Base class: validation and clipping; subclasses implement :meth:`score`.

    ``sampled = True`` means :meth:`__call__` needs ``samples`` (per image, T MC-dropout
    :class:`Detections` from ``BoxDetector.predict_samples``).
    """

    name: ClassVar[str] = ""
    sampled: ClassVar[bool] = False

    def __call__(
        self, detections: Sequence[Detections], samples: Sequence[Sequence[Detections]] | None = None
    ) -> np.ndarray:
        """Per-image uncertainty in [0, 1], float64 (n,)."""
        if self.sampled:
            if samples is None:
                raise ValueError(f"strategy {self.name!r} needs MC samples (predict_samples)")
            if len(samples) != len(detections):
                raise ValueError(f"{len(detections)} images but samples for {len(samples)}")
        out = np.asarray(self.score(detections, samples), dtype=np.float64).reshape(len(detections))
        if out.size and not np.all(np.isfinite(out)):
            raise ValueError(f"strategy {self.name!r} produced non-finite uncertainties")
        return np.clip(out, 0.0, 1.0)

    def score(self, detections: Sequence[Detections], samples: Sequence[Sequence[Detections]] | None) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class _BoxStrategy(DetectionStrategy):
    """Score-weighted box uncertainties, aggregated, plus the missed term (see the module docstring)."""

    def __init__(self, aggregate: str = "max", include_missed: bool = True, empty: float = 0.1):
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if not 0.0 <= empty <= 1.0:
            raise ValueError(f"empty must be in [0, 1], got {empty!r}")
        self.aggregate = aggregate
        self.include_missed = include_missed
        self.empty = float(empty)

    def box_uncertainty(self, d: Detections) -> np.ndarray:
        """Per-box uncertainty in [0, 1] of one image's boxes."""
        raise NotImplementedError

    #: Factor on the ``max`` / ``sum`` of the contributions ``s_i u_i`` (see :func:`aggregate`).
    gain: ClassVar[float] = 1.0

    def score(self, detections: Sequence[Detections], samples: Sequence[Sequence[Detections]] | None) -> np.ndarray:
        out = np.zeros(len(detections))
        for i, d in enumerate(detections):
            if len(d) == 0:
                out[i] = self.empty
                continue
            boxes = aggregate(self.box_uncertainty(d), d.scores, self.aggregate, self.gain)
            missed = missed_objects(d) if self.include_missed else 0.0
            out[i] = 1.0 - (1.0 - boxes) * (1.0 - missed)
        return out


def aggregate(uncertainty: np.ndarray, weight: np.ndarray, how: str, gain: float = 1.0) -> float:
    """Combine per-box ``uncertainty`` weighted by ``weight`` (both in [0, 1]) into one value in [0, 1].

    ``max``: ``min(1, gain * max_i w_i u_i)``; ``mean``: ``sum w_i u_i / sum w_i``; ``sum``:
    ``1 - exp(-gain * sum w_i u_i)``. No boxes: 0.
    """
    u = np.clip(np.asarray(uncertainty, dtype=np.float64), 0.0, 1.0)
    w = np.clip(np.asarray(weight, dtype=np.float64), 0.0, 1.0)
    if u.size == 0:
        return 0.0
    if how == "max":
        return float(min(1.0, gain * (u * w).max()))
    if how == "mean":
        total = w.sum()
        return float((u * w).sum() / total) if total > 0 else 0.0
    if how == "sum":
        return float(1.0 - math.exp(-gain * (u * w).sum()))
    raise ValueError(f"aggregate must be one of {AGGREGATES}, got {how!r}")


def missed_objects(d: Detections, band: tuple[float, float] = MISSED_BAND, scale: float = MISSED_SCALE) -> float:
    """``1 - exp(-m / scale)`` with ``m`` the score mass of the candidates scoring within ``band``."""
    s = d.scores
    mass = float(s[(s >= band[0]) & (s < band[1])].sum())
    return 1.0 - math.exp(-mass / scale)


def _class_probs(d: Detections) -> np.ndarray:
    if d.class_probs is None:
        raise ValueError("class uncertainty needs predicted boxes with class_probs (not ground truth)")
    return np.clip(d.class_probs, 0.0, 1.0)


class BoxEntropy(_BoxStrategy):
    """Entropy of each box's class distribution over ``log C`` (0 for one class)."""

    name = "entropy"

    def box_uncertainty(self, d: Detections) -> np.ndarray:
        p = _class_probs(d)
        if p.shape[1] <= 1:
            return np.zeros(len(d))
        plogp = p * np.log(np.where(p > 0.0, p, 1.0))
        return -plogp.sum(axis=1) / math.log(p.shape[1])


class BoxMargin(_BoxStrategy):
    """``1 - (p_top1 - p_top2)`` of each box's class distribution (0 for one class)."""

    name = "margin"

    def box_uncertainty(self, d: Detections) -> np.ndarray:
        p = _class_probs(d)
        if p.shape[1] <= 1:
            return np.zeros(len(d))
        top2 = np.partition(p, -2, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])


class BoxLeastConfidence(_BoxStrategy):
    """``1 - score`` per box; weighted by the score as every box term is, that is ``s (1 - s)``.

    Objects the detector is sure of (s near 1) and clutter it is sure of (s near 0) both score 0;
    a box at s = 0.5 -- "is this an object at all?" -- doubts most. ``s (1 - s)`` peaks at 0.25,
    so ``max`` and ``sum`` use 4x the products (a box at 0.5 alone: 1 with ``max``); ``mean`` is
    the score-weighted mean of ``1 - s``, in [0, 1] as it is.
    """

    name = "least_confidence"
    gain = 4.0

    def box_uncertainty(self, d: Detections) -> np.ndarray:
        return 1.0 - d.scores


class MissedObjects(DetectionStrategy):
    """The missed term alone: score mass of candidates within ``band`` (see the module docstring)."""

    name = "missed"

    def __init__(self, band: tuple[float, float] = MISSED_BAND, scale: float = MISSED_SCALE, empty: float = 0.1):
        if not 0.0 <= band[0] < band[1] <= 1.0 or scale <= 0:
            raise ValueError(f"need 0 <= band[0] < band[1] <= 1 and scale > 0, got {band!r} and {scale!r}")
        self.band = (float(band[0]), float(band[1]))
        self.scale = float(scale)
        self.empty = float(empty)

    def score(self, detections: Sequence[Detections], samples: Sequence[Sequence[Detections]] | None) -> np.ndarray:
        return np.asarray([missed_objects(d, self.band, self.scale) if len(d) else self.empty for d in detections])


class Localization(DetectionStrategy):
    """MC-dropout instability of the boxes: where would the detector draw them, pass after pass?

    Reference boxes are the deterministic detections with score >= ``min_score``. For each, its
    instability is ``1 - mean_t IoU_t`` with ``IoU_t`` the best overlap with a box of pass ``t``
    (any class; 0 when the pass has none), and these are aggregated with ``aggregate``, weighted by
    score. Count disagreement -- passes that see more or fewer boxes than the reference -- is the
    mean over passes of ``|n_t - n_ref| / max(n_t, n_ref)`` (0 when both are 0). The image's
    uncertainty is the noisy-or of the two. An image where no pass and no reference has a box
    scores 0: every pass agrees there is nothing.
    """

    name = "localization"
    sampled = True

    def __init__(self, aggregate: str = "max", min_score: float = 0.3):
        if aggregate not in AGGREGATES:
            raise ValueError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        self.aggregate = aggregate
        self.min_score = float(min_score)

    def score(self, detections: Sequence[Detections], samples: Sequence[Sequence[Detections]] | None) -> np.ndarray:
        assert samples is not None
        return np.asarray([self._image(d, passes) for d, passes in zip(detections, samples, strict=True)])

    def _image(self, reference: Detections, passes: Sequence[Detections]) -> float:
        if len(passes) == 0:
            raise ValueError("localization needs at least one MC pass per image")
        ref = reference.above(self.min_score)
        seen = [p.above(self.min_score) for p in passes]
        counts = np.asarray([len(p) for p in seen], dtype=np.float64)
        denominator = np.maximum(counts, len(ref))
        count_term = float(np.mean(np.where(denominator > 0, np.abs(counts - len(ref)) / np.maximum(denominator, 1),
                                            0.0)))
        if len(ref) == 0:
            return count_term
        best = np.zeros((len(seen), len(ref)))
        for t, p in enumerate(seen):
            if len(p):
                best[t] = iou_matrix(ref.boxes, p.boxes).max(axis=1)
        box_term = aggregate(1.0 - best.mean(axis=0), ref.scores, self.aggregate)
        return 1.0 - (1.0 - box_term) * (1.0 - count_term)


class RandomStrategy(DetectionStrategy):
    """Uniform random uncertainties: the control arm, and a cold start without a model.

    ``random_state`` seeds the draws (None: fresh entropy); every call draws anew.
    """

    name = "random"

    def __init__(self, random_state: int | None = None):
        self.random_state = random_state
        self._rng = np.random.default_rng(random_state)

    def score(self, detections: Sequence[Detections], samples: Sequence[Sequence[Detections]] | None) -> np.ndarray:
        return self._rng.random(len(detections))


DETECTION_STRATEGIES: dict[str, type[DetectionStrategy]] = {
    cls.name: cls for cls in (BoxEntropy, BoxMargin, BoxLeastConfidence, Localization, MissedObjects, RandomStrategy)
}
#: Other names accepted by :func:`get_detection_strategy`.
ALIASES = {"mc_dropout": "localization"}
DEFAULT_DETECTION_STRATEGY = "entropy"


def get_detection_strategy(name: str = DEFAULT_DETECTION_STRATEGY, **params: Any) -> DetectionStrategy:
    """A new instance of the strategy registered under ``name`` (or an alias), with ``params``."""
    key = ALIASES.get(name, name)
    if key not in DETECTION_STRATEGIES:
        valid = sorted([*DETECTION_STRATEGIES, *ALIASES])
        raise ValueError(f"unknown detection strategy {name!r}; valid names: {', '.join(valid)}")
    try:
        return DETECTION_STRATEGIES[key](**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for detection strategy {name!r}: {exc}") from None


@dataclass(frozen=True)
class DetectionScores:
    """What one pass of a detector over images says, per image (arrays in input order).

    ``uncertainty``: the strategy's score (0 = sure); ``confidence = 1 - uncertainty`` (what Label
    Studio sorts by); ``decision``: the image-level confidence that *every* box decision at
    :data:`DECISION_THRESHOLD` is right -- ``min_i max(s_i, 1 - s_i)`` over the image's candidates
    (an accepted box must be an object, a rejected candidate must not be), 1.0 for an image without
    candidates. It is what auto-labelling thresholds, as ``decision_confidence`` is for choices.
    ``features``: pooled backbone features when asked for (diversity queues).
    """

    detections: list[Detections]
    uncertainty: np.ndarray
    confidence: np.ndarray
    decision: np.ndarray
    features: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.detections)


def decision_confidence(detections: Sequence[Detections]) -> np.ndarray:
    """Per image ``min_i max(s_i, 1 - s_i)`` over its boxes (1.0 without boxes); see :class:`DetectionScores`."""
    return np.asarray([float(np.maximum(d.scores, 1.0 - d.scores).min()) if len(d) else 1.0 for d in detections],
                      dtype=np.float64)


def score_images(
    estimator: Any, strategy: DetectionStrategy | str, X: Sequence[Any], *, with_features: bool = False
) -> DetectionScores:
    """Run ``estimator`` (a fitted ``BoxDetector``) once over ``X`` and score every image.

    A sampled strategy gets MC samples from the same pass (``predict_all``) when the estimator has
    it, else from ``predict_samples``. ``strategy`` may be a registered name or alias.
    """
    if isinstance(strategy, str):
        strategy = get_detection_strategy(strategy)
    n_samples = int(getattr(estimator, "mc_samples", 8)) if strategy.sampled else 0
    if hasattr(estimator, "predict_all"):
        output = estimator.predict_all(X, n_samples=n_samples, with_features=with_features)
        detections, samples, features = output.detections, output.samples, output.features
    else:
        detections = estimator.predict(X)
        samples = estimator.predict_samples(X) if strategy.sampled else None
        features = np.asarray(estimator.transform(X), dtype=np.float64) if with_features else None
    uncertainty = strategy(detections, samples)
    return DetectionScores(
        detections=list(detections),
        uncertainty=uncertainty,
        confidence=np.clip(1.0 - uncertainty, 0.0, 1.0),
        decision=decision_confidence(detections),
        features=features,
    )

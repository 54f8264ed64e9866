"""Active vs random on the team's own data: the control-stream comparison kernel.

A project may reserve a share of its queue for a *control stream*: tasks placed at uniformly random
positions, so the labels they get are a random sample of the pool, while every other label was picked
by the active-learning strategy. With both kinds of label in hand, each round can answer the question a
team actually asks ("does active learning pay off on *our* data?") instead of pointing at a benchmark:

* the **gap**: a model fitted on the first ``n`` active labels against a *shadow* model fitted on the
  first ``n`` control labels (equal label counts, same estimator), both judged on the same validation
  items; a paired bootstrap over those items gives its 95 % interval;
* the **labelling efficiency**: how many random labels reach the active model's accuracy, read off a
  curve of shadow models fitted on nested prefixes of the control labels (linear interpolation). When
  no prefix reaches it the answer is only a lower bound (more than all the control labels there are),
  and it is reported as such rather than extrapolated.

The interval covers the validation sample's noise given the fitted models (the question "would another
validation set say the same?"), not the spread over other possible label orders or training seeds.

Arrays in, numbers out: the caller passes an estimator factory, the training inputs and targets, the
control and active label indices in the order the labels were given, and a ``judge`` that says which
validation items a fitted estimator gets right. Nothing here knows Label Studio or SQL.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

#: Fewest control (and active) labels a comparison is made with: below this the interval says nothing.
MIN_LABELS = 10
#: Shadow models on the random curve (nested prefixes of the control labels, the largest = all of them).
CURVE_POINTS = 4
N_BOOTSTRAP = 1000
#: Bootstrap resamples scored per matrix product (bounds memory for large validation splits).
BOOT_CHUNK = 100

Bound = Literal["=", ">", "<="]


class NotComparable(ValueError):
    """Why this round makes no comparison (too few control labels, one class only, ...): recorded as is."""


@dataclass(frozen=True)
class StreamComparison:
    """The round's verdict: active vs random at ``n`` labels each, and random labels needed to match."""

    n: int
    n_control: int
    n_active_total: int
    n_validation: int
    accuracy_active: float
    accuracy_random: float
    gap: float
    gap_low: float
    gap_high: float
    random_curve: list[tuple[int, float]]
    needed: float
    needed_low: float
    needed_high: float
    #: "=" interpolated; ">" the random curve never reached the active accuracy (needed = its last size);
    #: "<=" its first, smallest prefix already did.
    bound: Bound
    #: True when more than 2.5 % of the resamples never reached it: the interval's top is open ("> n_control").
    needed_high_open: bool
    seconds: float = 0.0
    fit_failures: list[str] = field(default_factory=list)

    @property
    def labels_ratio(self) -> float:
        """Random labels needed per active label: 2.0 means random labelling needs twice the labels."""
        return self.needed / self.n

    def as_json(self) -> dict[str, Any]:
        """The history row's ``metrics["control"]`` (rounded: it is read by people and plotted)."""
        return {
            "n": self.n, "n_control": self.n_control, "n_active_total": self.n_active_total,
            "n_validation": self.n_validation,
            "accuracy_active_at_n": round(self.accuracy_active, 6),
            "accuracy_random_at_n": round(self.accuracy_random, 6),
            "gap": round(self.gap, 6), "gap_low": round(self.gap_low, 6), "gap_high": round(self.gap_high, 6),
            "random_curve": [[n, round(a, 6)] for n, a in self.random_curve],
            "random_labels_needed": round(self.needed, 2),
            "needed_low": round(self.needed_low, 2), "needed_high": round(self.needed_high, 2),
            "needed_high_open": self.needed_high_open,
            "lower_bound": self.bound == ">", "upper_bound": self.bound == "<=",
            "labels_ratio": round(self.labels_ratio, 4),
            "seconds": round(self.seconds, 4),
            **({"fit_failures": self.fit_failures} if self.fit_failures else {}),
        }


def curve_sizes(n_control: int, n: int, points: int = CURVE_POINTS) -> list[int]:
    """Prefix sizes of the random curve: ``points`` evenly spread up to ``n_control``, always with ``n``.

    Nested prefixes (not independent subsets) so the curve reads as "the same random labels, fewer of
    them", as if the team had stopped earlier.
    """
    step = n_control / max(1, points)
    sizes = {max(2, math.ceil(step * k)) for k in range(1, points + 1)} | {n, n_control}
    return sorted(s for s in sizes if 2 <= s <= n_control)


def labels_needed(sizes: Sequence[float], accuracy: Sequence[float], target: float) -> tuple[float, Bound]:
    """Labels the random curve needs to reach ``target`` accuracy: linear interpolation at its first crossing.

    Returns (labels, bound): "=" an interpolated value, "<=" the smallest size already reached it,
    ">" no size did (the value is then the largest size: a lower bound, never an extrapolation).
    """
    if not len(sizes):
        raise ValueError("labels_needed needs at least one point of the random curve")
    if accuracy[0] >= target:
        return float(sizes[0]), "<="
    for i in range(1, len(sizes)):
        if accuracy[i] >= target:
            n0, n1, a0, a1 = sizes[i - 1], sizes[i], accuracy[i - 1], accuracy[i]
            return float(n0 + (target - a0) / (a1 - a0) * (n1 - n0)), "="
    return float(sizes[-1]), ">"


def _fit(make_estimator: Callable[[], Any], train_x: Sequence[Any], train_y: Sequence[Any],
         rows: Sequence[int]) -> Any:
    """A fresh estimator fitted on exactly ``rows`` of the training data (and nothing else)."""
    estimator = make_estimator()
    estimator.fit([train_x[i] for i in rows], [train_y[i] for i in rows])
    return estimator


def _distinct(targets: Sequence[Any]) -> int:
    """Distinct targets (a multi-label target is a list: compared as a set)."""
    return len({tuple(sorted(map(str, t))) if isinstance(t, (list, tuple)) else t for t in targets})


def _check_comparable(train_y: Sequence[Any], control: Sequence[int], active: Sequence[int],
                      min_labels: int) -> None:
    """Raise :class:`NotComparable` with the reason a team can act on (label more, turn the stream on)."""
    if len(control) < min_labels:
        raise NotComparable(f"only {len(control)} control-stream label(s) so far; the comparison needs "
                            f"{min_labels}")
    if len(active) < min_labels:
        raise NotComparable(f"only {len(active)} active label(s) so far; the comparison needs {min_labels}")
    if _distinct([train_y[i] for i in control]) < 2:
        raise NotComparable("the control-stream labels hold a single class so far")


def _bootstrap_accuracy(correct: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Accuracy of every model on ``n_boot`` resamples of the validation items: shape (n_boot, models).

    The same resample for every model (a paired bootstrap): the gap's interval then reflects how the
    two models differ on the items, not how hard each resample happens to be.
    """
    m = correct.shape[1]
    weights = correct.T.astype(np.float64)  # (items, models)
    out = []
    for start in range(0, n_boot, BOOT_CHUNK):
        rows = min(BOOT_CHUNK, n_boot - start)
        draws = rng.integers(0, m, size=(rows, m)) + m * np.arange(rows)[:, None]  # one block of m per resample
        counts = np.bincount(draws.ravel(), minlength=rows * m).reshape(rows, m).astype(np.float64)
        out.append(counts @ weights / m)
    return np.vstack(out)


def compare_streams(
    make_estimator: Callable[[], Any],
    train_x: Sequence[Any],
    train_y: Sequence[Hashable | Sequence[Any]],
    control: Sequence[int],
    active: Sequence[int],
    judge: Callable[[Any], np.ndarray],
    *,
    min_labels: int = MIN_LABELS,
    points: int = CURVE_POINTS,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> StreamComparison:
    """Fit the equal-count active model and the random curve, judge them, bootstrap the verdict.

    ``control`` and ``active`` index ``train_x``/``train_y`` in labelling order (first labelled first).
    ``judge(estimator)`` returns, per validation item, whether the fitted estimator gets it right (the
    same items, in the same order, every call). Raises :class:`NotComparable` when there is too little
    to compare. A prefix of the curve whose fit fails is left out (named in ``fit_failures``); the
    equal-count fits must succeed.
    """
    started = time.perf_counter()
    _check_comparable(train_y, control, active, min_labels)
    n = min(len(control), len(active))
    active_correct = np.asarray(judge(_fit(make_estimator, train_x, train_y, active[:n])), dtype=bool)
    if active_correct.size == 0:
        raise NotComparable("no validation items to judge the models on")
    sizes, rows, failures = [], [], []
    for size in curve_sizes(len(control), n, points):
        try:
            correct = np.asarray(judge(_fit(make_estimator, train_x, train_y, control[:size])), dtype=bool)
        except Exception as exc:  # one odd prefix must not hide the rest of the curve
            if size == n:
                raise
            failures.append(f"{size} labels: {type(exc).__name__}: {exc}")
            continue
        sizes.append(size)
        rows.append(correct)
    at_n = sizes.index(n)
    correct_all = np.vstack([active_correct, *rows])  # (1 + curve, items)
    accuracy = correct_all.mean(axis=1)
    target = float(accuracy[0])
    needed, bound = labels_needed(sizes, accuracy[1:].tolist(), target)

    boot = _bootstrap_accuracy(correct_all, n_boot, np.random.default_rng(seed))
    gaps = boot[:, 0] - boot[:, 1 + at_n]
    boot_needed = np.array([labels_needed(sizes, b[1:].tolist(), float(b[0])) for b in boot], dtype=object)
    values = boot_needed[:, 0].astype(float)
    open_top = float(np.mean(boot_needed[:, 1] == ">")) > 0.025
    return StreamComparison(
        n=n, n_control=len(control), n_active_total=len(active), n_validation=int(active_correct.size),
        accuracy_active=target, accuracy_random=float(accuracy[1 + at_n]),
        gap=target - float(accuracy[1 + at_n]),
        gap_low=float(np.percentile(gaps, 2.5)), gap_high=float(np.percentile(gaps, 97.5)),
        random_curve=[(s, float(a)) for s, a in zip(sizes, accuracy[1:], strict=True)],
        needed=needed, needed_low=float(np.percentile(values, 2.5)), needed_high=float(np.percentile(values, 97.5)),
        bound=bound, needed_high_open=open_top,
        seconds=time.perf_counter() - started, fit_failures=failures,
    )

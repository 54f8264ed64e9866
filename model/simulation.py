"""Offline active-learning replay: how many labels does a strategy save over random sampling?

Given a fully labelled dataset, :func:`run_curve` plays a labelling project forward: it starts
from ``initial`` random labels, and after each training round "asks" for the next
``batch_size`` tasks exactly as the server would -- the same estimator factory
(:func:`model.estimators.make_estimator`), acquisition function
(the scoring kernel, :mod:`model.scoring`, as the server uses it);
a batch of B is the first B tasks of the queue -- and reveals their labels from the ground
truth. After every round the model is scored on a held-out test split, which gives one
learning curve (test accuracy against labels used).

The control arm ``random`` picks uniformly from the unlabelled pool and trains the plain
logistic model (the one the default ``margin`` strategy uses); ``random@STRATEGY`` picks at
random but trains the estimator ``STRATEGY`` would use (e.g. ``random@bald`` = MC-dropout MLP),
which separates "better model" from "better questions".

Fairness and randomness, for one ``seed``:

* the pool/test split (:func:`split_indices`) and the ``initial`` labels
  (:func:`initial_indices`) depend on the seed only, so every arm starts from the same labels
  and is scored on the same test set; different seeds vary both the split and the start;
* the initial draw is repeated (up to 100 times) until it holds at least two classes when the
  pool has two; the estimator would otherwise fall back to a constant model for round one;
* estimator seeds are ``seed * 1000 + round``, queue seeds ``seed * 100_003 + round``, the
  random arm draws from ``np.random.default_rng([seed, 1])``.

Noisy labels (``annotators``, :mod:`model.crowd.profiles`): each pool item's answer is drawn once
per seed, before any arm runs, so every arm of a seed sees the same wrong labels; the models train
on the answers, the test split keeps the truth (ground truth is the yardstick), and each curve
records how many of the labels it trained on were wrong.

Everything here is pure: arrays and lists in, numbers out; no printing, no files.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from model.crowd.profiles import AnnotatorProfile, draw_answers
from model.custom import BringYourOwn, is_factory_spec
from model.estimators import make_estimator
from model.evaluation import evaluate
from model.queue import QUEUES, get_queue
from model.scoring import labels_from_proba, order, score
from model.uncertainty import STRATEGIES, get_strategy

#: Name of the control arm: uniform random picks from the pool.
RANDOM = "random"
#: The strategy whose estimator the plain ``random`` arm trains (the logistic model).
CONTROL_ESTIMATOR_STRATEGY = "margin"
#: Tolerance when comparing a mean accuracy with a target such as 0.95.
_EPS = 1e-9

_ARM = re.compile(
    r"^(?P<strategy>[a-z_]+)(?:@(?P<estimator>[a-z_]+))?(?:\+(?P<queue>[a-z_]+)(?P<params>(?::[^:]+)*))?$"
)


@dataclass(frozen=True)
class Arm:
    """One simulated labelling policy: an acquisition function, a queue ordering, an estimator.

    ``name`` is the spec it was parsed from (the key in reports); ``strategy`` is
    ``"random"`` for the control arm; ``estimator_strategy`` names the strategy whose estimator
    kind is trained (itself, or :data:`CONTROL_ESTIMATOR_STRATEGY` for ``random``); ``warmup``
    is the kernel's cold start (:func:`model.scoring.order`: representative tasks first while the
    project has fewer than ``warmup`` labels per class; 0 = off, the server's default).
    """

    name: str
    strategy: str
    queue: str = "greedy"
    queue_params: dict[str, Any] = field(default_factory=dict)
    estimator_strategy: str = CONTROL_ESTIMATOR_STRATEGY
    warmup: float = 0.0

    @property
    def is_random(self) -> bool:
        return self.strategy == RANDOM


def parse_arm(spec: str, default_queue: str = "greedy") -> Arm:
    """Parse ``STRATEGY[+QUEUE[:KEY=VALUE]...]`` or ``random[@STRATEGY]``.

    Examples: ``margin``, ``margin+cluster``, ``entropy+explore:fraction=0.2``,
    ``bald+power:beta=2``, ``margin+cluster:warmup=3``, ``random``, ``random@bald``. A strategy
    without ``+QUEUE`` uses ``default_queue``. ``warmup=K`` is not a queue parameter but the
    kernel's cold start, valid after any queue (see :class:`Arm`). Raises ValueError naming the
    valid strategies / queues.
    """
    text = spec.strip()
    match = _ARM.match(text)
    if not match:
        raise ValueError(
            f"bad strategy spec {spec!r}: expected STRATEGY[+QUEUE[:key=value]...] or random[@STRATEGY]"
        )
    strategy, estimator, queue = match["strategy"], match["estimator"], match["queue"]
    if strategy == RANDOM:
        if queue:
            raise ValueError(f"{spec!r}: the random arm has no queue (it picks uniformly at random)")
        estimator = estimator or CONTROL_ESTIMATOR_STRATEGY
        _check_strategy(estimator, spec)
        return Arm(name=text, strategy=RANDOM, queue="-", estimator_strategy=estimator)
    if estimator:
        raise ValueError(f"{spec!r}: '@ESTIMATOR' is only for the random arm (random@bald)")
    _check_strategy(strategy, spec)
    queue = queue or default_queue
    params = _parse_params(match["params"] or "", spec)
    warmup = params.pop("warmup", 0.0)
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)) or not 0 <= warmup < math.inf:
        raise ValueError(f"{spec!r}: warmup must be a number of labels per class >= 0, got {warmup!r}")
    get_queue(queue, **params)  # validate name and parameters now, not in the middle of a run
    return Arm(name=text, strategy=strategy, queue=queue, queue_params=params, estimator_strategy=strategy,
               warmup=float(warmup))


def _check_strategy(name: str, spec: str) -> None:
    if name not in STRATEGIES:
        raise ValueError(
            f"{spec!r}: unknown strategy {name!r}; valid: {RANDOM}, {', '.join(sorted(STRATEGIES))}; "
            f"queues: {', '.join(sorted(QUEUES))}"
        )


def _parse_params(text: str, spec: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in filter(None, text.split(":")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{spec!r}: queue parameter {item!r} must look like key=value")
        params[key] = parse_value(value)
    return params


def parse_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"inf"`` -> inf, ``"true"`` -> True, ``"none"`` -> None, else the string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


# ----------------------------------------------------------------------------- splits


def split_indices(y: Sequence[str], test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (pool, test) row indices: stratified by label when every label has >= 2 rows.

    Falls back to a plain random split when stratification is impossible (a label with a single
    row, or a test split smaller than the number of labels).
    """
    rows = np.arange(len(y))
    labels = np.asarray(y, dtype=object)
    try:
        pool, test = train_test_split(rows, test_size=test_size, random_state=seed, stratify=labels)
    except ValueError:
        pool, test = train_test_split(rows, test_size=test_size, random_state=seed)
    return np.sort(pool), np.sort(test)


def initial_indices(y_pool: Sequence[str], n: int, seed: int, max_draws: int = 100) -> np.ndarray:
    """``n`` distinct pool indices drawn at random (seeded), re-drawn until they hold >= 2 labels.

    When the pool has a single label, or ``max_draws`` draws all came out single-class (tiny or
    extremely skewed data), the last draw is used and the estimator's one-class fallback (a
    constant model) carries the first round.
    """
    rng = np.random.default_rng([seed, 0])
    n = min(n, len(y_pool))
    labels = np.asarray(y_pool, dtype=object)
    want_two = len(set(labels.tolist())) >= 2 and n >= 2
    for _ in range(max_draws):
        picked = rng.choice(len(y_pool), size=n, replace=False)
        if not want_two or len(set(labels[picked].tolist())) >= 2:
            break
    return picked


def label_grid(initial: int, batch_size: int, budget: int, pool_size: int) -> list[int]:
    """Label counts at which a curve is evaluated: ``initial, initial + B, ...`` up to the budget.

    The last step is shortened to land exactly on ``budget`` (or on the pool size when the pool
    runs out first), so the grid is the same for every arm and seed of one configuration.
    """
    if initial < 1 or batch_size < 1:
        raise ValueError(f"initial and batch size must be >= 1, got {initial} and {batch_size}")
    stop = min(budget, pool_size)
    if initial > stop:
        raise ValueError(f"initial labels ({initial}) exceed the budget / pool size ({stop})")
    grid = list(range(initial, stop + 1, batch_size))
    if grid[-1] != stop:
        grid.append(stop)
    return grid


# ----------------------------------------------------------------------------- one curve


def run_curve(
    X_pool: Sequence[Any],
    y_pool: Sequence[str],
    X_test: Sequence[Any],
    y_test: Sequence[str],
    classes: Sequence[str],
    strategy: str | Arm,
    queue: str = "greedy",
    initial: int = 10,
    batch_size: int = 10,
    budget: int = 300,
    seed: int = 0,
    modality: str = "image",
    estimator_params: dict[str, Any] | None = None,
    on_round: Callable[[int, float], None] | None = None,
    annotators: AnnotatorProfile | None = None,
) -> dict[str, list]:
    """Replay one labelling project and return ``{"labels": [...], "accuracy": [...], "wrong": [...]}``.

    ``strategy`` is an arm spec (see :func:`parse_arm`; ``queue`` is the default queue for a
    spec without ``+QUEUE``) or an :class:`Arm`. ``labels`` is :func:`label_grid`; ``accuracy``
    the test accuracy of the model trained on that many labels. ``estimator_params`` go to
    :func:`model.estimators.make_estimator` (e.g. ``{"C": 1.0}``). ``on_round(labels, accuracy)``
    is called after every evaluation (progress reporting). ``annotators``: the labels revealed are
    one simulated annotator's answer per item (:func:`noisy_pool_labels`), not the truth; ``wrong``
    counts the wrong labels among those trained on at each label count. Single-label only.
    """
    arm = strategy if isinstance(strategy, Arm) else parse_arm(strategy, default_queue=queue)
    params = dict(estimator_params or {})
    classes = list(classes)
    y_pool = [str(v) for v in y_pool]
    y_test = [str(v) for v in y_test]
    grid = label_grid(initial, batch_size, budget, len(X_pool))
    y_given = y_pool if annotators is None else noisy_pool_labels(y_pool, classes, annotators, seed)

    labelled = list(initial_indices(y_pool, initial, seed))
    unlabelled_mask = np.ones(len(X_pool), dtype=bool)
    unlabelled_mask[labelled] = False
    acquisition = None if arm.is_random else get_strategy(arm.strategy)
    ordering = None if arm.is_random else get_queue(arm.queue, **arm.queue_params)
    random_picks = np.random.default_rng([seed, 1])

    accuracy: list[float] = []
    wrong: list[int] = []
    for round_index, n_labels in enumerate(grid):
        estimator = arm_estimator(arm.estimator_strategy, modality, classes, seed * 1000 + round_index, params)
        estimator.fit([X_pool[i] for i in labelled], [y_given[i] for i in labelled])
        wrong.append(sum(y_given[i] != y_pool[i] for i in labelled))
        predicted = labels_from_proba(estimator.classes_, estimator.predict_proba(X_test), multi_label=False)
        test_accuracy = float(evaluate(y_test, [row[0] for row in predicted], classes)["accuracy"])
        accuracy.append(test_accuracy)
        if on_round is not None:
            on_round(n_labels, test_accuracy)
        if round_index + 1 == len(grid):
            break
        need = grid[round_index + 1] - n_labels
        candidates = np.flatnonzero(unlabelled_mask)
        if arm.is_random:
            picked = random_picks.choice(candidates, size=need, replace=False)
        else:
            scored = score(estimator, acquisition, [X_pool[i] for i in candidates],
                           with_features=ordering.needs_features or arm.warmup > 0)
            queued = order(ordering, scored, random_state=seed * 100_003 + round_index,
                           warmup=arm.warmup, labels_per_class=n_labels / max(1, len(classes)))
            picked = candidates[queued.order[:need]]
        labelled.extend(int(i) for i in picked)
        unlabelled_mask[picked] = False
    return {"labels": grid, "accuracy": accuracy, "wrong": wrong}


def noisy_pool_labels(y_pool: Sequence[str], classes: Sequence[str], annotators: AnnotatorProfile,
                      seed: int) -> list[str]:
    """One answer per pool item from an annotator of ``annotators`` drawn at random (seeded by ``seed`` only).

    The start of a replay is drawn from the true labels (:func:`initial_indices`), so the noise changes
    what the models learn from, not which items they start from.
    """
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    _, answers = draw_answers([index[v] for v in y_pool], annotators, len(classes), seed)
    return [classes[k] for k in answers[:, 0]]


def arm_estimator(strategy: str, modality: str, classes: Sequence[str], random_state: int,
               params: dict[str, Any]) -> Any:
    """The server's estimator for the arm: a built-in kind, or a user's factory (``model=path.py:make``)."""
    model = str(params.get("model", ""))
    if is_factory_spec(model):
        return BringYourOwn(factory=model, classes=list(classes), random_state=random_state)
    return make_estimator(strategy, modality, classes, False, random_state=random_state, **params)


def full_pool_accuracy(
    X_pool: Sequence[Any],
    y_pool: Sequence[str],
    X_test: Sequence[Any],
    y_test: Sequence[str],
    classes: Sequence[str],
    estimator_strategy: str = CONTROL_ESTIMATOR_STRATEGY,
    seed: int = 0,
    modality: str = "image",
    estimator_params: dict[str, Any] | None = None,
) -> float:
    """Test accuracy of the arm's model trained on *every* pool row of the split.

    The ceiling a project would reach by labelling everything: "labels to 90 % of the full-pool
    accuracy" says how much of the pool a strategy needs to get close to it, a target that
    adapts to how hard the data is (a fixed 90 % is out of reach on hard text and trivial on digits).
    """
    classes = list(classes)
    estimator = arm_estimator(estimator_strategy, modality, classes, seed * 1000, dict(estimator_params or {}))
    estimator.fit(list(X_pool), [str(v) for v in y_pool])
    predicted = labels_from_proba(estimator.classes_, estimator.predict_proba(X_test), multi_label=False)
    return float(evaluate([str(v) for v in y_test], [row[0] for row in predicted], classes)["accuracy"])


# ----------------------------------------------------------------------------- summaries


def aggregate(curves: Sequence[dict[str, list]]) -> dict[str, list]:
    """Mean and spread over seeds of curves sharing one label grid.

    Returns ``labels``, ``accuracy_mean``, ``accuracy_std`` (sample standard deviation over
    seeds, ddof=1; 0 for one seed) and ``accuracy_per_seed`` (one list per curve).
    """
    if not curves:
        raise ValueError("no curves to aggregate")
    labels = list(curves[0]["labels"])
    for curve in curves[1:]:
        if list(curve["labels"]) != labels:
            raise ValueError("curves have different label grids; cannot aggregate")
    acc = np.asarray([curve["accuracy"] for curve in curves], dtype=np.float64)
    std = acc.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(acc.shape[1])
    return {
        "labels": labels,
        "accuracy_mean": acc.mean(axis=0).tolist(),
        "accuracy_std": std.tolist(),
        "accuracy_per_seed": acc.tolist(),
    }


def labels_to_reach(labels: Sequence[int], accuracy_mean: Sequence[float], target: float) -> int | None:
    """The first label count at which the mean curve reaches ``target``; None if it never does.

    Evaluated on the curve's grid (so a resolution of one batch); "first" means the mean curve
    crosses the target there, even if a later round dips below it again.
    """
    for n, acc in zip(labels, accuracy_mean, strict=True):
        if acc >= target - _EPS:
            return int(n)
    return None


def accuracy_at(labels: Sequence[int], accuracy_mean: Sequence[float], budget: int) -> float | None:
    """Mean accuracy at the largest evaluated label count <= ``budget`` (None before the first)."""
    best = None
    for n, acc in zip(labels, accuracy_mean, strict=True):
        if n <= budget:
            best = float(acc)
    return best


def curve_area(labels: Sequence[int], accuracy: Sequence[float]) -> float:
    """Normalised area under one learning curve: its mean accuracy over the label axis (trapezoids).

    Dividing by the span keeps it an accuracy (0..1), so "area of A minus area of B" reads as
    "A was this many points better on average over the budget"; one label count gives that accuracy.
    """
    x = np.asarray(labels, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    if x.size == 0 or x.size != y.size:
        raise ValueError(f"need as many accuracies as label counts (and at least one), got {x.size} and {y.size}")
    if x.size == 1:
        return float(y[0])
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def area_differences(arm: dict[str, list], control: dict[str, list]) -> list[float]:
    """Per seed, the arm's curve area minus the control's on the label counts both curves have.

    Both are :func:`aggregate` results over the same seeds, so seed ``s`` of each shares the split,
    the initial labels and the test set: the difference is paired, and its spread over seeds is the
    honest uncertainty of "better than random" (the per-arm spreads include the split's luck twice).
    """
    theirs_at = {n: j for j, n in enumerate(control["labels"])}
    shared = [n for n in arm["labels"] if n in theirs_at]
    if not shared:
        return []
    mine_at = {n: i for i, n in enumerate(arm["labels"])}
    mine, theirs = [mine_at[n] for n in shared], [theirs_at[n] for n in shared]
    return [
        curve_area(shared, [a[i] for i in mine]) - curve_area(shared, [c[j] for j in theirs])
        for a, c in zip(arm["accuracy_per_seed"], control["accuracy_per_seed"], strict=True)
    ]


def wins_ties_losses(differences: Sequence[float], tie: float = 0.005) -> dict[str, int | float]:
    """Count seeds where the arm beat (``d >= tie``), tied (``|d| < tie``) or lost to (``d <= -tie``) the control.

    ``tie`` is in accuracy (0.005 = half a point of mean accuracy over the budget): below that a
    difference is within what re-drawing the initial labels alone moves a curve.
    """
    wins = sum(1 for d in differences if d >= tie)
    losses = sum(1 for d in differences if d <= -tie)
    return {"wins": wins, "ties": len(differences) - wins - losses, "losses": losses, "tie_below": tie}


def target_key(target: float) -> str:
    """JSON key of a target: ``0.9`` -> ``"0.90"``, ``0.925`` -> ``"0.925"``."""
    text = f"{target:.2f}"
    return text if math.isclose(float(text), target, abs_tol=1e-12) else repr(float(target))


def summarise(
    results: dict[str, dict[str, list]],
    targets: Sequence[float],
    report_at: Sequence[int],
    control: str = RANDOM,
    gap_from: int = 30,
    full_pool: float | None = None,
    full_share: float = 0.9,
    tie: float = 0.005,
) -> dict[str, dict[str, Any]]:
    """Add the headline figures to each aggregated arm of ``results`` (name -> :func:`aggregate`).

    Per arm: ``labels_to_reach`` (target key -> labels or None), ``accuracy_at`` (label count ->
    mean accuracy), and, against the ``control`` arm, ``saving_vs_random`` (target key -> labels
    random needs / labels the arm needs, None when either never reaches the target),
    ``saving_vs_random_at_least`` (when only the arm reaches it: random's largest evaluated
    label count / the arm's labels, a lower bound), and ``worst_gap_vs_random`` (the minimum of
    arm mean - random mean over the shared label counts >= ``gap_from``; negative = behind),
    ``area_vs_random`` (:func:`area_differences`: ``mean``, ``std`` and ``per_seed``, in accuracy)
    with ``wins_ties_losses`` (:func:`wins_ties_losses` with ``tie``). With ``full_pool`` (the
    mean accuracy of the model trained on the whole pool), ``labels_to_full_share`` is the first
    label count whose mean accuracy reaches ``full_share * full_pool``.
    """
    out: dict[str, dict[str, Any]] = {}
    reference = results.get(control)
    for name, agg in results.items():
        labels, mean = agg["labels"], agg["accuracy_mean"]
        entry: dict[str, Any] = dict(agg)
        entry["labels_to_reach"] = {target_key(t): labels_to_reach(labels, mean, t) for t in targets}
        entry["accuracy_at"] = {str(b): accuracy_at(labels, mean, b) for b in report_at}
        if full_pool is not None:
            entry["labels_to_full_share"] = labels_to_reach(labels, mean, full_share * full_pool)
        out[name] = entry
    if reference is None:
        return out
    ref_labels, ref_mean = reference["labels"], reference["accuracy_mean"]
    ref_at = dict(zip(ref_labels, ref_mean, strict=True))
    for entry in out.values():
        saving: dict[str, float | None] = {}
        at_least: dict[str, float | None] = {}
        for t in targets:
            key = target_key(t)
            mine = entry["labels_to_reach"][key]
            theirs = labels_to_reach(ref_labels, ref_mean, t)
            saving[key] = theirs / mine if mine and theirs else None
            at_least[key] = ref_labels[-1] / mine if mine and theirs is None else None
        gaps = [
            acc - ref_at[n]
            for n, acc in zip(entry["labels"], entry["accuracy_mean"], strict=True)
            if n >= gap_from and n in ref_at
        ]
        entry["saving_vs_random"] = saving
        entry["saving_vs_random_at_least"] = at_least
        entry["worst_gap_vs_random"] = min(gaps) if gaps else None
        _add_area_vs_control(entry, reference, tie)
    return out


def _add_area_vs_control(entry: dict[str, Any], reference: dict[str, list], tie: float) -> None:
    differences = area_differences(entry, reference)
    spread = float(np.std(differences, ddof=1)) if len(differences) > 1 else 0.0
    entry["area_vs_random"] = {"mean": float(np.mean(differences)) if differences else None,
                               "std": spread, "per_seed": differences}
    entry["wins_ties_losses"] = wins_ties_losses(differences, tie)

"""Offline active-learning replay for detection: does a strategy reach a given mAP with fewer images?

The detection counterpart of :mod:`model.simulation`'s ``run_curve``. Given fully labelled images,
:func:`run_detection_curve` plays a labelling project forward: ``initial`` random images are
labelled, a :class:`~model.detection.detector.BoxDetector` is trained, and each round the next
``batch_size`` images are the most uncertain of the pool under the strategy (or uniform picks for
the ``random`` arm); their boxes are revealed from the ground truth. After every round the
detector is scored on a held-out test split (mAP@0.5 and mAP@0.5:0.95), which gives one learning
curve against *images* labelled (the unit a reviewer opens).

Fairness, for one ``seed``, as in :mod:`model.simulation`:

* the pool / test split and the ``initial`` images depend on the seed only, so every arm starts
  from the same labels and is scored on the same test set; the initial draw is repeated (up to
  100 times) until it holds at least one box;
* detector seeds are ``seed * 1000 + round`` in every arm; the random arm draws from
  ``np.random.default_rng([seed, 1])``;
* ties in uncertainty are broken by pool order (stable sort), not at random.

Pure: arrays and lists in, numbers out; no printing, no files.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from model.detection.boxes import Detections
from model.detection.detector import BoxDetector
from model.detection.metrics import evaluate_detections
from model.detection.uncertainty import get_detection_strategy, score_images

#: Name of the control arm: uniform random picks from the pool.
RANDOM = "random"
#: Tolerance when comparing a mean mAP with a target.
_EPS = 1e-9


def split_images(n_images: int, test_size: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (pool, test) indices: a seeded random split; ``test_size`` a fraction or a count."""
    count = int(round(test_size * n_images)) if isinstance(test_size, float) else int(test_size)
    if not 0 < count < n_images:
        raise ValueError(f"test split of {count} images out of {n_images} leaves no pool or no test set")
    order = np.random.default_rng([seed, 2]).permutation(n_images)
    return np.sort(order[count:]), np.sort(order[:count])


def initial_images(pool_targets: Sequence[Detections], n: int, seed: int, max_draws: int = 100) -> np.ndarray:
    """``n`` distinct pool positions drawn at random (seeded), re-drawn until they hold >= 1 box."""
    rng = np.random.default_rng([seed, 0])
    n = min(n, len(pool_targets))
    for _ in range(max_draws):
        picked = rng.choice(len(pool_targets), size=n, replace=False)
        if any(len(pool_targets[i]) for i in picked):
            break
    return picked


def run_detection_curve(
    images: Sequence[np.ndarray],
    targets: Sequence[Detections],
    strategy: str,
    seed: int = 0,
    initial: int = 10,
    batch_size: int = 10,
    budget: int = 60,
    test_size: float | int = 0.25,
    detector_params: dict[str, Any] | None = None,
    strategy_params: dict[str, Any] | None = None,
    classes: Sequence[str] | None = None,
    on_round: Callable[[int, float], None] | None = None,
    warm_start_steps: int | None = None,
) -> dict[str, Any]:
    """Replay one labelling project; return the learning curve and timings.

    ``strategy``: a detection strategy name (:data:`~model.detection.uncertainty.DETECTION_STRATEGIES`,
    aliases accepted) or ``"random"`` for the control arm. ``detector_params`` go to
    :class:`BoxDetector` (``classes`` and ``random_state`` are set here); ``classes`` defaults to
    the sorted labels of all ``targets``, so every arm trains the same output layer.
    ``on_round(images_labelled, map50)`` is called after each evaluation.

    ``warm_start_steps``: when set, every round after the first starts from the previous round's
    weights (``init_weights``) and trains exactly that many steps, in every arm alike -- how a
    labelling server would refresh a detector between rounds, and what makes a replay of many rounds
    affordable on a CPU. None: every round trains from scratch with ``detector_params``' budget.

    Returns ``labels`` (images labelled per round, :func:`model.simulation.label_grid`), ``map50``,
    ``map50_95``, ``fit_seconds`` (per round), ``predict_ms`` (per test image, per round) and
    ``boxes_labelled`` (ground-truth boxes in the training set per round).
    """
    from model.simulation import label_grid  # not at import: it pulls in the classification stack

    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    names = list(classes) if classes is not None else sorted({label for t in targets for label in t.labels})
    pool, test = split_images(len(images), test_size, seed)
    pool_targets = [targets[i] for i in pool]
    grid = label_grid(initial, batch_size, budget, len(pool))
    labelled = [int(i) for i in initial_images(pool_targets, initial, seed)]
    unlabelled = np.ones(len(pool), dtype=bool)
    unlabelled[labelled] = False
    acquisition = None if strategy == RANDOM else get_detection_strategy(strategy, **(strategy_params or {}))
    random_picks = np.random.default_rng([seed, 1])
    test_images, test_targets = [images[i] for i in test], [targets[i] for i in test]
    curve: dict[str, Any] = {"labels": grid, "map50": [], "map50_95": [], "fit_seconds": [], "predict_ms": [],
                             "boxes_labelled": []}
    with tempfile.TemporaryDirectory() as scratch:
        previous = Path(scratch) / "previous.npz"
        for round_index, n_labels in enumerate(grid):
            params = {**(detector_params or {}), "classes": names, "random_state": seed * 1000 + round_index}
            if warm_start_steps is not None and round_index > 0:
                params.update(init_weights=str(previous), min_steps=warm_start_steps, max_steps=warm_start_steps)
            detector, seconds = _fit(params, [images[pool[i]] for i in labelled], [pool_targets[i] for i in labelled])
            if warm_start_steps is not None:
                detector.save_weights(str(previous))
            _evaluate(curve, detector, test_images, test_targets, names, seconds, on_round, n_labels)
            curve["boxes_labelled"].append(int(sum(len(pool_targets[i]) for i in labelled)))
            if round_index + 1 == len(grid):
                break
            need = grid[round_index + 1] - n_labels
            candidates = np.flatnonzero(unlabelled)
            if acquisition is None:
                picked = random_picks.choice(candidates, size=need, replace=False)
            else:
                scored = score_images(detector, acquisition, [images[pool[i]] for i in candidates])
                picked = candidates[np.argsort(-scored.uncertainty, kind="stable")[:need]]
            labelled.extend(int(i) for i in picked)
            unlabelled[picked] = False
    return curve


def _fit(params: dict[str, Any], X: list[np.ndarray], y: list[Detections]) -> tuple[BoxDetector, float]:
    started = time.perf_counter()
    detector = BoxDetector(**params).fit(X, y)
    return detector, time.perf_counter() - started


def _evaluate(
    curve: dict[str, Any], detector: BoxDetector, images: list[np.ndarray], targets: list[Detections],
    names: list[str], fit_seconds: float, on_round: Callable[[int, float], None] | None, n_labels: int,
) -> None:
    """Append the test-split figures and timings of one round to ``curve``."""
    started = time.perf_counter()
    predicted = detector.predict(images)
    curve["predict_ms"].append((time.perf_counter() - started) * 1000.0 / max(len(images), 1))
    curve["fit_seconds"].append(fit_seconds)
    figures = evaluate_detections(targets, predicted, names)
    curve["map50"].append(figures["map50"])
    curve["map50_95"].append(figures["map50_95"])
    if on_round is not None:
        on_round(n_labels, figures["map50"])


def aggregate_curves(curves: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; 0 for one seed) over seeds of curves on one grid.

    Returns ``labels``, ``map50_mean``, ``map50_std``, ``map50_95_mean``, ``map50_95_std``,
    ``map50_per_seed``, and the mean ``fit_seconds`` and ``predict_ms`` per round.
    """
    if not curves:
        raise ValueError("no curves to aggregate")
    labels = list(curves[0]["labels"])
    if any(list(c["labels"]) != labels for c in curves[1:]):
        raise ValueError("curves have different label grids; cannot aggregate")
    out: dict[str, Any] = {"labels": labels}
    for key in ("map50", "map50_95"):
        values = np.asarray([c[key] for c in curves], dtype=np.float64)
        out[f"{key}_mean"] = values.mean(axis=0).tolist()
        out[f"{key}_std"] = (values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(labels))).tolist()
    out["map50_per_seed"] = [list(c["map50"]) for c in curves]
    for key in ("fit_seconds", "predict_ms"):
        out[key] = np.mean([c[key] for c in curves], axis=0).tolist()
    return out


def labels_to_reach(curve: dict[str, Any], target: float, metric: str = "map50") -> int | None:
    """The first label count at which the curve's ``metric`` (its ``_mean`` when aggregated) reaches
    ``target``; None if it never does. Resolution: one round."""
    values = curve.get(f"{metric}_mean", curve.get(metric))
    if values is None:
        raise KeyError(f"curve has neither {metric}_mean nor {metric}")
    for n, value in zip(curve["labels"], values, strict=True):
        if value >= target - _EPS:
            return int(n)
    return None

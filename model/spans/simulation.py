"""Offline active-learning replay for span tagging: does a strategy reach a given F1 with fewer labels?

The span counterpart of :func:`model.simulation.run_curve`. Given fully labelled documents,
:func:`run_span_curve` plays a labelling project forward: ``initial`` random documents are labelled,
a :class:`~model.spans.tagger.SpanTagger` is trained, and each round the next ``batch_size`` documents
are the first of the pool's queue -- scored and ordered exactly as the server does it,
:func:`model.scoring.score` (which asks the tagger's ``score_items``) then :func:`model.scoring.order`
with the arm's queue (``greedy`` by default: most uncertain first, ties in pool order), so a queue
with diversity (``cluster``) replays too -- or uniform picks for the ``random`` arm; their spans are
revealed from the ground truth. After every round the tagger is scored on a held-out test split
(exact-span F1 and token-overlap F1, :mod:`model.spans.metrics`).

Labelling cost is reported two ways, since a span strategy may prefer long documents: documents
labelled (the grid, the same for every arm) and tokens labelled (cumulative, per round: what the
annotators read). :func:`metric_at_tokens` reads a curve at a token budget (:func:`values_at_tokens`
per seed); :func:`area_differences` compares an arm with the control seed by seed on either axis;
:func:`full_pool_scores` is the ceiling, a tagger trained on a seed's whole pool.

Fairness, for one ``seed`` (as in :mod:`model.simulation`): the pool / test split and the initial
documents depend on the seed only, so every arm starts from the same labels and is scored on the
same test set; the initial draw is repeated (up to 100 times) until it holds at least one span;
tagger seeds are ``seed * 1000 + round``, queue seeds ``seed * 100_003 + round``, the random arm
draws from ``np.random.default_rng([seed, 1])``. Everything is deterministic per seed (CRFsuite's
L-BFGS is), except the timings.

Pure: lists in, numbers out; no printing, no files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from model.scoring import order, score
from model.spans.metrics import evaluate_spans
from model.spans.tagger import SpanTagger
from model.spans.uncertainty import get_span_strategy, token_cost

#: Name of the control arm: uniform random picks from the pool.
RANDOM = "random"
#: Curve entries averaged by :func:`aggregate_span_curves`.
CURVE_KEYS = ("f1", "token_f1", "precision", "recall", "tokens_labelled", "spans_labelled", "fit_seconds",
              "fit_ms_per_doc", "predict_ms_per_doc")


def split_documents(n_docs: int, test_size: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (pool, test) indices: a seeded random split; ``test_size`` a fraction or a count."""
    count = int(round(test_size * n_docs)) if isinstance(test_size, float) else int(test_size)
    if not 0 < count < n_docs:
        raise ValueError(f"test split of {count} documents out of {n_docs} leaves no pool or no test set")
    permutation = np.random.default_rng([seed, 2]).permutation(n_docs)
    return np.sort(permutation[count:]), np.sort(permutation[:count])


def initial_documents(pool_spans: Sequence[Sequence[Any]], n: int, seed: int, max_draws: int = 100) -> np.ndarray:
    """``n`` distinct pool positions drawn at random (seeded), re-drawn until they hold >= 1 span."""
    rng = np.random.default_rng([seed, 0])
    n = min(n, len(pool_spans))
    for _ in range(max_draws):
        picked = rng.choice(len(pool_spans), size=n, replace=False)
        if any(len(pool_spans[i]) for i in picked):
            break
    return picked


def run_span_curve(
    texts: Sequence[str],
    spans: Sequence[Sequence[dict[str, Any]]],
    strategy: str,
    seed: int = 0,
    initial: int = 10,
    batch_size: int = 10,
    budget: int = 60,
    test_size: float | int = 0.25,
    labels: Sequence[str] | None = None,
    tagger_params: dict[str, Any] | None = None,
    queue: str = "greedy",
    on_round: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Replay one labelling project; return its learning curve, costs and timings (see the module docstring).

    ``strategy``: ``"random"`` or any name :func:`~model.spans.uncertainty.span_strategy_name` takes
    (span heuristics, or classification names mapped onto them). ``labels`` default to the sorted
    labels of all ``spans``, so every arm trains the same label set. ``on_round(docs_labelled, f1)``
    is called after each evaluation.

    Returns lists, one entry per round: ``labels`` (documents labelled,
    :func:`model.simulation.label_grid`), ``tokens_labelled``, ``spans_labelled``, ``f1``,
    ``precision``, ``recall`` (exact span), ``token_f1``, ``fit_seconds``, ``fit_ms_per_doc`` and
    ``predict_ms_per_doc`` (test documents).
    """
    from model.simulation import label_grid

    if len(texts) != len(spans):
        raise ValueError(f"{len(texts)} documents but {len(spans)} span lists")
    names = list(labels) if labels is not None else sorted({s["label"] for doc in spans for s in doc})
    pool, test = split_documents(len(texts), test_size, seed)
    pool_texts, pool_spans = [texts[i] for i in pool], [list(spans[i]) for i in pool]
    test_texts, test_spans = [texts[i] for i in test], [list(spans[i]) for i in test]
    cost = token_cost(pool_texts)
    grid = label_grid(initial, batch_size, budget, len(pool))
    labelled = [int(i) for i in initial_documents(pool_spans, initial, seed)]
    unlabelled = np.ones(len(pool), dtype=bool)
    unlabelled[labelled] = False
    acquisition = None if strategy == RANDOM else get_span_strategy(strategy)
    random_picks = np.random.default_rng([seed, 1])
    curve: dict[str, Any] = {"labels": grid, **{key: [] for key in CURVE_KEYS}}
    for round_index, n_labels in enumerate(grid):
        params = {**(tagger_params or {}), "labels": names, "random_state": seed * 1000 + round_index}
        tagger, seconds = _fit(params, [pool_texts[i] for i in labelled], [pool_spans[i] for i in labelled])
        _evaluate(curve, tagger, test_texts, test_spans, names, seconds, len(labelled))
        curve["tokens_labelled"].append(int(cost[labelled].sum()))
        curve["spans_labelled"].append(int(sum(len(pool_spans[i]) for i in labelled)))
        if on_round is not None:
            on_round(n_labels, curve["f1"][-1])
        if round_index + 1 == len(grid):
            break
        need = grid[round_index + 1] - n_labels
        candidates = np.flatnonzero(unlabelled)
        if acquisition is None:
            picked = random_picks.choice(candidates, size=need, replace=False)
        else:
            scored = score(tagger, acquisition, [pool_texts[i] for i in candidates], with_features=queue != "greedy")
            picked = candidates[order(queue, scored, random_state=seed * 100_003 + round_index).order[:need]]
        labelled.extend(int(i) for i in picked)
        unlabelled[picked] = False
    return curve


def _fit(params: dict[str, Any], X: list[str], y: list[list[dict[str, Any]]]) -> tuple[SpanTagger, float]:
    started = time.perf_counter()
    tagger = SpanTagger(**params).fit(X, y)
    return tagger, time.perf_counter() - started


def _evaluate(curve: dict[str, Any], tagger: SpanTagger, texts: list[str], spans: list[list[dict[str, Any]]],
              names: list[str], fit_seconds: float, n_docs: int) -> None:
    """Append the test split's figures and the timings of one round to ``curve``."""
    started = time.perf_counter()
    predicted = tagger.predict(texts)
    curve["predict_ms_per_doc"].append((time.perf_counter() - started) * 1000.0 / max(len(texts), 1))
    curve["fit_seconds"].append(fit_seconds)
    curve["fit_ms_per_doc"].append(fit_seconds * 1000.0 / max(n_docs, 1))
    figures = evaluate_spans(spans, predicted, texts=texts, labels=names)
    for key in ("f1", "token_f1", "precision", "recall"):
        curve[key].append(figures[key])


def aggregate_span_curves(curves: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation (ddof=1; 0 for one seed) over seeds of curves on one grid.

    Returns ``labels``, ``{key}_mean`` and ``{key}_std`` for every :data:`CURVE_KEYS` entry, and per
    seed ``f1_per_seed``, ``token_f1_per_seed`` and ``tokens_per_seed`` (for :func:`metric_at_tokens`).
    """
    if not curves:
        raise ValueError("no curves to aggregate")
    labels = list(curves[0]["labels"])
    if any(list(c["labels"]) != labels for c in curves[1:]):
        raise ValueError("curves have different label grids; cannot aggregate")
    out: dict[str, Any] = {"labels": labels, "seeds": len(curves)}
    for key in CURVE_KEYS:
        values = np.asarray([c[key] for c in curves], dtype=np.float64)
        out[f"{key}_mean"] = values.mean(axis=0).tolist()
        out[f"{key}_std"] = (values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(labels))).tolist()
    out["f1_per_seed"] = [list(c["f1"]) for c in curves]
    out["token_f1_per_seed"] = [list(c["token_f1"]) for c in curves]
    out["tokens_per_seed"] = [list(c["tokens_labelled"]) for c in curves]
    return out


def run_span_replay(texts: Sequence[str], spans: Sequence[Sequence[dict[str, Any]]], strategies: Sequence[str],
                    seeds: Sequence[int] = (0, 1, 2), **curve_args: Any) -> dict[str, dict[str, Any]]:
    """Every strategy (``"random"`` included if listed) over every seed, aggregated: {strategy: curves}."""
    return {name: aggregate_span_curves([run_span_curve(texts, spans, name, seed=s, **curve_args) for s in seeds])
            for name in strategies}


def metric_at_tokens(curve: dict[str, Any], tokens: int, metric: str = "f1") -> float | None:
    """The ``metric`` a curve had reached within ``tokens`` labelled tokens (its last round at or under the
    budget); for an aggregate, the mean over seeds of each seed's value. None if no round fits the budget."""
    if "tokens_per_seed" in curve:
        values = values_at_tokens(curve, tokens, metric)
        return None if any(v is None for v in values) else float(np.mean(values))
    return _at_tokens(curve["tokens_labelled"], curve[metric], tokens)


def values_at_tokens(curve: dict[str, Any], tokens: int, metric: str = "f1") -> list[float | None]:
    """Per seed of an aggregate, the ``metric`` reached within ``tokens`` labelled tokens (None: no round fits),
    so a token budget gets a spread over seeds as a document budget does."""
    return [_at_tokens(t, m, tokens) for t, m in zip(curve["tokens_per_seed"], curve[f"{metric}_per_seed"],
                                                      strict=True)]


def _at_tokens(spent: Sequence[int], values: Sequence[float], budget: int) -> float | None:
    fitting = [v for t, v in zip(spent, values, strict=True) if t <= budget]
    return float(fitting[-1]) if fitting else None


def area_differences(arm: dict[str, Any], control: dict[str, Any], metric: str = "f1",
                     axis: str = "documents") -> list[float | None]:
    """Per seed, the arm's mean ``metric`` over the labelling cost minus the control's (both aggregates of
    the same seeds, so seed ``s`` of each shares the split, the start and the test set: a paired figure).

    ``axis="documents"``: the normalised area (:func:`model.simulation.curve_area`) over the document
    grid both share. ``axis="tokens"``: each curve is read as ``metric`` against tokens labelled,
    linearly between rounds, over the token range both curves of that seed cover (from the shared
    start to the smaller final count) -- an arm that reads more per document is compared at equal
    reading, not at equal document count. None for a seed whose curves share no token range.
    """
    from model.simulation import curve_area

    if axis not in ("documents", "tokens"):
        raise ValueError(f"axis must be 'documents' or 'tokens', got {axis!r}")
    if list(arm["labels"]) != list(control["labels"]):
        raise ValueError("arm and control curves have different document grids")
    out: list[float | None] = []
    pairs = zip(arm[f"{metric}_per_seed"], control[f"{metric}_per_seed"], arm["tokens_per_seed"],
                control["tokens_per_seed"], strict=True)
    for mine, theirs, my_tokens, their_tokens in pairs:
        if axis == "documents":
            out.append(curve_area(arm["labels"], mine) - curve_area(arm["labels"], theirs))
            continue
        low, high = max(my_tokens[0], their_tokens[0]), min(my_tokens[-1], their_tokens[-1])
        if high <= low:
            out.append(None)
            continue
        points = np.unique(np.concatenate([[low, high], my_tokens, their_tokens]).astype(np.float64))
        points = points[(points >= low) & (points <= high)]
        out.append(curve_area(points, np.interp(points, my_tokens, mine))
                   - curve_area(points, np.interp(points, their_tokens, theirs)))
    return out


def full_pool_scores(texts: Sequence[str], spans: Sequence[Sequence[dict[str, Any]]], seed: int = 0,
                     test_size: float | int = 0.25, labels: Sequence[str] | None = None,
                     tagger_params: dict[str, Any] | None = None) -> dict[str, float]:
    """The ceiling of one seed's replay: a tagger trained on that seed's whole pool, scored on its test split.

    Same split and label set as :func:`run_span_curve` with that ``seed``; "documents to 90 % of the
    full-pool F1" is read against it. Returns ``f1``, ``token_f1``, ``precision``, ``recall``,
    ``fit_seconds`` and ``n_pool``.
    """
    names = list(labels) if labels is not None else sorted({s["label"] for doc in spans for s in doc})
    pool, test = split_documents(len(texts), test_size, seed)
    params = {**(tagger_params or {}), "labels": names, "random_state": seed * 1000}
    tagger, seconds = _fit(params, [texts[i] for i in pool], [list(spans[i]) for i in pool])
    test_texts = [texts[i] for i in test]
    figures = evaluate_spans([list(spans[i]) for i in test], tagger.predict(test_texts), texts=test_texts,
                             labels=names)
    return {**{key: float(figures[key]) for key in ("f1", "token_f1", "precision", "recall")},
            "fit_seconds": seconds, "n_pool": len(pool)}

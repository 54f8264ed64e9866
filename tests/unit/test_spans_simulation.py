"""Active-learning replay for spans (model.spans.simulation), at a toy size."""

import numpy as np
import pytest

from model.spans.simulation import (
    aggregate_span_curves,
    initial_documents,
    metric_at_tokens,
    run_span_curve,
    run_span_replay,
    split_documents,
)
from model.spans.synthetic import make_documents

SMALL = dict(initial=4, batch_size=4, budget=12, test_size=20, tagger_params={"max_iterations": 30})


@pytest.fixture(scope="module")
def corpus():
    return make_documents(60, seed=3)


def test_split_and_start_depend_on_the_seed_only(corpus):
    _, spans = corpus
    pool, test = split_documents(60, 20, seed=1)
    assert len(test) == 20 and not set(pool) & set(test)
    np.testing.assert_array_equal(split_documents(60, 20, seed=1)[1], test)
    assert not np.array_equal(split_documents(60, 20, seed=2)[1], test)
    first = initial_documents([spans[i] for i in pool], 4, seed=1)
    np.testing.assert_array_equal(first, initial_documents([spans[i] for i in pool], 4, seed=1))
    assert initial_documents([[], [], [{"start": 0, "end": 1, "label": "X"}]], 1, seed=0).tolist() == [2]
    with pytest.raises(ValueError):
        split_documents(10, 10, seed=0)


def test_replay_two_seeds(corpus):
    texts, spans = corpus
    result = run_span_replay(texts, spans, ["random", "least_confidence", "margin"], seeds=(0, 1), **SMALL)
    assert set(result) == {"random", "least_confidence", "margin"}
    for arm in result.values():
        assert arm["labels"] == [4, 8, 12] and arm["seeds"] == 2
        assert all(0.0 <= f <= 1.0 for f in arm["f1_mean"] + arm["token_f1_mean"])
        assert len(arm["f1_std"]) == 3 and len(arm["tokens_per_seed"]) == 2
        assert all(np.diff(tokens).min() > 0 for tokens in arm["tokens_per_seed"])
        assert all(t > 0 for t in arm["fit_seconds_mean"] + arm["predict_ms_per_doc_mean"])
    # every arm starts from the same labels, so the first round is the same tagger
    assert result["random"]["f1_per_seed"][0][0] == result["least_confidence"]["f1_per_seed"][0][0]
    # margin means least confidence for spans
    assert result["margin"]["f1_per_seed"] == result["least_confidence"]["f1_per_seed"]
    assert metric_at_tokens(result["random"], 10**9) == pytest.approx(result["random"]["f1_mean"][-1])
    assert metric_at_tokens(result["random"], 0) is None


def test_deterministic_per_seed(corpus):
    texts, spans = corpus
    a = run_span_curve(texts, spans, "token_entropy", seed=5, **SMALL)
    b = run_span_curve(texts, spans, "token_entropy", seed=5, **SMALL)
    for key in ("labels", "f1", "token_f1", "tokens_labelled", "spans_labelled"):
        assert a[key] == b[key]
    diverse = run_span_curve(texts, spans, "least_confidence", seed=5, queue="cluster", **SMALL)
    assert diverse["labels"] == a["labels"]
    with pytest.raises(ValueError):
        aggregate_span_curves([])

"""Span acquisition heuristics (model.spans.uncertainty)."""

import math

import numpy as np
import pytest

from model.spans.uncertainty import (
    DEFAULT_SPAN_STRATEGY,
    SPAN_STRATEGIES,
    SequencePosterior,
    get_span_strategy,
    span_strategy_name,
    token_cost,
)
from model.uncertainty import STRATEGIES


def _posterior(log_prob, entropy, n_tokens, chains=1):
    n_tokens = np.asarray(n_tokens)
    return SequencePosterior(np.asarray(log_prob, dtype=float), np.asarray(entropy, dtype=float), n_tokens,
                             n_tokens * chains)


SURE = _posterior([0.0, 0.0], [0.0, 0.0], [10, 0])  # a certain document, and an empty one
RANGE = _posterior([0.0, -0.1, -5.0, -800.0, -1e6], [0.0, 0.5, 3.0, 400.0, 1e5], [3, 3, 10, 500, 100_000])


@pytest.mark.parametrize("name", sorted(set(SPAN_STRATEGIES) - {"random"}))
def test_zero_means_sure_and_every_value_is_in_the_unit_interval(name):
    strategy = get_span_strategy(name)
    np.testing.assert_array_equal(strategy(SURE), [0.0, 0.0])
    u = strategy(RANGE)
    assert u.dtype == np.float64 and np.all((u >= 0) & (u <= 1)) and np.all(np.diff(u) >= 0)
    assert u[1] > 0


def test_random_is_in_range_and_seeded():
    a, b = get_span_strategy("random", random_state=3)(RANGE), get_span_strategy("random", random_state=3)(RANGE)
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= 0) & (a < 1))


def test_formulas():
    p = _posterior([math.log(0.5), math.log(0.25)], [1.0, 1.5], [1, 4])
    np.testing.assert_allclose(get_span_strategy("least_confidence")(p), [0.5, 0.75])
    np.testing.assert_allclose(get_span_strategy("mnlp")(p), [0.5, 1 - 0.25 ** 0.25])  # per token: 0.25 ** (1/4)
    np.testing.assert_allclose(get_span_strategy("token_entropy")(p), [0.5, 0.6])  # H / (H + 1)
    np.testing.assert_allclose(get_span_strategy("token_entropy_mean")(p), [1.0, 0.375])  # H / n_tokens
    two_chains = _posterior([math.log(0.25)], [0.0], [1], chains=2)  # per-label: two decisions per token
    np.testing.assert_allclose(get_span_strategy("mnlp")(two_chains), [0.5])


def test_total_entropy_keeps_ranking_long_documents():
    """The squashed total never rounds to 1, so very unsure long documents stay ordered."""
    u = get_span_strategy("token_entropy")(_posterior([-1.0] * 3, [40.0, 400.0, 4000.0], [50, 500, 5000]))
    assert np.all(np.diff(u) > 0) and u[-1] < 1.0


def test_classification_names_map_onto_span_heuristics():
    assert span_strategy_name("margin") == "least_confidence"
    assert span_strategy_name("entropy") == span_strategy_name("predictive_entropy") == "token_entropy"
    for sampled in ("bald", "vote_entropy", "kl_consensus", "variation_ratio", "mean_std", "mc_dropout", "auto"):
        assert span_strategy_name(sampled) == DEFAULT_SPAN_STRATEGY
    for name in SPAN_STRATEGIES:
        assert span_strategy_name(name) == name
    assert all(span_strategy_name(name) in SPAN_STRATEGIES for name in STRATEGIES)
    assert span_strategy_name(STRATEGIES["bald"]()) == DEFAULT_SPAN_STRATEGY  # an instance, by its name
    with pytest.raises(ValueError, match="least_confidence"):
        span_strategy_name("nonsense")


def test_token_cost():
    np.testing.assert_array_equal(token_cost(["Alice met Bob.", "", "東京へ"]), [4, 0, 3])

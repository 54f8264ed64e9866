"""The scoring kernel: one pass to labels/uncertainty/confidence, and a queue with a random stream."""

from __future__ import annotations

import numpy as np
import pytest

from model.estimators import make_estimator
from model.queue import place_at_random
from model.scoring import labels_from_proba, order, score, score_batches
from tests.support.corpus import CLASSES, LABELS, TEXTS


@pytest.fixture(scope="module")
def model():
    return make_estimator("margin", "text", CLASSES, False, random_state=0).fit(TEXTS, LABELS)


def test_labels_from_proba_single_and_multi_label() -> None:
    probs = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.55]])
    assert labels_from_proba(["a", "b", "c"], probs, multi_label=False) == [["b"], ["a"]]
    assert labels_from_proba(["a", "b", "c"], probs, multi_label=True) == [["b"], ["a", "c"]]
    with pytest.raises(ValueError, match="shape"):
        labels_from_proba(["a", "b"], probs, multi_label=False)


def test_score_is_one_pass_and_batches_join_to_the_same(model) -> None:
    whole = score(model, "margin", TEXTS, with_features=True)
    assert whole.probs.shape == (len(TEXTS), len(CLASSES)) and len(whole) == len(TEXTS)
    assert np.allclose(whole.confidence, 1 - whole.uncertainty)
    assert whole.labels == model.predict_labels(TEXTS)
    parts = score_batches(model, "margin", [TEXTS[:4], [], TEXTS[4:]], with_features=True)
    assert parts.labels == whole.labels and np.allclose(parts.probs, whole.probs)
    assert parts.features.shape == whole.features.shape
    assert len(score(model, "margin", [])) == 0


def test_order_needs_features_only_for_queues_that_use_them(model) -> None:
    scored = score(model, "margin", TEXTS)
    greedy = order("greedy", scored)
    assert np.all(np.diff(scored.uncertainty[greedy.order]) <= 1e-12)  # most uncertain first
    assert sorted(greedy.rank) == list(range(1, len(TEXTS) + 1))
    assert np.array_equal(np.argsort(greedy.scores, kind="stable"), greedy.order)  # Label Studio's sort
    with pytest.raises(ValueError, match="needs features"):
        order("cluster", scored)
    assert len(order("cluster", score(model, "margin", [])).order) == 0  # an empty pool is no error


def test_reserved_items_keep_out_of_the_strategy_and_land_at_random_positions(model) -> None:
    scored = score(model, "margin", TEXTS)
    reserved = np.zeros(len(TEXTS), dtype=bool)
    reserved[[0, 5, 9]] = True
    queued = order("greedy", scored, random_state=3, reserved=reserved)
    main = [i for i in queued.order if not reserved[i]]
    assert np.all(np.diff(scored.uncertainty[main]) <= 1e-12)  # the rest keep the strategy's order
    assert sorted(queued.order) == list(range(len(TEXTS)))


def test_place_at_random_positions_are_uniform_over_the_queue() -> None:
    main = np.arange(90)
    reserved = np.arange(90, 100)
    positions = []
    for seed in range(400):
        merged = place_at_random(main, reserved, seed)
        assert list(merged[np.isin(merged, main)]) == list(main)  # main order untouched
        positions.extend(np.flatnonzero(np.isin(merged, reserved)) / 99)
    assert abs(np.mean(positions) - 0.5) < 0.03  # not crowded at the front or the back
    assert abs(np.mean(np.array(positions) < 0.25) - 0.25) < 0.03

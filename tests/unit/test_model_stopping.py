import random

import numpy as np
import pytest

from model.stopping import StopRule, mean_normalised_uncertainty, prediction_agreement_kappa, stable_sample


def test_kappa_hand_value():
    # observed agreement 3/4; chance (1/2)(1/4) + (1/2)(3/4) = 1/2 -> kappa (3/4 - 1/2) / (1/2)
    assert prediction_agreement_kappa(["a", "a", "b", "b"], ["a", "b", "b", "b"]) == pytest.approx(0.5)


def test_kappa_identical_constant_and_empty():
    assert prediction_agreement_kappa(["a", "b", "a"], ["a", "b", "a"]) == 1.0
    assert prediction_agreement_kappa(["a"] * 5, ["a"] * 5) == 1.0  # 0 / 0 in the formula: full agreement
    assert prediction_agreement_kappa(["a"] * 5, ["b"] * 5) == 0.0
    assert prediction_agreement_kappa([], []) is None


def test_kappa_classes_are_checked_but_do_not_change_single_label_values():
    prev, cur = ["a", "a", "b", "b"], ["a", "b", "b", "b"]
    assert prediction_agreement_kappa(prev, cur, classes=["a", "b", "c"]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="'z'"):
        prediction_agreement_kappa(["a"], ["z"], classes=["a", "b"])
    with pytest.raises(ValueError, match="lengths"):
        prediction_agreement_kappa(["a"], [], classes=["a"])


def test_multi_label_kappa_over_flattened_indicators():
    prev = [["a"], ["a", "b"], []]
    cur = [["a"], ["b"], []]
    # cells over classes a, b, c: prev 1,0,0 / 1,1,0 / 0,0,0 ; cur 1,0,0 / 0,1,0 / 0,0,0
    flat_prev = [1, 0, 0, 1, 1, 0, 0, 0, 0]
    flat_cur = [1, 0, 0, 0, 1, 0, 0, 0, 0]
    p_o = 8 / 9
    p_e = (3 / 9) * (2 / 9) + (6 / 9) * (7 / 9)
    expected = (p_o - p_e) / (1 - p_e)
    assert prediction_agreement_kappa(prev, cur, classes=["a", "b", "c"], multi_label=True) == pytest.approx(expected)
    matrices = np.array(flat_prev).reshape(3, 3), np.array(flat_cur).reshape(3, 3)
    assert prediction_agreement_kappa(*matrices, multi_label=True) == pytest.approx(expected)
    # without classes only the occurring labels a, b are columns: a different value
    assert prediction_agreement_kappa(prev, cur, multi_label=True) != pytest.approx(expected)
    assert prediction_agreement_kappa([[], []], [[], []], classes=["a"], multi_label=True) == 1.0
    with pytest.raises(ValueError, match="lists"):
        prediction_agreement_kappa(["a"], ["a"], multi_label=True)


def test_stable_sample_is_deterministic_order_free_and_survives_labelling():
    ids = list(range(1000))
    sample = stable_sample(ids, 50)
    assert len(sample) == len(set(sample)) == 50
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert stable_sample(shuffled, 50) == sample
    # ten sampled tasks get labelled and leave the pool: the other 40 stay in the sample
    labelled = set(sample[:10])
    again = stable_sample([i for i in ids if i not in labelled], 50)
    assert set(sample[10:]) <= set(again)
    assert stable_sample(ids, 50, salt="project-2") != sample
    assert sorted(stable_sample(ids[:5], 10)) == ids[:5]
    assert stable_sample(["x", "x", "y"], 5) == stable_sample(["y", "x"], 5)
    assert stable_sample(ids, 0) == []
    with pytest.raises(ValueError, match="size"):
        stable_sample(ids, -1)


def test_mean_normalised_uncertainty():
    assert mean_normalised_uncertainty([0.2, 0.4, 0.9]) == pytest.approx(0.5)
    assert mean_normalised_uncertainty([]) is None
    with pytest.raises(ValueError, match="within"):
        mean_normalised_uncertainty([0.5, 1.2])


def test_stop_rule():
    rule = StopRule()
    assert (rule.threshold, rule.window) == (0.99, 3)
    assert not rule.suggested([])
    assert not rule.suggested([0.995, 0.999])  # not enough iterations yet
    assert rule.suggested([0.3, 0.8, 0.991, 0.995, 1.0])
    assert not rule.suggested([0.995, 0.999, 0.98, 0.999, 1.0])  # the dip is in the window
    assert not rule.suggested([0.995, None, 0.999, 1.0])
    assert rule.suggested([None, 0.995, 0.999, 1.0])
    assert StopRule(threshold=0.9, window=1).suggested([0.2, 0.9])
    for bad in ({"window": 0}, {"threshold": 1.5}, {"window": 2.0}):
        with pytest.raises(ValueError):
            StopRule(**bad)


def test_stop_rule_on_synthetic_iterations():
    """A model whose predictions on a fixed stop set change less and less between iterations."""
    rng = np.random.default_rng(0)
    pool = [f"task-{i}" for i in range(2000)]
    stop_set = stable_sample(pool, 400, salt="p1")
    truth = [rng.choice(["x", "y", "z"]) for _ in stop_set]
    wrong = {"x": "y", "y": "z", "z": "x"}
    # iteration i gets the first n_wrong[i] tasks of the stop set wrong: consecutive iterations
    # disagree on |n_wrong[i] - n_wrong[i - 1]| of the 400 tasks
    n_wrong = [200, 120, 60, 20, 4, 1, 0, 0, 0, 0]
    rule, kappas, previous, stopped_at = StopRule(), [], None, None
    for iteration, k in enumerate(n_wrong):
        current = [wrong[label] if i < k else label for i, label in enumerate(truth)]
        kappas.append(None if previous is None else prediction_agreement_kappa(previous, current))
        previous = current
        if stopped_at is None and rule.suggested(kappas):
            stopped_at = iteration
    assert kappas[0] is None and kappas[1] < 0.8
    assert kappas[5] < 0.99 <= kappas[6]  # 3 changed answers of 400 are too many, 1 is not
    assert stopped_at == 8  # three kappas in a row >= 0.99: iterations 6, 7, 8

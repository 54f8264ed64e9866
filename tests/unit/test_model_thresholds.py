import json

import numpy as np
import pytest

from model.thresholds import (
    RULES,
    ThresholdResult,
    candidate_sequence,
    coverage_at,
    precision_coverage_curve,
    precision_lower_bound,
    precision_threshold,
)

# Sorted by confidence; the two 0.8s are a tie (one right, one wrong).
CONFIDENCE = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5])
CORRECT = np.array([True, True, False, True, True, False])


def _ranked(correct: np.ndarray) -> np.ndarray:
    """Distinct decreasing confidences for rows already in rank order."""
    return np.linspace(0.999, 0.5, len(correct))


# --- the precision-coverage curve -------------------------------------------------------------


def test_curve_hand_values():
    thresholds, precision, coverage = precision_coverage_curve(CONFIDENCE[::-1], CORRECT[::-1])  # order is irrelevant
    np.testing.assert_allclose(thresholds, [0.9, 0.8, 0.7, 0.6, 0.5])
    # selected rows: 1, 3 (the whole tie), 4, 5, 6
    np.testing.assert_allclose(precision, [1.0, 2 / 3, 3 / 4, 4 / 5, 4 / 6])
    np.testing.assert_allclose(coverage, [1 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])


# --- the point rule (explicit opt-out) --------------------------------------------------------


@pytest.mark.parametrize(
    "target,threshold,precision,n_selected",
    [
        (0.8, 0.6, 0.8, 5),  # reached again below 0.8 and 0.7, which miss it: the lowest wins
        (0.75, 0.6, 0.8, 5),
        (0.81, 0.9, 1.0, 1),
        (1.0, 0.9, 1.0, 1),
        (0.6, 0.5, 4 / 6, 6),
    ],
)
def test_point_rule_takes_the_lowest_threshold_measuring_the_target(target, threshold, precision, n_selected):
    result = precision_threshold(CONFIDENCE, CORRECT, target, rule="point")
    assert (result.threshold, result.n_selected, result.n, result.reached) == (threshold, n_selected, 6, True)
    assert result.precision == pytest.approx(precision) and result.coverage == pytest.approx(n_selected / 6)
    assert result.rule == "point" and result.target == target and result.more_labels_estimate is None
    bound = precision_lower_bound(round(precision * n_selected), n_selected)
    assert result.precision_lower == pytest.approx(float(bound))


def test_point_rule_selects_a_tie_whole():
    # Taking only the correct one of the two 0.9s would reach 100 %; a threshold cannot split them.
    result = precision_threshold([0.9, 0.9, 0.5], [True, False, True], target=0.7, rule="point")
    assert not result.reached and result.threshold is None
    result = precision_threshold([0.9, 0.9, 0.5], [True, False, False], target=0.5, rule="point")
    assert (result.threshold, result.precision, result.n_selected) == (0.9, 0.5, 2)


def test_point_rule_edge_cases():
    everything = precision_threshold([0.4, 0.99, 0.7], [1, 1, 1], target=0.99, rule="point")
    assert (everything.threshold, everything.precision, everything.coverage) == (0.4, 1.0, 1.0)
    exact = precision_threshold(np.linspace(1.0, 0.1, 10), np.r_[np.ones(9, dtype=bool), False], 0.9, rule="point")
    assert exact.threshold == pytest.approx(0.1) and exact.precision == pytest.approx(0.9)  # equal reaches
    nothing = precision_threshold([0.9, 0.6, 0.3], [False, True, False], target=0.95, rule="point")
    assert not nothing.reached and nothing.coverage == 0.0 and nothing.more_labels_estimate is None


# --- the guaranteed rule (default) ------------------------------------------------------------


def test_default_is_the_guaranteed_rule_at_95_percent():
    correct = np.r_[np.ones(80, dtype=bool), np.arange(120) % 4 != 0]
    confidence = _ranked(correct)
    default = precision_threshold(confidence, correct, 0.9)
    assert default.rule == "guaranteed" and default.level == 0.95 and RULES[0] == "guaranteed"
    assert default == precision_threshold(confidence, correct, 0.9, confidence_level=0.95, rule="guaranteed")
    assert default.reached and default.precision_lower >= 0.9


def test_guaranteed_rule_refuses_the_threshold_the_point_rule_overpromises():
    # 100 right, then a stretch right 90 % of the time: the point rule walks deep into it, where 95 %
    # is measured on the selected rows but is far from certain.
    correct = np.r_[np.ones(100, dtype=bool), np.arange(100) % 10 != 0]
    confidence = _ranked(correct)
    point = precision_threshold(confidence, correct, 0.95, rule="point")
    sure = precision_threshold(confidence, correct, 0.95)
    assert point.reached and point.precision >= 0.95 and point.precision_lower < 0.95
    assert sure.reached and sure.precision_lower >= 0.95 and sure.threshold > point.threshold
    assert sure.n_selected < point.n_selected and sure.n == point.n == 200


def test_walk_stops_at_the_first_failure_even_if_a_lower_threshold_would_pass_again():
    # 59 right (the fewest that certify 95 % at 95 % confidence), one wrong, then 300 right.
    correct = np.r_[np.ones(59, dtype=bool), False, np.ones(300, dtype=bool)]
    confidence = _ranked(correct)
    result = precision_threshold(confidence, correct, 0.95, start="top", min_step=1)
    assert result.reached and result.n_selected == 59 and result.precision == 1.0
    assert result.threshold == confidence[58]
    # Every row together would pass on its own (359 / 360); testing it after a failure is not allowed.
    assert float(precision_lower_bound(359, 360)) >= 0.95
    assert candidate_sequence(confidence, 0.95, start="top", min_step=1)[0] == confidence[58]


def test_ties_move_together():
    # The wrong row shares the 59th row's confidence: the first candidate holds 60 rows, one wrong -> fails.
    correct = np.r_[np.ones(59, dtype=bool), False]
    confidence = _ranked(correct)
    tied = confidence.copy()
    tied[59] = tied[58]
    assert not precision_threshold(tied, correct, 0.95, start="top").reached
    apart = precision_threshold(confidence, correct, 0.95, start="top")
    assert apart.reached and apart.n_selected == 59


def test_too_few_rows_give_no_threshold_and_an_estimate_of_the_labels_needed():
    result = precision_threshold(np.linspace(0.99, 0.9, 20), np.ones(20, dtype=bool), 0.95)
    assert not result.reached and result.threshold is None and result.precision_lower is None
    assert result.coverage == 0.0 and result.n_selected == 0 and result.n == 20
    assert result.more_labels_estimate == 59 - 20  # 59 rows all right certify 95 %
    # Only the top half is right: certifying it takes twice the rows, since it is half of them.
    half = precision_threshold(np.linspace(0.99, 0.9, 20), np.arange(20) < 10, 0.95)
    assert half.more_labels_estimate == 2 * 59 - 20
    # No region measures above the target: more labels of this model will not help.
    hopeless = precision_threshold(np.linspace(0.99, 0.9, 40), np.arange(40) % 2 == 1, 0.95)
    assert not hopeless.reached and hopeless.more_labels_estimate is None


def test_a_perfect_target_cannot_be_certified():
    result = precision_threshold(np.linspace(1, 0.5, 1000), np.ones(1000, dtype=bool), 1.0)
    assert not result.reached and result.more_labels_estimate is None
    assert precision_threshold(np.linspace(1, 0.5, 1000), np.ones(1000, dtype=bool), 1.0, rule="point").reached


@pytest.mark.parametrize("seed", range(5))
def test_a_higher_target_never_gets_a_lower_threshold(seed):
    rng = np.random.default_rng(seed)
    confidence = rng.beta(4.0, 1.0, 800)
    correct = rng.random(800) < confidence
    targets = [0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.95]
    for kwargs in ({"start": "top", "min_step": 1}, {}):
        found = [precision_threshold(confidence, correct, t, **kwargs) for t in targets]
        assert sum(r.reached for r in found) >= 3  # not vacuous
        thresholds = [r.threshold if r.reached else np.inf for r in found]
        assert thresholds == sorted(thresholds), kwargs


def test_candidates_depend_on_the_confidences_only():
    rng = np.random.default_rng(0)
    confidence = np.round(rng.beta(5.0, 1.0, 500), 3)  # ties included
    sequence = candidate_sequence(confidence, 0.9)
    for _ in range(3):
        correct = rng.random(500) < confidence
        walked = precision_threshold(confidence, correct, 0.9)
        assert walked.threshold is None or walked.threshold in sequence
    assert np.all(np.diff(sequence) < 0)
    selected = np.array([(confidence >= t).sum() for t in sequence])
    assert selected[0] >= 29  # 0.9 at 95 % confidence: fewer than 29 rows cannot pass even all right
    assert float(precision_lower_bound(selected[0], selected[0])) >= 0.9
    assert np.all(np.diff(selected)[:-1] >= 5)  # thinned: 1 % of 500 rows; the last candidate always tested
    top = candidate_sequence(confidence, 0.9, start="top", min_step=1)
    assert (confidence >= top[0]).sum() >= 29 and len(top) >= len(sequence)


def test_the_guarantee_holds_on_simulated_validation_sets():
    # Calibrated scores: confidence c ~ Beta(a, 1), right with probability c. The true precision of
    # everything at or above t is E[c | c >= t] = a / (a + 1) * (1 - t**(a + 1)) / (1 - t**a).
    a, target, n, runs = 6.0, 0.9, 300, 400
    rng = np.random.default_rng(7)

    def true_precision(t: float) -> float:
        return a / (a + 1.0) * (1.0 - t ** (a + 1.0)) / (1.0 - t**a)

    misses = {"guaranteed": 0, "point": 0}
    reached = 0
    for _ in range(runs):
        confidence = rng.beta(a, 1.0, n)
        correct = rng.random(n) < confidence
        for rule in misses:
            result = precision_threshold(confidence, correct, target, rule=rule)
            misses[rule] += result.reached and true_precision(result.threshold) < target
            reached += rule == "guaranteed" and result.reached
    assert reached >= runs // 2  # the rule is not just refusing
    assert misses["guaranteed"] / runs <= 0.05 + 0.03  # 95 % confidence, plus Monte-Carlo slack
    assert misses["point"] / runs > 0.3  # the measured precision overpromises, so the check has teeth


# --- shared behaviour -------------------------------------------------------------------------


def test_result_is_json_ready():
    result = precision_threshold(_ranked(np.ones(100)), np.ones(100, dtype=bool), 0.95)
    document = result.as_dict()
    assert set(document) == {"target", "threshold", "precision_lower", "precision", "coverage", "n_selected", "n",
                             "rule", "level", "reached", "more_labels_estimate"}
    assert json.loads(json.dumps(document)) == document
    assert all(type(v) in (float, int, str, bool, type(None)) for v in document.values())
    empty = precision_threshold([], [], 0.9).as_dict()
    assert json.loads(json.dumps(empty)) == empty


def test_empty_input():
    for rule in RULES:
        assert precision_threshold([], [], target=0.9, rule=rule) == ThresholdResult(
            target=0.9, threshold=None, precision_lower=None, precision=None, coverage=0.0, n_selected=0, n=0,
            rule=rule, level=0.95, reached=False, more_labels_estimate=None,
        )
    thresholds, precision, coverage = precision_coverage_curve([], [])
    assert thresholds.size == precision.size == coverage.size == 0
    assert candidate_sequence([], 0.9).size == 0


def test_coverage_at_applies_the_threshold_to_a_pool():
    pool = np.array([0.95, 0.6, 0.6, 0.2])
    assert coverage_at(0.6, pool) == 0.75  # ties at the threshold are taken
    assert coverage_at(0.96, pool) == 0.0
    assert coverage_at(None, pool) == 0.0
    assert coverage_at(0.5, []) == 0.0
    chosen = precision_threshold(CONFIDENCE, CORRECT, 0.8, rule="point")
    assert coverage_at(chosen.threshold, CONFIDENCE) == chosen.coverage


def test_validation():
    for target in (0.0, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match="target"):
            precision_threshold(CONFIDENCE, CORRECT, target)
    with pytest.raises(ValueError, match="equal length"):
        precision_threshold([0.5, 0.6], [True], 0.9)
    with pytest.raises(ValueError, match="booleans"):
        precision_threshold([0.5], [2], 0.9)
    with pytest.raises(ValueError, match="NaN"):
        precision_threshold([np.nan], [1], 0.9)
    with pytest.raises(ValueError, match="1-D"):
        coverage_at(0.5, np.ones((2, 2)))
    for level in (0.0, 1.0, True):
        with pytest.raises(ValueError, match="confidence_level"):
            precision_threshold(CONFIDENCE, CORRECT, 0.9, confidence_level=level)
    with pytest.raises(ValueError, match="rule"):
        precision_threshold(CONFIDENCE, CORRECT, 0.9, rule="lower95")
    with pytest.raises(ValueError, match="start"):
        precision_threshold(CONFIDENCE, CORRECT, 0.9, start="middle")
    for step in (0, 1.5, True):
        with pytest.raises(ValueError, match="min_step"):
            precision_threshold(CONFIDENCE, CORRECT, 0.9, min_step=step)


def test_precision_lower_bound_is_the_clopper_pearson_bound():
    # All n correct: the one-sided bound solves p**n = 1 - level.
    np.testing.assert_allclose(precision_lower_bound([10], [10], 0.95), [0.05 ** (1 / 10)])
    # 0 correct (or nothing selected) -> 0; more evidence -> a tighter bound at the same precision.
    assert precision_lower_bound([0], [5])[0] == 0.0 and precision_lower_bound([0], [0])[0] == 0.0
    small, large = precision_lower_bound([9, 900], [10, 1000])
    assert small < large < 0.9
    from scipy.stats import beta

    assert float(precision_lower_bound(93, 100, 0.9)) == pytest.approx(beta.ppf(0.1, 93, 8))

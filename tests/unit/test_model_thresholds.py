import json

import numpy as np
import pytest

from model.thresholds import ThresholdResult, coverage_at, precision_coverage_curve, precision_threshold

# Sorted by confidence; the two 0.8s are a tie (one right, one wrong).
CONFIDENCE = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5])
CORRECT = np.array([True, True, False, True, True, False])


def test_curve_hand_values():
    thresholds, precision, coverage = precision_coverage_curve(CONFIDENCE[::-1], CORRECT[::-1])  # order is irrelevant
    np.testing.assert_allclose(thresholds, [0.9, 0.8, 0.7, 0.6, 0.5])
    # selected rows: 1, 3 (the whole tie), 4, 5, 6
    np.testing.assert_allclose(precision, [1.0, 2 / 3, 3 / 4, 4 / 5, 4 / 6])
    np.testing.assert_allclose(coverage, [1 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])


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
def test_lowest_threshold_reaching_the_target(target, threshold, precision, n_selected):
    result = precision_threshold(CONFIDENCE, CORRECT, target)
    assert result == ThresholdResult(
        threshold=threshold,
        precision=pytest.approx(precision),
        coverage=pytest.approx(n_selected / 6),
        n_selected=n_selected,
        n=6,
        reached=True,
    )


def test_a_tie_is_selected_whole():
    # Taking only the correct one of the two 0.9s would reach 100 %; a threshold cannot split them.
    result = precision_threshold([0.9, 0.9, 0.5], [True, False, True], target=0.7)
    assert not result.reached and result.threshold is None
    result = precision_threshold([0.9, 0.9, 0.5], [True, False, False], target=0.5)
    assert (result.threshold, result.precision, result.n_selected) == (0.9, 0.5, 2)


def test_no_threshold_reaches_the_target():
    result = precision_threshold([0.9, 0.6, 0.3], [False, True, False], target=0.95)
    assert result == ThresholdResult(threshold=None, precision=None, coverage=0.0, n_selected=0, n=3, reached=False)
    json.dumps(result.as_dict())


def test_all_correct_selects_everything():
    result = precision_threshold([0.4, 0.99, 0.7], [1, 1, 1], target=0.99)
    assert result == ThresholdResult(threshold=0.4, precision=1.0, coverage=1.0, n_selected=3, n=3, reached=True)


def test_exact_target_counts_as_reached():
    confidence = np.linspace(1.0, 0.1, 10)
    correct = np.r_[np.ones(9, dtype=bool), False]
    result = precision_threshold(confidence, correct, target=0.9)
    assert result.threshold == pytest.approx(0.1) and result.precision == pytest.approx(0.9) and result.coverage == 1.0


def test_empty_input():
    assert precision_threshold([], [], target=0.9) == ThresholdResult(
        threshold=None, precision=None, coverage=0.0, n_selected=0, n=0, reached=False
    )
    thresholds, precision, coverage = precision_coverage_curve([], [])
    assert thresholds.size == precision.size == coverage.size == 0


def test_coverage_at_applies_the_threshold_to_a_pool():
    pool = np.array([0.95, 0.6, 0.6, 0.2])
    assert coverage_at(0.6, pool) == 0.75  # ties at the threshold are taken
    assert coverage_at(0.96, pool) == 0.0
    assert coverage_at(None, pool) == 0.0
    assert coverage_at(0.5, []) == 0.0
    chosen = precision_threshold(CONFIDENCE, CORRECT, 0.8)
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


def test_precision_lower_bound_is_the_clopper_pearson_bound() -> None:
    from model.thresholds import precision_lower_bound

    # All n correct: the one-sided bound solves p**n = 1 - level.
    np.testing.assert_allclose(precision_lower_bound([10], [10], 0.95), [0.05 ** (1 / 10)])
    # 0 correct (or nothing selected) -> 0; more evidence -> a tighter bound at the same precision.
    assert precision_lower_bound([0], [5])[0] == 0.0 and precision_lower_bound([0], [0])[0] == 0.0
    small, large = precision_lower_bound([9, 900], [10, 1000])
    assert small < large < 0.9


def test_confidence_level_demands_evidence_before_auto_labelling() -> None:
    from model.thresholds import precision_threshold

    confidence = np.linspace(1.0, 0.5, 100)
    correct = np.ones(100, dtype=bool)
    correct[[60, 80]] = False
    point = precision_threshold(confidence, correct, 0.95)
    assert point.threshold == confidence[-1] and point.n_selected == 100  # 98 % measured over all rows
    sure = precision_threshold(confidence, correct, 0.95, confidence_level=0.95)
    # The 95 % lower bound of 60/60 correct is 0.951 >= 0.95; adding rows 61.. with an error drops it below.
    assert sure.reached and sure.n_selected == 60 and sure.precision == 1.0
    assert sure.precision_lower is not None and sure.precision_lower >= 0.95
    assert not precision_threshold(confidence[:20], correct[:20], 0.99, confidence_level=0.95).reached
    with pytest.raises(ValueError, match="confidence_level"):
        precision_threshold(confidence, correct, 0.95, confidence_level=1.0)

"""The control-stream comparison kernel (model/control.py): active vs random at equal label counts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from model.control import NotComparable, compare_streams, curve_sizes, labels_needed


def blobs(n: int, seed: int, shift: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Two well-separated Gaussian classes in 2-D: a linear model learns them from a few dozen labels."""
    rng = np.random.default_rng(seed)
    y = np.array(["a", "b"] * (n // 2))
    x = rng.normal(size=(n, 2)) + np.where(y == "a", -shift, shift)[:, None]
    return x, y


def judge_on(val_x: np.ndarray, val_y: np.ndarray):
    return lambda est: est.predict(val_x) == val_y


def make() -> LogisticRegression:
    return LogisticRegression()


def test_labels_needed_interpolates_and_flags_bounds() -> None:
    sizes, acc = [10, 20, 40], [0.6, 0.7, 0.9]
    assert labels_needed(sizes, acc, 0.8) == (pytest.approx(30.0), "=")
    assert labels_needed(sizes, acc, 0.7) == (pytest.approx(20.0), "=")
    assert labels_needed(sizes, acc, 0.5) == (10.0, "<=")  # the fewest labels tried already reach it
    assert labels_needed(sizes, acc, 0.95) == (40.0, ">")  # never reached: a lower bound, not extrapolated
    assert labels_needed([10, 20, 30], [0.5, 0.9, 0.8], 0.85) == (pytest.approx(18.75), "=")  # first crossing


def test_curve_sizes_are_nested_prefixes_ending_at_every_control_label_and_hold_n() -> None:
    assert curve_sizes(40, 40) == [10, 20, 30, 40]
    assert curve_sizes(40, 25) == [10, 20, 25, 30, 40]
    assert curve_sizes(10, 10, points=4) == [3, 5, 8, 10]


def test_clearly_better_active_labels_give_a_positive_gap_whose_interval_excludes_zero() -> None:
    x, y = blobs(120, seed=1)
    val_x, val_y = blobs(200, seed=2)
    noisy = y.copy()
    control = list(range(60))
    noisy[:60] = np.random.default_rng(3).permutation(noisy[:60])  # the random side's labels carry no signal
    result = compare_streams(make, x, noisy, control, list(range(60, 120)), judge_on(val_x, val_y), seed=0)
    assert result.n == 60 and result.n_control == 60 and result.n_active_total == 60
    assert result.accuracy_active > 0.9 and result.gap > 0.2
    assert 0 < result.gap_low <= result.gap <= result.gap_high
    # No prefix of the random curve reaches the active accuracy: "more than 60 random labels", flagged.
    assert result.bound == ">" and result.needed == 60 and result.needed_high_open
    out = result.as_json()
    assert out["lower_bound"] is True and out["labels_ratio"] == 1.0
    assert [n for n, _ in out["random_curve"]] == [15, 30, 45, 60]


def test_identical_labels_give_no_gap_and_an_interval_holding_zero() -> None:
    x, y = blobs(60, seed=4)
    val_x, val_y = blobs(200, seed=5)
    twice_x, twice_y = np.vstack([x, x]), np.concatenate([y, y])  # the active side is the same labels again
    result = compare_streams(make, twice_x, twice_y, list(range(60)), list(range(60, 120)),
                             judge_on(val_x, val_y), seed=0)
    assert result.gap == 0 and result.gap_low == 0 == result.gap_high
    assert result.needed <= result.n and result.bound != ">"


def test_labels_from_one_distribution_give_an_interval_around_zero() -> None:
    x, y = blobs(200, seed=6, shift=0.6)  # overlapping classes: accuracy well below 1, so there is noise
    val_x, val_y = blobs(300, seed=7, shift=0.6)
    order = np.random.default_rng(8).permutation(200).tolist()  # both sides: random draws of the same data
    result = compare_streams(make, x, y, order[:100], order[100:], judge_on(val_x, val_y), seed=0)
    assert result.gap_low <= 0 <= result.gap_high
    assert result.gap_high - result.gap_low < 0.2
    assert result.needed_low <= result.needed <= result.needed_high


def test_the_interval_is_reproducible_for_a_seed() -> None:
    x, y = blobs(80, seed=8, shift=0.8)
    val_x, val_y = blobs(100, seed=9, shift=0.8)
    args = (make, x, y, list(range(40)), list(range(40, 80)), judge_on(val_x, val_y))
    first, again = compare_streams(*args, seed=3), compare_streams(*args, seed=3)
    assert (first.gap_low, first.gap_high, first.needed_low) == (again.gap_low, again.gap_high, again.needed_low)


class Recording:
    """An estimator that remembers what it was fitted on (and predicts the majority class)."""

    fits: list[list[int]] = []

    def fit(self, x: list[Any], y: list[Any]) -> Recording:
        Recording.fits.append([int(row[0]) for row in x])
        values, counts = np.unique(y, return_counts=True)
        self.majority_ = values[counts.argmax()]
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.majority_)


def test_the_shadow_models_see_control_labels_only_and_the_active_one_its_first_n() -> None:
    Recording.fits = []
    x = np.arange(50)[:, None]  # each row holds its own index: a fit's rows are readable from its inputs
    y = np.array(["a", "b"] * 25)
    control = [9, 3, 41, 17, 0, 22, 35, 5, 12, 48, 27, 30]  # labelling order, not index order
    active = [i for i in range(50) if i not in control]
    compare_streams(Recording, x, y, control, active, judge_on(x[:10], y[:10]), n_boot=50)
    first, *shadows = Recording.fits
    assert first == active[:12]  # the equal-count active model: its first 12 labels, in order
    assert shadows and all(fit == control[: len(fit)] for fit in shadows)  # nested prefixes of the control stream
    assert shadows[-1] == control


@pytest.mark.parametrize(
    ("control", "active", "reason"),
    [
        (list(range(9)), list(range(20, 40)), "only 9 control-stream label(s)"),
        (list(range(12)), list(range(20, 25)), "only 5 active label(s)"),
        (list(range(0, 24, 2)), list(range(20, 40)), "single class"),
    ],
)
def test_too_little_to_compare_says_why(control: list[int], active: list[int], reason: str) -> None:
    x, y = blobs(40, seed=10)
    with pytest.raises(NotComparable, match=reason.replace("(", r"\(").replace(")", r"\)")):
        compare_streams(make, x, y, control, active, judge_on(x, y))


def test_a_failing_curve_prefix_is_left_out_but_the_equal_count_fits_must_work() -> None:
    x, y = blobs(60, seed=11)

    class FailsOnSmallFits(LogisticRegression):
        def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Any:
            if len(X) < 20:
                raise ValueError("too few rows for this model")
            return super().fit(X, y)

    result = compare_streams(FailsOnSmallFits, x, y, list(range(30)), list(range(30, 60)), judge_on(x, y), seed=0)
    assert [n for n, _ in result.random_curve] == [23, 30] and len(result.fit_failures) == 2
    with pytest.raises(ValueError, match="too few rows"):
        compare_streams(FailsOnSmallFits, x, y, list(range(12)), list(range(30, 60)), judge_on(x, y))

import numpy as np
import pytest

from model.difficulty import (
    DEFAULT_THRESHOLDS,
    DifficultyThresholds,
    bucket,
    bucket_counts,
    fit_thresholds,
)


def test_bucket_defaults_and_boundaries():
    u = np.array([0.0, 0.19, 0.2, 0.4, 0.6, 0.61, 1.0])
    out = bucket(u)
    assert out.dtype == object
    assert out.tolist() == ["easy", "easy", "medium", "medium", "medium", "hard", "hard"]


def test_bucket_custom_thresholds_and_shape():
    out = bucket([[0.1, 0.5], [0.3, 0.9]], easy_below=0.3, hard_above=0.3)
    assert out.tolist() == [["easy", "hard"], ["medium", "hard"]]
    assert bucket(np.array([])).shape == (0,)


@pytest.mark.parametrize("easy,hard", [(-0.1, 0.5), (0.7, 0.6), (0.2, 1.1)])
def test_bucket_rejects_bad_thresholds(easy, hard):
    with pytest.raises(ValueError, match="easy_below"):
        bucket([0.5], easy_below=easy, hard_above=hard)


def test_bucket_rejects_nan():
    with pytest.raises(ValueError):
        bucket([0.1, float("nan")])


# --- thresholds from the validation split -------------------------------------------------------


def _groups(*groups: tuple[float, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(u, n_rows, n_wrong) groups -> (uncertainty, correct) arrays."""
    u = np.concatenate([np.full(n, value) for value, n, _ in groups])
    correct = np.concatenate([np.arange(n) >= wrong for _, n, wrong in groups])
    return u, correct


def test_fit_thresholds_step_error():
    # Deterministic: right exactly when u < 0.5. The isotonic fit is 0 up to u = 0.45 (the last
    # validation point below 0.5) and 1 from u = 0.5, linear in between, so it crosses
    # 5 % at 0.45 + 0.05 * 0.05 and 30 % at 0.45 + 0.30 * 0.05.
    u = np.round(np.linspace(0.0, 1.0, 21), 10)
    t = fit_thresholds(u, u < 0.5)
    assert t.source == "validation"
    assert t.easy_below == pytest.approx(0.4525)
    assert t.hard_above == pytest.approx(0.465)
    assert t.bucket(u).tolist() == ["easy"] * 10 + ["hard"] * 11


def test_fit_thresholds_graded_error():
    # Error rates 0, 10 %, 40 %, 80 % at u = 0.2, 0.4, 0.6, 0.8 (already monotone, 20 rows each).
    u, correct = _groups((0.2, 20, 0), (0.4, 20, 2), (0.6, 20, 8), (0.8, 20, 16))
    t = fit_thresholds(u, correct)
    assert t.easy_below == pytest.approx(0.3)  # 0.2 + (0.05 - 0) / (0.1 - 0) * 0.2
    assert t.hard_above == pytest.approx(0.4 + 0.2 / 0.3 * 0.2)  # 30 % between 0.4 (10 %) and 0.6 (40 %)
    assert t.source == "validation"


def test_fit_thresholds_pools_non_monotone_rates():
    # 20 % wrong at u = 0.2 but 0 % at 0.4 is noise: isotonic pools them to 10 % each, so nothing
    # is below 5 % (easy_below = 0) and 30 % is crossed halfway from 0.4 (10 %) to 0.6 (50 %).
    u, correct = _groups((0.2, 20, 4), (0.4, 20, 0), (0.6, 20, 10))
    t = fit_thresholds(u, correct)
    assert t.easy_below == 0.0
    assert t.hard_above == pytest.approx(0.5)


def test_fit_thresholds_flat_error_rates():
    everything_hard = fit_thresholds(*_groups((0.2, 20, 10), (0.8, 20, 10)))
    assert (everything_hard.easy_below, everything_hard.hard_above) == (0.0, 0.0)
    everything_easy = fit_thresholds(*_groups((0.2, 20, 0), (0.8, 50, 1)))  # 2 % at most
    assert (everything_easy.easy_below, everything_easy.hard_above) == (1.0, 1.0)
    assert everything_easy.bucket([0.0, 0.99]).tolist() == ["easy", "easy"]


def test_fit_thresholds_falls_back_to_defaults():
    u = np.linspace(0, 1, 19)
    assert fit_thresholds(u, u < 0.5) == DEFAULT_THRESHOLDS  # 19 < min_samples
    assert fit_thresholds(u, u < 0.5, min_samples=10).source == "validation"
    u = np.linspace(0, 1, 50)
    assert fit_thresholds(u, np.ones(50, dtype=bool)) == DEFAULT_THRESHOLDS  # never wrong
    assert fit_thresholds(u, np.zeros(50, dtype=int)) == DEFAULT_THRESHOLDS  # always wrong
    assert fit_thresholds(np.array([]), np.array([], dtype=bool)) == DEFAULT_THRESHOLDS
    assert (DEFAULT_THRESHOLDS.easy_below, DEFAULT_THRESHOLDS.hard_above, DEFAULT_THRESHOLDS.source) == (
        0.2,
        0.6,
        "default",
    )


@pytest.mark.parametrize("seed", range(20))
def test_fit_thresholds_invariants_on_noisy_data(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    u = rng.random(n)
    correct = rng.random(n) > u * rng.random()  # error grows with u, with noise
    correct[:2] = [True, False]  # both outcomes present
    hard, easy = sorted(rng.random(2))[::-1]
    t = fit_thresholds(u, correct, hard_error=hard, easy_error=easy)
    assert t.source == "validation"
    assert 0.0 <= t.easy_below <= t.hard_above <= 1.0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"hard_error": 0.1, "easy_error": 0.2}, "easy_error"),
        ({"hard_error": 1.5}, "hard_error"),
        ({"min_samples": 0}, "min_samples"),
    ],
)
def test_fit_thresholds_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_thresholds(np.linspace(0, 1, 30), np.arange(30) % 2 == 0, **kwargs)


@pytest.mark.parametrize(
    "u,correct",
    [
        (np.array([0.1, 0.2]), np.array([True])),
        (np.array([[0.1, 0.2]]), np.array([[True, False]])),
        (np.array([0.1, np.nan]), np.array([True, False])),
        (np.array([0.1, 1.3]), np.array([True, False])),
        (np.array([0.1, 0.2]), np.array([1, 2])),
    ],
)
def test_fit_thresholds_rejects_bad_inputs(u, correct):
    with pytest.raises(ValueError):
        fit_thresholds(u, correct)


def test_difficulty_thresholds_validate():
    with pytest.raises(ValueError, match="easy_below"):
        DifficultyThresholds(0.7, 0.6, "validation")
    with pytest.raises(ValueError, match="source"):
        DifficultyThresholds(0.2, 0.6, "guess")
    t = DifficultyThresholds(0.3, 0.3, "validation")
    assert t.bucket([0.1, 0.3, 0.5]).tolist() == ["easy", "medium", "hard"]
    with pytest.raises(AttributeError):
        t.easy_below = 0.1  # type: ignore[misc]


def test_bucket_counts():
    assert bucket_counts(bucket(np.array([0.0, 0.1, 0.4, 0.9]))) == {"easy": 2, "medium": 1, "hard": 1}
    assert bucket_counts(["hard"]) == {"easy": 0, "medium": 0, "hard": 1}
    assert list(bucket_counts([])) == ["easy", "medium", "hard"]
    assert bucket_counts(bucket([[0.1, 0.5], [0.3, 0.9]])) == {"easy": 1, "medium": 2, "hard": 1}
    with pytest.raises(ValueError, match="unknown difficulty label"):
        bucket_counts(["easy", "trivial"])

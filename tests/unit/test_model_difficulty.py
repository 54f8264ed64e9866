import numpy as np
import pytest

from model.difficulty import bucket


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

import math

import numpy as np
import pytest

from model.uncertainty import (
    DEFAULT_STRATEGY,
    STRATEGIES,
    AcquisitionFunction,
    Entropy,
    LeastConfidence,
    Margin,
    confidence_score,
    get_strategy,
)

PROBS = np.array(
    [
        [1.0, 0.0, 0.0],  # certain
        [1 / 3, 1 / 3, 1 / 3],  # uniform
        [0.5, 0.5, 0.0],  # torn between two
        [0.6, 0.3, 0.1],
    ]
)


def test_least_confidence_hand_values():
    # (1 - max p) / (1 - 1/3)
    expected = [0.0, 1.0, 0.5 / (2 / 3), 0.4 / (2 / 3)]
    np.testing.assert_allclose(LeastConfidence()(PROBS), expected)


def test_margin_hand_values():
    expected = [0.0, 1.0, 1.0, 1 - (0.6 - 0.3)]
    np.testing.assert_allclose(Margin()(PROBS), expected)


def test_entropy_hand_values():
    h4 = -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1)) / math.log(3)
    expected = [0.0, 1.0, math.log(2) / math.log(3), h4]
    np.testing.assert_allclose(Entropy()(PROBS), expected)


@pytest.mark.parametrize("cls", [LeastConfidence, Margin, Entropy])
def test_two_class_hand_values(cls):
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.9, 0.1]])
    u = cls()(probs)
    assert u[0] == pytest.approx(1.0)
    assert u[1] == pytest.approx(0.0)
    if cls is Entropy:
        assert u[2] == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2))
    else:  # LC and margin coincide for two classes: 1 - |p1 - p0|
        assert u[2] == pytest.approx(0.2)


@pytest.mark.parametrize("cls", [LeastConfidence, Margin, Entropy])
def test_single_class_and_empty_give_zeros(cls):
    np.testing.assert_array_equal(cls()(np.ones((3, 1))), np.zeros(3))
    out = cls()(np.zeros((0, 4)))
    assert out.shape == (0,)


def test_multi_label_averages_binary_scores():
    probs = np.array([[0.5, 1.0], [0.9, 0.2], [0.0, 1.0]])
    # label-wise binary LC = margin = 1 - |2p - 1|
    np.testing.assert_allclose(LeastConfidence()(probs, multi_label=True), [0.5, 0.3, 0.0])
    np.testing.assert_allclose(Margin()(probs, multi_label=True), [0.5, 0.3, 0.0])

    def h(p):
        return -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)

    np.testing.assert_allclose(Entropy()(probs, multi_label=True), [0.5, (h(0.9) + h(0.2)) / 2, 0.0])


def test_multi_label_single_label_column_is_scored_not_zeroed():
    # One label is still a two-class (yes/no) problem.
    np.testing.assert_allclose(Entropy()(np.array([[0.5]]), multi_label=True), [1.0])
    np.testing.assert_array_equal(Margin()(np.zeros((2, 0)), multi_label=True), [0.0, 0.0])


@pytest.mark.parametrize("cls", [LeastConfidence, Margin, Entropy])
def test_outputs_in_unit_interval(cls):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5) * 0.3, size=200)
    u = cls()(probs)
    assert u.shape == (200,) and u.dtype == np.float64
    assert u.min() >= 0.0 and u.max() <= 1.0
    m = cls()(rng.random((50, 4)), multi_label=True)
    assert m.min() >= 0.0 and m.max() <= 1.0


@pytest.mark.parametrize(
    "bad", [np.array([0.5, 0.5]), np.array([[0.5, np.nan]]), np.array([[1.5, -0.5]]), np.ones((2, 2, 2))]
)
def test_rejects_invalid_probabilities(bad):
    with pytest.raises(ValueError):
        Margin()(bad)


def test_rounding_noise_is_tolerated():
    u = LeastConfidence()(np.array([[1.0 + 1e-12, -1e-12]]))
    assert u[0] == 0.0


def test_registry_and_default():
    assert set(STRATEGIES) == {"least_confidence", "margin", "entropy"}
    assert DEFAULT_STRATEGY == "margin"
    for name, cls in STRATEGIES.items():
        inst = get_strategy(name)
        assert isinstance(inst, cls) and isinstance(inst, AcquisitionFunction)
        assert inst.name == name
    assert isinstance(get_strategy(), Margin)
    with pytest.raises(ValueError, match="entropy, least_confidence, margin"):
        get_strategy("bald")


def test_sampled_contract_extension_point():
    # Issue #3 shape: a function over (T, N, C) samples plugs in with the same call contract.
    class MeanEntropy(AcquisitionFunction):
        name = "mean_entropy"
        input_ndim = 3

        def score(self, probs):
            return Entropy().score(probs.mean(axis=0))

    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # T=2, N=1, C=2: the members disagree
    np.testing.assert_allclose(MeanEntropy()(samples), [1.0])
    np.testing.assert_allclose(MeanEntropy()(samples[..., :1], multi_label=True), [1.0])
    with pytest.raises(ValueError):
        MeanEntropy()(samples[0])


def test_confidence_score():
    np.testing.assert_allclose(confidence_score(np.array([0.0, 0.25, 1.0])), [1.0, 0.75, 0.0])
    np.testing.assert_allclose(confidence_score(np.array([-0.1, 1.2])), [1.0, 0.0])
    assert float(confidence_score(0.4)) == pytest.approx(0.6)

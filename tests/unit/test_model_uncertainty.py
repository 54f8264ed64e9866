import math

import numpy as np
import pytest

from model.uncertainty import (
    BALD,
    DEFAULT_STRATEGY,
    STRATEGIES,
    AcquisitionFunction,
    Entropy,
    KLToConsensus,
    LeastConfidence,
    Margin,
    MeanStd,
    PredictiveEntropy,
    VariationRatio,
    VoteEntropy,
    confidence_score,
    get_strategy,
    uncertainty_for,
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
    assert set(STRATEGIES) == {
        "least_confidence",
        "margin",
        "entropy",
        "bald",
        "predictive_entropy",
        "variation_ratio",
        "mean_std",
        "vote_entropy",
        "kl_consensus",
    }
    assert DEFAULT_STRATEGY == "margin"
    for name, cls in STRATEGIES.items():
        inst = get_strategy(name)
        assert isinstance(inst, cls) and isinstance(inst, AcquisitionFunction)
        assert inst.name == name
    assert isinstance(get_strategy(), Margin)
    with pytest.raises(ValueError, match="bald, entropy, kl_consensus, least_confidence, margin"):
        get_strategy("nope")


def test_strategy_model_kinds():
    kinds = {name: (cls.model, cls.input_ndim) for name, cls in STRATEGIES.items()}
    assert kinds == {
        "least_confidence": ("logreg", 2),
        "margin": ("logreg", 2),
        "entropy": ("logreg", 2),
        "bald": ("mlp", 3),
        "predictive_entropy": ("mlp", 3),
        "variation_ratio": ("mlp", 3),
        "mean_std": ("mlp", 3),
        "vote_entropy": ("committee", 3),
        "kl_consensus": ("committee", 3),
    }


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


# --------------------------------------------------------------- sampled (T, N, C) functions

SAMPLED = [BALD, PredictiveEntropy, VariationRatio, MeanStd, VoteEntropy, KLToConsensus]


def _h(*p):
    """Entropy in nats of the given probabilities (0 log 0 = 0)."""
    return -sum(q * math.log(q) for q in p if q > 0)


def test_identical_samples_have_no_disagreement():
    # T=3 identical samples of one soft distribution: nothing but predictive entropy is > 0.
    samples = np.tile([[[0.6, 0.3, 0.1]]], (3, 1, 1))
    assert BALD()(samples)[0] == pytest.approx(0.0, abs=1e-12)
    assert PredictiveEntropy()(samples)[0] == pytest.approx(_h(0.6, 0.3, 0.1) / math.log(3))
    assert VariationRatio()(samples)[0] == 0.0  # unanimous votes
    assert MeanStd()(samples)[0] == pytest.approx(0.0, abs=1e-12)
    assert VoteEntropy()(samples)[0] == 0.0
    assert KLToConsensus()(samples)[0] == pytest.approx(0.0, abs=1e-12)


def test_two_disagreeing_one_hot_samples_score_one_everywhere():
    samples = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # T=2, N=1, C=2
    for cls in SAMPLED:
        assert cls()(samples)[0] == pytest.approx(1.0), cls.name
    assert KLToConsensus("max")(samples)[0] == pytest.approx(1.0)


def test_four_one_hot_votes_over_three_classes():
    # Votes 0, 0, 1, 2: mean p = [1/2, 1/4, 1/4], every sample certain.
    samples = np.eye(3)[[0, 0, 1, 2]][:, np.newaxis, :]  # (4, 1, 3)
    h_mean = _h(0.5, 0.25, 0.25)  # = 1.5 log 2
    # BALD = H(mean) - mean H = H(mean); bound log(min(T=4, C=3)) = log 3
    assert BALD()(samples)[0] == pytest.approx(h_mean / math.log(3))
    assert PredictiveEntropy()(samples)[0] == pytest.approx(h_mean / math.log(3))
    # mode share 2/4 -> 1 - 1/2 = 1/2; the most even split of 4 votes over 3 classes is 2/1/1,
    # whose variation ratio is also 1/2 -> normalised 1
    assert VariationRatio()(samples)[0] == pytest.approx(1.0)
    # vote shares (1/2, 1/4, 1/4) are that most even split too -> 1
    assert VoteEntropy()(samples)[0] == pytest.approx(1.0)
    # per-class population std: [1,1,0,0] -> 1/2, [0,0,1,0] -> sqrt(3)/4 (twice); max sqrt(2)/3
    mean_std = (0.5 + 2 * math.sqrt(3) / 4) / 3
    assert MeanStd()(samples)[0] == pytest.approx(mean_std / (math.sqrt(2) / 3))
    # KL(one-hot_c || mean) = log(1 / mean_c): log 2, log 2, log 4, log 4
    kls = [math.log(2), math.log(2), math.log(4), math.log(4)]
    assert KLToConsensus()(samples)[0] == pytest.approx(np.mean(kls) / math.log(3))
    assert KLToConsensus("max")(samples)[0] == pytest.approx(math.log(4) / math.log(4))


def test_soft_samples_hand_values():
    samples = np.array([[[0.9, 0.1]], [[0.5, 0.5]]])  # mean [0.7, 0.3]
    bald = (_h(0.7, 0.3) - (_h(0.9, 0.1) + _h(0.5, 0.5)) / 2) / math.log(2)
    assert BALD()(samples)[0] == pytest.approx(bald)
    assert PredictiveEntropy()(samples)[0] == pytest.approx(_h(0.7, 0.3) / math.log(2))
    assert VariationRatio()(samples)[0] == 0.0  # both vote class 0 (a tie goes to the first class)
    assert VoteEntropy()(samples)[0] == 0.0
    assert MeanStd()(samples)[0] == pytest.approx(0.2 / 0.5)  # std of [0.9, 0.5] and [0.1, 0.5]
    kl_first = 0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)
    kl_second = 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)
    kl = (kl_first + kl_second) / 2
    assert KLToConsensus()(samples)[0] == pytest.approx(kl / math.log(2))


def test_vote_entropy_normaliser_is_most_even_split():
    def votes(*classes):
        return np.eye(3)[list(classes)][:, np.newaxis, :]

    best = _h(0.4, 0.4, 0.2)  # 5 votes over 3 classes: 2/2/1 at best
    assert VoteEntropy()(votes(0, 0, 1, 1, 2))[0] == pytest.approx(1.0)
    assert VoteEntropy()(votes(0, 0, 0, 1, 2))[0] == pytest.approx(_h(0.6, 0.2, 0.2) / best)
    # T < C: two members can at best split 1/1 -> log 2
    assert VoteEntropy()(np.eye(5)[[0, 3]][:, np.newaxis, :])[0] == pytest.approx(1.0)
    # variation ratio of 3/1/1: 1 - 3/5 = 0.4 over the best 1 - 2/5 = 0.6
    assert VariationRatio()(votes(0, 0, 0, 1, 2))[0] == pytest.approx(0.4 / 0.6)


def test_single_sample_has_no_disagreement_and_matches_2d():
    probs = PROBS[np.newaxis]  # T = 1
    for cls in (BALD, VariationRatio, MeanStd, VoteEntropy, KLToConsensus):
        np.testing.assert_allclose(cls()(probs), 0.0, atol=1e-12)
    np.testing.assert_allclose(PredictiveEntropy()(probs), Entropy()(PROBS))


def test_kl_to_consensus_mean_is_mutual_information():
    rng = np.random.default_rng(1)
    samples = rng.dirichlet(np.ones(4) * 0.5, size=(7, 30))
    np.testing.assert_allclose(KLToConsensus()(samples), BALD()(samples), atol=1e-12)
    assert (KLToConsensus("max")(samples) >= 0).all()
    with pytest.raises(ValueError, match="reduction"):
        KLToConsensus("median")


def test_sampled_multi_label_averages_binary_scores():
    # T=2, N=1, L=2: label 0 flips between samples, label 1 is a confident 50/50 for both.
    samples = np.array([[[1.0, 0.5]], [[0.0, 0.5]]])
    assert BALD()(samples, multi_label=True)[0] == pytest.approx((1.0 + 0.0) / 2)
    assert PredictiveEntropy()(samples, multi_label=True)[0] == pytest.approx(1.0)
    assert MeanStd()(samples, multi_label=True)[0] == pytest.approx((1.0 + 0.0) / 2)
    assert VoteEntropy()(samples, multi_label=True)[0] == pytest.approx((1.0 + 0.0) / 2)
    np.testing.assert_array_equal(BALD()(np.zeros((3, 2, 0)), multi_label=True), [0.0, 0.0])


@pytest.mark.parametrize("cls", SAMPLED)
def test_sampled_outputs_in_unit_interval_and_validated(cls):
    rng = np.random.default_rng(0)
    samples = rng.dirichlet(np.ones(5) * 0.3, size=(20, 100))  # (T, N, C)
    u = cls()(samples)
    assert u.shape == (100,) and u.dtype == np.float64
    assert u.min() >= 0.0 and u.max() <= 1.0
    m = cls()(rng.random((5, 40, 3)), multi_label=True)
    assert m.shape == (40,) and m.min() >= 0.0 and m.max() <= 1.0
    np.testing.assert_array_equal(cls()(np.ones((4, 3, 1))), np.zeros(3))  # one class
    assert cls()(np.zeros((4, 0, 3))).shape == (0,)
    with pytest.raises(ValueError):
        cls()(samples[0])  # (N, C) is not sampled input
    with pytest.raises(ValueError, match="sample"):
        cls()(np.zeros((0, 3, 2)))


class _FakeEstimator:
    multi_label = False

    def __init__(self, samples):
        self.samples = samples
        self.calls = []

    def predict_proba(self, X):
        self.calls.append("predict_proba")
        return self.samples[0]

    def predict_proba_samples(self, X):
        self.calls.append("predict_proba_samples")
        return self.samples


def test_uncertainty_for_dispatches_on_input_ndim():
    samples = np.array([[[1.0, 0.0], [0.8, 0.2]], [[0.0, 1.0], [0.6, 0.4]]])  # (2, 2, 2)
    est = _FakeEstimator(samples)
    probs, u = uncertainty_for(est, "bald", ["a", "b"])
    assert est.calls == ["predict_proba_samples"]
    np.testing.assert_allclose(probs, [[0.5, 0.5], [0.7, 0.3]])
    assert u.shape == (2,) and u[0] == pytest.approx(1.0)
    est.calls.clear()
    probs, u = uncertainty_for(est, Margin(), ["a", "b"])
    assert est.calls == ["predict_proba"]
    np.testing.assert_allclose(probs, samples[0])
    np.testing.assert_allclose(u, [0.0, 1 - 0.6])
    est.multi_label = True  # default taken from the estimator
    _, u = uncertainty_for(est, "bald", ["a", "b"])
    np.testing.assert_allclose(u, BALD()(samples, multi_label=True))


def test_decision_confidence_single_and_multi_label() -> None:
    from model.uncertainty import decision_confidence

    single = np.array([[0.7, 0.2, 0.1], [0.4, 0.6, 0.0]])
    np.testing.assert_allclose(decision_confidence(single), [0.7, 0.6])
    multi = np.array([[0.9, 0.2], [0.5, 0.5]])
    np.testing.assert_allclose(decision_confidence(multi, multi_label=True), [0.9 * 0.8, 0.25])
    assert decision_confidence(np.zeros((0, 3))).shape == (0,)
    with pytest.raises(ValueError, match="n_tasks, n_classes"):
        decision_confidence(np.zeros(3))

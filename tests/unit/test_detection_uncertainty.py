"""Image-level detection acquisition functions on constructed detections (model.detection.uncertainty)."""

import numpy as np
import pytest

from model.detection.boxes import Detections
from model.detection.uncertainty import (
    AGGREGATES,
    DETECTION_STRATEGIES,
    DetectionScores,
    aggregate,
    decision_confidence,
    get_detection_strategy,
    missed_objects,
    score_images,
)

CLASSES = ["a", "b", "c"]


def det(scores, probs=None, boxes=None):
    scores = np.asarray(scores, float)
    n = len(scores)
    if probs is None:
        probs = np.tile([0.98, 0.01, 0.01], (n, 1))
    probs = np.asarray(probs, float).reshape(n, 3)
    if boxes is None:
        boxes = [[0.1 * i, 0.1 * i, 0.1 * i + 0.08, 0.1 * i + 0.08] for i in range(n)]
    labels = [CLASSES[j] for j in probs.argmax(axis=1)] if n else []
    return Detections(np.asarray(boxes, float).reshape(n, 4), labels, scores, probs)


CONFIDENT = det([0.95, 0.9], [[0.98, 0.01, 0.01], [0.01, 0.98, 0.01]])
CONFUSED = det([0.9, 0.85], [[0.4, 0.35, 0.25], [0.34, 0.33, 0.33]])
HALF_SEEN = det([0.95, 0.25, 0.2])
NOTHING = Detections.empty(3)


@pytest.mark.parametrize("name", ["entropy", "margin"])
@pytest.mark.parametrize("how", AGGREGATES)
def test_class_strategies_rank_confused_above_confident(name, how):
    u = get_detection_strategy(name, aggregate=how)([CONFIDENT, CONFUSED])
    assert u.dtype == np.float64 and u.shape == (2,)
    assert np.all((u >= 0) & (u <= 1))
    assert u[0] < 0.2 < 0.5 < u[1]


def test_entropy_max_hand_computed():
    # one box, score 0.8, uniform over 3 classes: entropy 1 -> 0.8 * 1; no candidates in the missed band
    u = get_detection_strategy("entropy", aggregate="max")([det([0.8], [[1 / 3, 1 / 3, 1 / 3]])])
    assert u[0] == pytest.approx(0.8)


def test_aggregates_hand_computed():
    u, w = np.array([0.5, 1.0]), np.array([1.0, 0.5])
    assert aggregate(u, w, "max") == pytest.approx(0.5)
    assert aggregate(u, w, "mean") == pytest.approx((0.5 + 0.5) / 1.5)
    assert aggregate(u, w, "sum") == pytest.approx(1 - np.exp(-1.0))
    assert aggregate(np.zeros(0), np.zeros(0), "max") == 0.0
    with pytest.raises(ValueError):
        aggregate(u, w, "median")


def test_sum_grows_with_the_number_of_doubtful_boxes_but_max_does_not():
    one = det([0.9], [[0.4, 0.3, 0.3]])
    three = det([0.9, 0.9, 0.9], [[0.4, 0.3, 0.3]] * 3)
    total = get_detection_strategy("entropy", aggregate="sum", include_missed=False)([one, three])
    worst = get_detection_strategy("entropy", aggregate="max", include_missed=False)([one, three])
    assert total[1] > total[0] + 0.2
    assert worst[1] == pytest.approx(worst[0])


def test_low_score_confusion_counts_little():
    # the same class confusion on a box scoring 0.06 (clutter) versus 0.9 (an object)
    clutter = det([0.06], [[0.34, 0.33, 0.33]])
    obj = det([0.9], [[0.34, 0.33, 0.33]])
    u = get_detection_strategy("entropy", include_missed=False)([clutter, obj])
    assert u[0] < 0.1 < 0.8 < u[1]


def test_missed_objects_band():
    assert missed_objects(CONFIDENT) == 0.0
    assert missed_objects(HALF_SEEN) == pytest.approx(1 - np.exp(-0.45 / 0.25))
    u = get_detection_strategy("missed")([CONFIDENT, HALF_SEEN, NOTHING])
    assert u[0] == 0.0 and u[1] > 0.8 and u[2] == pytest.approx(0.1)
    # entropy includes it: an image with confident boxes and two half-seen ones is uncertain
    entropy = get_detection_strategy("entropy")
    assert entropy([HALF_SEEN])[0] > 0.8
    assert get_detection_strategy("entropy", include_missed=False)([HALF_SEEN])[0] < 0.2


def test_image_without_boxes_is_not_certain_by_default():
    for name in ("entropy", "margin", "least_confidence"):
        assert get_detection_strategy(name)([NOTHING])[0] == pytest.approx(0.1)
        assert get_detection_strategy(name, empty=0.0)([NOTHING])[0] == 0.0


def test_least_confidence_peaks_at_half():
    s = get_detection_strategy("least_confidence", include_missed=False)
    u = s([det([0.99]), det([0.5]), det([0.05])])
    assert u[1] == pytest.approx(1.0)
    assert u[0] < 0.05 and u[2] < 0.25
    mean = get_detection_strategy("least_confidence", aggregate="mean", include_missed=False)([det([0.5, 1.0])])
    assert mean[0] == pytest.approx((0.5 * 0.5 + 1.0 * 0.0) / 1.5)


def _jittered(reference, shift, rng, t=6):
    return [Detections(np.clip(reference.boxes + rng.uniform(-shift, shift, reference.boxes.shape), 0, 1),
                       reference.labels, reference.scores, reference.class_probs) for _ in range(t)]


def test_localization_stable_boxes_score_lower_than_unstable_ones():
    rng = np.random.default_rng(0)
    ref = det([0.9, 0.8], boxes=[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8]])
    stable = _jittered(ref, 0.002, rng)
    unstable = _jittered(ref, 0.08, rng)
    vanishing = [ref.take([0]) for _ in range(6)]  # every pass loses the second box
    s = get_detection_strategy("localization")
    assert s.sampled
    u = s([ref, ref, ref], [stable, unstable, vanishing])
    assert u[0] < 0.05 < 0.2 < u[1]
    assert u[2] > 0.5  # half the boxes gone in every pass: count disagreement 0.5, IoU 0 for one box
    assert get_detection_strategy("mc_dropout")([ref], [stable])[0] == pytest.approx(u[0])
    # nothing anywhere: every pass agrees
    assert s([NOTHING], [[NOTHING] * 4])[0] == 0.0
    with pytest.raises(ValueError, match="samples"):
        s([ref])


def test_random_is_seeded_and_in_range():
    a = get_detection_strategy("random", random_state=3)([NOTHING] * 50)
    b = get_detection_strategy("random", random_state=3)([NOTHING] * 50)
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= 0) & (a < 1)) and a.std() > 0.1


def test_registry_and_errors():
    assert {"entropy", "margin", "least_confidence", "localization", "missed", "random"} <= set(DETECTION_STRATEGIES)
    for name, cls in DETECTION_STRATEGIES.items():
        assert cls.name == name
    with pytest.raises(ValueError, match="valid names"):
        get_detection_strategy("bald")
    with pytest.raises(ValueError, match="aggregate"):
        get_detection_strategy("entropy", aggregate="median")
    with pytest.raises(ValueError, match="parameters"):
        get_detection_strategy("entropy", temperature=2)
    with pytest.raises(ValueError, match="class_probs"):
        get_detection_strategy("entropy")([Detections.ground_truth([[0, 0, 0.5, 0.5]], ["a"])])


def test_decision_confidence():
    np.testing.assert_allclose(decision_confidence([CONFIDENT, HALF_SEEN, NOTHING, det([0.95, 0.6])]),
                               [0.9, 0.75, 1.0, 0.6])


class _FakeDetector:
    """predict / predict_samples / transform only (no predict_all): score_images' fallback path."""

    mc_samples = 3

    def __init__(self, outputs):
        self.outputs = outputs
        self.sample_calls = 0

    def predict(self, X):
        return [self.outputs[i] for i in X]

    def predict_samples(self, X):
        self.sample_calls += 1
        return [[self.outputs[i]] * self.mc_samples for i in X]

    def transform(self, X):
        return np.ones((len(X), 2))


def test_score_images_contract():
    fake = _FakeDetector([CONFIDENT, CONFUSED, NOTHING])
    scores = score_images(fake, "entropy", [0, 1, 2], with_features=True)
    assert isinstance(scores, DetectionScores) and len(scores) == 3
    np.testing.assert_allclose(scores.confidence, 1 - scores.uncertainty)
    assert scores.uncertainty[0] < scores.uncertainty[1]
    assert scores.features.shape == (3, 2) and fake.sample_calls == 0
    sampled = score_images(fake, "localization", [0, 1])
    assert fake.sample_calls == 1 and sampled.features is None
    np.testing.assert_allclose(sampled.uncertainty, 0.0)  # identical passes: perfectly stable

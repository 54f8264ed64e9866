import json

import numpy as np
import pytest
from sklearn.base import clone

import model.estimators
from model.calibration import (
    MIN_CALIBRATION_ROWS,
    ProbabilityCalibrator,
    choose_calibration,
    expected_calibration_error,
    out_of_fold_proba,
    reliability_curve,
)
from model.estimators import ChoiceClassifier

# ----------------------------------------------------------------------------- measurement


def test_top_label_ece_hand_values():
    proba = np.array([[0.85, 0.15], [0.75, 0.25], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])
    # bins of width 0.2: 0.85 right -> gap 0.15; {0.75 wrong, 0.7 right} -> |0.5 - 0.725|; 0.55 right -> 0.45
    assert expected_calibration_error(proba, y, n_bins=5) == pytest.approx((0.15 + 2 * 0.225 + 0.45) / 4)


def test_reliability_curve_bins():
    proba = np.array([[0.85, 0.15], [0.75, 0.25], [0.3, 0.7], [0.45, 0.55]])
    curve = reliability_curve(proba, np.array([0, 1, 1, 1]), n_bins=5)
    np.testing.assert_allclose(curve.edges, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_array_equal(curve.count, [0, 0, 1, 2, 1])
    np.testing.assert_allclose(curve.confidence[2:], [0.55, 0.725, 0.85])
    np.testing.assert_allclose(curve.accuracy[2:], [1.0, 0.5, 1.0])
    assert np.isnan(curve.confidence[:2]).all() and np.isnan(curve.accuracy[:2]).all()
    assert curve.n == 4 and curve.ece() == pytest.approx(0.2625)
    as_dict = curve.as_dict()
    json.dumps(as_dict)
    assert as_dict["confidence"][:2] == [None, None] and as_dict["count"] == [0, 0, 1, 2, 1]


def test_bins_are_right_closed_and_include_zero_and_one():
    curve = reliability_curve(np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([0, 0]), n_bins=2)
    np.testing.assert_array_equal(curve.count, [1, 1])  # 0.5 lies in (0, 0.5], 1.0 in (0.5, 1]


def test_perfectly_calibrated_and_certain_models_have_zero_ece():
    proba = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert expected_calibration_error(proba, np.array([0, 2])) == 0.0
    assert expected_calibration_error(proba, np.array([1, 1])) == 1.0


def test_multi_label_classwise_ece_hand_values():
    proba = np.array([[0.9, 0.2], [0.9, 0.4], [0.1, 0.2]])
    y = np.array([[1, 0], [0, 1], [0, 0]])
    # label 0: {0.9, 0.9} vs rate 0.5 -> 0.4 x 2, {0.1} vs 0 -> 0.1: 0.3; label 1: one bin |1/3 - 0.8/3|
    expected = (0.3 + abs(1 / 3 - 0.8 / 3)) / 2
    assert expected_calibration_error(proba, y, n_bins=2, multi_label=True) == pytest.approx(expected)
    pooled = reliability_curve(proba, y, n_bins=2, multi_label=True)
    np.testing.assert_array_equal(pooled.count, [4, 2])


def test_ece_empty_and_validation():
    assert expected_calibration_error(np.zeros((0, 3)), np.zeros(0, dtype=int)) is None
    assert expected_calibration_error(np.zeros((0, 3)), np.zeros((0, 3), dtype=int), multi_label=True) is None
    assert reliability_curve(np.zeros((0, 2)), np.zeros(0, dtype=int)).ece() is None
    with pytest.raises(ValueError, match="class indices"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([2]))
    with pytest.raises(ValueError, match="within"):
        expected_calibration_error(np.array([[1.5, -0.5]]), np.array([0]))
    with pytest.raises(ValueError, match="indicator"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([1]), multi_label=True)
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array([1]), n_bins=0)
    with pytest.raises(ValueError, match="integers"):
        expected_calibration_error(np.array([[0.5, 0.5]]), np.array(["a"]))


# ----------------------------------------------------------------------------- the rule


def test_choose_calibration_rule():
    balanced = np.repeat([0, 1, 2], 20)
    assert choose_calibration("none", balanced, False) == ("none", "not requested")
    assert choose_calibration("isotonic", balanced, False) == ("isotonic", "requested")
    method, reason = choose_calibration("auto", balanced, False)
    assert method == "temperature" and reason.startswith("auto")
    method, reason = choose_calibration("temperature", balanced[: MIN_CALIBRATION_ROWS - 1], False)
    assert method == "none" and "49 < 50" in reason
    rare = np.r_[np.zeros(58, dtype=int), [1, 1]]  # class 1 has only 2 rows: a fold would miss it
    method, reason = choose_calibration("auto", rare, False)
    assert method == "none" and "only 2 row" in reason
    assert choose_calibration("sigmoid", np.zeros(60, dtype=int), False)[0] == "none"
    with pytest.raises(ValueError, match="calibration must be one of"):
        choose_calibration("platt", balanced, False)


def test_choose_calibration_multi_label_rule():
    y = np.zeros((60, 3), dtype=int)
    assert choose_calibration("auto", y, True)[0] == "none"  # no label ever positive
    y[:3, 1] = 1
    assert choose_calibration("auto", y, True) == ("sigmoid", "auto: sigmoid for multi-label with 60 labelled rows")


# ----------------------------------------------------------------------------- calibrator


def _overconfident(n, n_classes=3, seed=0):
    """Probabilities whose argmax is right 60 % of the time but which claim ~95 %."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    predicted = np.where(rng.random(n) < 0.6, y, (y + 1) % n_classes)
    proba = np.full((n, n_classes), 0.05 / (n_classes - 1))
    proba[np.arange(n), predicted] = 0.95
    proba += rng.uniform(0, 0.01, size=proba.shape)
    return proba / proba.sum(axis=1, keepdims=True), y


def test_temperature_softens_overconfidence_and_keeps_argmax():
    proba, y = _overconfident(400)
    test_proba, test_y = _overconfident(400, seed=1)
    calibrator = ProbabilityCalibrator("temperature").fit(proba, y)
    assert calibrator.temperature_ > 1.0
    calibrated = calibrator.transform(test_proba)
    np.testing.assert_array_equal(calibrated.argmax(axis=1), test_proba.argmax(axis=1))
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert expected_calibration_error(calibrated, test_y) < expected_calibration_error(test_proba, test_y) / 3
    assert calibrated.max(axis=1).mean() == pytest.approx(0.6, abs=0.05)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_one_vs_rest_methods_reduce_ece_and_sum_to_one(method):
    proba, y = _overconfident(400)
    test_proba, test_y = _overconfident(400, seed=1)
    calibrated = ProbabilityCalibrator(method).fit(proba, y).transform(test_proba)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    assert calibrated.min() >= 0.0 and calibrated.max() <= 1.0
    assert expected_calibration_error(calibrated, test_y) < expected_calibration_error(test_proba, test_y) / 2


@pytest.mark.parametrize("method", ["temperature", "sigmoid", "isotonic"])
def test_unlabelled_class_column_stays_zero(method):
    proba, y = _overconfident(200)
    padded = np.hstack([proba, np.zeros((len(proba), 1))])  # a configured class nobody labelled
    calibrator = ProbabilityCalibrator(method).fit(padded, y)
    np.testing.assert_array_equal(calibrator.columns_, [0, 1, 2])
    calibrated = calibrator.transform(padded)
    assert (calibrated[:, 3] == 0).all()
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)


def test_binary_one_vs_rest_calibrates_one_column_and_complements():
    proba, y = _overconfident(300, n_classes=2)
    calibrator = ProbabilityCalibrator("sigmoid").fit(proba, y)
    assert calibrator.models_[0] is None and calibrator.models_[1] is not None
    calibrated = calibrator.transform(proba)
    np.testing.assert_allclose(calibrated[:, 0], 1.0 - calibrated[:, 1])


@pytest.mark.parametrize("method", ["temperature", "sigmoid", "isotonic"])
def test_multi_label_calibrates_only_labels_with_enough_positives_and_negatives(method):
    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < 0.4).astype(int)
    y[:, 2] = 0
    y[:2, 2] = 1  # label 2: two positives -- left alone
    proba = np.clip(np.where(y == 1, 0.97, 0.03) + rng.normal(0, 0.01, y.shape), 0, 1)
    flipped = rng.random(y.shape) < 0.25
    flipped[:, 2] = False
    truth = np.where(flipped, 1 - y, y)  # the model is far too sure of itself
    calibrator = ProbabilityCalibrator(method, multi_label=True).fit(proba, truth)
    np.testing.assert_array_equal(calibrator.columns_, [0, 1])
    calibrated = calibrator.transform(proba)
    np.testing.assert_array_equal(calibrated[:, 2], proba[:, 2])
    before = expected_calibration_error(proba[:, :2], truth[:, :2], multi_label=True)
    after = expected_calibration_error(calibrated[:, :2], truth[:, :2], multi_label=True)
    assert after < before / 2
    if method == "temperature":  # one shared T keeps every label on its side of 0.5
        np.testing.assert_array_equal(calibrated >= 0.5, proba >= 0.5)


def test_calibrator_validation():
    with pytest.raises(ValueError, match="method"):
        ProbabilityCalibrator("auto").fit(np.array([[0.5, 0.5]]), np.array([0]))
    with pytest.raises(ValueError, match="nothing to calibrate"):
        ProbabilityCalibrator("temperature").fit(np.array([[0.7, 0.3], [0.6, 0.4]]), np.array([0, 0]))
    proba, y = _overconfident(50)
    calibrator = ProbabilityCalibrator("temperature").fit(proba, y)
    with pytest.raises(ValueError, match="shape"):
        calibrator.transform(np.ones((2, 4)) / 4)
    assert calibrator.transform(np.zeros((0, 3))).shape == (0, 3)


# ----------------------------------------------------------------------------- ChoiceClassifier

CLASSES = ["pos", "neg", "meh", "unused"]


def _texts(n, seed, noise=0.35):
    """Noisy 3-class texts: a logistic regression at C=10 is over-confident on them."""
    rng = np.random.default_rng(seed)
    words = {c: [f"{c}{i}" for i in range(8)] for c in CLASSES[:3]}
    shared = [f"common{i}" for i in range(20)]
    X, y = [], []
    for i in range(n):
        label = CLASSES[i % 3]
        tokens = list(rng.choice(words[label], size=2)) + list(rng.choice(shared, size=4))
        if rng.random() < noise:
            label = CLASSES[(i + 1) % 3]
        X.append(" ".join(tokens))
        y.append(label)
    return X, y


X_TRAIN, Y_TRAIN = _texts(90, seed=0)
X_VALID, Y_VALID = _texts(300, seed=1)
Y_VALID_INDEX = np.array([CLASSES.index(label) for label in Y_VALID])


@pytest.fixture(scope="module")
def raw_and_tempered():
    raw = ChoiceClassifier(classes=CLASSES).fit(X_TRAIN, Y_TRAIN)
    tempered = ChoiceClassifier(classes=CLASSES, calibration="auto").fit(X_TRAIN, Y_TRAIN)
    return raw, tempered


def test_auto_calibration_uses_temperature_and_improves_validation_ece(raw_and_tempered):
    raw, tempered = raw_and_tempered
    assert raw.calibration_ == "none" and raw.calibrator_ is None and raw.calibration_reason_ == "not requested"
    assert tempered.calibration_ == "temperature" and tempered.calibration_reason_.startswith("auto")
    assert tempered.calibrator_.temperature_ > 1.0
    p_raw, p_cal = raw.predict_proba(X_VALID), tempered.predict_proba(X_VALID)
    np.testing.assert_array_equal(p_raw.argmax(axis=1), p_cal.argmax(axis=1))  # temperature keeps accuracy
    np.testing.assert_array_equal(tempered.predict(X_VALID), raw.predict(X_VALID))
    assert (p_cal[:, 3] == 0).all()
    np.testing.assert_allclose(p_cal.sum(axis=1), 1.0)
    assert expected_calibration_error(p_cal, Y_VALID_INDEX) < expected_calibration_error(p_raw, Y_VALID_INDEX)


def test_calibrator_is_fitted_on_out_of_fold_probabilities(raw_and_tempered):
    _, tempered = raw_and_tempered
    targets = np.array([CLASSES.index(label) for label in Y_TRAIN])
    base = clone(tempered).set_params(calibration="none")
    held_out = out_of_fold_proba(base, X_TRAIN, Y_TRAIN, targets, multi_label=False, random_state=0)
    expected = ProbabilityCalibrator("temperature").fit(held_out, targets)
    assert tempered.calibrator_.temperature_ == pytest.approx(expected.temperature_)
    # in-sample probabilities would claim far more confidence than the out-of-fold ones
    in_sample = base.fit(X_TRAIN, Y_TRAIN).predict_proba(X_TRAIN).max(axis=1).mean()
    assert held_out.max(axis=1).mean() < in_sample


def test_samples_stay_uncalibrated(raw_and_tempered):
    raw, tempered = raw_and_tempered
    np.testing.assert_array_equal(tempered.predict_proba_samples(X_VALID)[0], raw.predict_proba(X_VALID))
    committee = ChoiceClassifier(classes=CLASSES, model="committee", committee_size=3, calibration="sigmoid")
    committee.fit(X_TRAIN, Y_TRAIN)
    uncalibrated = clone(committee).set_params(calibration="none").fit(X_TRAIN, Y_TRAIN)
    np.testing.assert_array_equal(committee.predict_proba_samples(X_VALID), uncalibrated.predict_proba_samples(X_VALID))
    assert not np.allclose(committee.predict_proba(X_VALID), uncalibrated.predict_proba(X_VALID))


def test_too_few_rows_falls_back_to_none_with_reason():
    clf = ChoiceClassifier(classes=CLASSES, calibration="isotonic").fit(X_TRAIN[:30], Y_TRAIN[:30])
    assert clf.calibration_ == "none" and clf.calibrator_ is None
    assert clf.calibration_reason_ == "too few labelled rows to calibrate: 30 < 50"


def test_multi_label_auto_is_sigmoid():
    y = [[label] if i % 4 else [label, "unused"] for i, label in enumerate(Y_TRAIN)]
    y[0] = []
    clf = ChoiceClassifier(classes=CLASSES, multi_label=True, calibration="auto").fit(X_TRAIN, y)
    assert clf.calibration_ == "sigmoid"
    proba = clf.predict_proba(X_VALID)
    assert proba.shape == (len(X_VALID), 4) and proba.min() >= 0 and proba.max() <= 1


def test_default_path_never_runs_out_of_fold_fits(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("out-of-fold fits on the default path")

    monkeypatch.setattr(model.estimators, "out_of_fold_proba", boom)
    clf = ChoiceClassifier(classes=CLASSES).fit(X_TRAIN, Y_TRAIN)
    assert clf.calibrator_ is None


def test_unknown_calibration_is_rejected_before_fitting():
    with pytest.raises(ValueError, match="calibration must be one of"):
        ChoiceClassifier(classes=CLASSES, calibration="platt").fit(X_TRAIN, Y_TRAIN)


def test_refit_without_calibration_drops_the_calibrator(raw_and_tempered):
    _, tempered = raw_and_tempered
    clf = clone(tempered).fit(X_TRAIN, Y_TRAIN)
    assert clf.calibrator_ is not None
    clf.set_params(calibration="none").fit(X_TRAIN, Y_TRAIN)
    assert clf.calibrator_ is None and clf.calibration_ == "none"

import collections
import fractions

import numpy as np
import pytest
import skops.io as sio
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import FunctionTransformer

from model.estimators import ChoiceClassifier
from model.persistence import UntrustedModelError, dumps, is_allowed, loads

TEXTS = ["good film", "great movie", "bad film", "awful movie", "fine I guess"]


@pytest.mark.parametrize(
    "clf,X,y",
    [
        (
            ChoiceClassifier(classes=["pos", "neg", "meh", "unused"]),
            TEXTS,
            ["pos", "pos", "neg", "neg", "meh"],
        ),
        (ChoiceClassifier(classes=["pos", "neg"]), TEXTS, ["pos"] * 5),
        (
            ChoiceClassifier(classes=list("abc"), multi_label=True),
            TEXTS,
            [["a"], ["a", "b"], [], ["b"], ["a"]],
        ),
        # word block dropped: no token of two word characters in the training texts
        (ChoiceClassifier(classes=["pos", "neg"]), ["y", "n", "y!", "n?"], ["pos", "neg", "pos", "neg"]),
    ],
)
def test_text_round_trip_identical(clf, X, y):
    clf.fit(X, y)
    data = dumps(clf)
    assert isinstance(data, bytes)
    again = loads(data)
    assert type(again) is ChoiceClassifier
    assert again.get_params() == clf.get_params()
    queries = TEXTS + ["unseen words", "y"]
    np.testing.assert_array_equal(again.predict_proba(queries), clf.predict_proba(queries))
    np.testing.assert_array_equal(again.classes_, clf.classes_)
    assert again.n_train_ == clf.n_train_


def test_image_round_trip_identical():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8) for _ in range(6)]
    clf = ChoiceClassifier(modality="image", classes=["x", "y"]).fit(images, ["x", "y"] * 3)
    again = loads(dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(images), clf.predict_proba(images))


class NotAllowed:
    """A class from a module outside the allowlist (this test module)."""

    def __init__(self):
        self.value = 1


@pytest.mark.parametrize(
    "payload,offender",
    [
        (NotAllowed(), "test_model_persistence.NotAllowed"),
        ({"f": fractions.Fraction(1, 3)}, "fractions.Fraction"),
        # A function is not a type, even from an allowed package: a stored callable runs later.
        (FunctionTransformer(func=eval), "builtins.eval"),
        (TfidfVectorizer(analyzer=np.load), "numpy.load"),
    ],
)
def test_rejects_disallowed_types(payload, offender):
    data = sio.dumps(payload)
    with pytest.raises(UntrustedModelError, match=offender) as info:
        loads(data)
    assert isinstance(info.value, ValueError)
    assert any(offender in t for t in info.value.types)


def test_allowed_extra_types_load():
    data = sio.dumps({"counts": collections.Counter("abca")})
    assert loads(data) == {"counts": collections.Counter("abca")}


def test_is_allowed_rules():
    assert is_allowed("model.estimators.ChoiceClassifier")
    assert is_allowed("model.features.PixelFeatures")
    assert not is_allowed("model.persistence.loads")  # function
    assert not is_allowed("numpyevil.Thing")  # prefix must end at a package boundary
    assert not is_allowed("os.system")
    assert not is_allowed("numpy.f2py.__main__.main")  # never imported on our behalf
    assert not is_allowed("model.missing.Thing")


def test_garbage_bytes_raise_value_error():
    with pytest.raises(ValueError, match="not a skops"):
        loads(b"definitely not a zip file")


SINGLE = ["pos", "pos", "neg", "neg", "meh"]
MULTI = [["a"], ["a", "b"], [], ["b"], ["a"]]


@pytest.mark.parametrize(
    "clf,y",
    [
        (ChoiceClassifier(classes=["pos", "neg", "meh", "unused"], model="mlp", n_samples=5), SINGLE),
        (ChoiceClassifier(classes=["pos", "neg"], model="mlp"), ["pos"] * 5),  # constant: no network
        (ChoiceClassifier(classes=list("abc"), multi_label=True, model="mlp"), MULTI),
        (ChoiceClassifier(classes=["pos", "neg", "meh", "unused"], model="committee", committee_size=3), SINGLE),
        (ChoiceClassifier(classes=list("abc"), multi_label=True, model="committee"), MULTI),
    ],
)
def test_mlp_and_committee_round_trip_identical(clf, y):
    clf.fit(TEXTS, y)
    data = dumps(clf)
    # Torch weights travel as numpy arrays: nothing beyond our own classes needs trusting.
    assert set(sio.get_untrusted_types(data=data)) <= {"model.estimators.ChoiceClassifier"}
    again = loads(data)
    assert type(again) is ChoiceClassifier and again.get_params() == clf.get_params()
    queries = TEXTS + ["unseen words", "y"]
    np.testing.assert_array_equal(again.predict_proba(queries), clf.predict_proba(queries))
    np.testing.assert_array_equal(again.predict_proba_samples(queries), clf.predict_proba_samples(queries))


def test_image_mlp_round_trip_identical():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8) for _ in range(6)]
    clf = ChoiceClassifier(modality="image", classes=["x", "y"], model="mlp", epochs=1).fit(images, ["x", "y"] * 3)
    again = loads(dumps(clf))
    np.testing.assert_array_equal(again.predict_proba_samples(images), clf.predict_proba_samples(images))


def test_model_files_from_before_the_new_parameters_still_load():
    clf = ChoiceClassifier(classes=["pos", "neg"]).fit(TEXTS, ["pos", "pos", "neg", "neg", "pos"])
    expected = clf.predict_proba(TEXTS)
    # what an old file holds: no model / n_samples / MLP parameters, no kind_
    added = ("model", "n_samples", "committee_size", "hidden_size", "dropout", "epochs", "lr", "weight_decay")
    for name in (*added, "batch_size", "kind_"):
        delattr(clf, name)
    again = loads(dumps(clf))
    assert again.get_params() == ChoiceClassifier(classes=["pos", "neg"]).get_params()
    assert again.kind_ == "logreg"
    np.testing.assert_array_equal(again.predict_proba(TEXTS), expected)


def _calibration_data(n=60):
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(n):
        label = ["pos", "neg", "meh"][i % 3]
        texts.append(f"{label}{rng.integers(4)} common{rng.integers(6)} common{rng.integers(6)}")
        labels.append(label if rng.random() > 0.3 else "pos")
    return texts, labels


@pytest.mark.parametrize("calibration", ["temperature", "sigmoid", "isotonic"])
def test_calibrated_round_trip_identical(calibration):
    texts, labels = _calibration_data()
    clf = ChoiceClassifier(classes=["pos", "neg", "meh", "unused"], calibration=calibration).fit(texts, labels)
    assert clf.calibration_ == calibration
    data = dumps(clf)
    # The calibrator is our own class (allowlisted under "model"); its sklearn parts are trusted by skops.
    assert set(sio.get_untrusted_types(data=data)) == {
        "model.estimators.ChoiceClassifier",
        "model.calibration.ProbabilityCalibrator",
    }
    again = loads(data)
    assert again.get_params() == clf.get_params()
    assert (again.calibration_, again.calibration_reason_) == (clf.calibration_, clf.calibration_reason_)
    queries = texts + ["unseen words", "pos1"]
    np.testing.assert_array_equal(again.predict_proba(queries), clf.predict_proba(queries))


def test_model_files_from_before_calibration_still_load():
    clf = ChoiceClassifier(classes=["pos", "neg"]).fit(TEXTS, ["pos", "pos", "neg", "neg", "pos"])
    expected = clf.predict_proba(TEXTS)
    for name in ("calibration", "calibration_", "calibration_reason_", "calibrator_"):
        delattr(clf, name)
    again = loads(dumps(clf))
    assert again.calibration == "none" and again.calibration_ == "none" and again.calibrator_ is None
    np.testing.assert_array_equal(again.predict_proba(TEXTS), expected)

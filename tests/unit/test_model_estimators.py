import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.datasets import load_digits

from model.estimators import ChoiceClassifier, make_estimator
from tests.support.corpus import CLASSES, HELD_OUT, LABELS, TEXTS


@pytest.fixture(scope="module")
def text_model():
    return ChoiceClassifier(modality="text", classes=CLASSES).fit(TEXTS, LABELS)


def test_is_sklearn_classifier_with_plain_init():
    clf = ChoiceClassifier(classes=("a", "b"), C=3.0)
    assert is_classifier(clf)
    assert clone(clf).get_params() == {
        "modality": "text",
        "classes": ("a", "b"),
        "multi_label": False,
        "C": 3.0,
        "random_state": 0,
        "model": "logreg",
        "n_samples": 20,
        "committee_size": 5,
        "hidden_size": 128,
        "dropout": 0.5,
        "epochs": 20,
        "lr": 3e-3,
        "weight_decay": 1e-4,
        "batch_size": 128,
        "calibration": "none",
    }


def test_text_single_label_learns(text_model):
    assert text_model.n_train_ == len(TEXTS)
    assert isinstance(text_model.classes_, np.ndarray)
    assert text_model.classes_.tolist() == CLASSES
    assert text_model.predict_labels(TEXTS) == [[label] for label in LABELS]
    held_texts, held_labels = zip(*HELD_OUT, strict=True)
    assert text_model.predict_labels(list(held_texts)) == [[label] for label in held_labels]
    assert text_model.predict(list(held_texts)).tolist() == list(held_labels)


def test_text_proba_columns_follow_classes(text_model):
    proba = text_model.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), len(CLASSES))
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba[:, 3], 0.0)  # unseen class
    assert (proba.argmax(axis=1) == [CLASSES.index(label) for label in LABELS]).all()


def test_column_order_is_classes_order_not_alphabetical():
    reordered = ["weather", "tech", "sports", "politics"]
    a = ChoiceClassifier(classes=CLASSES).fit(TEXTS, LABELS).predict_proba(TEXTS)
    b = ChoiceClassifier(classes=reordered).fit(TEXTS, LABELS).predict_proba(TEXTS)
    np.testing.assert_allclose(b, a[:, [CLASSES.index(c) for c in reordered]], atol=1e-6)


def test_empty_predict(text_model):
    assert text_model.predict_proba([]).shape == (0, len(CLASSES))
    assert text_model.predict_labels([]) == []


def test_labels_from_proba_matches_predict_labels(text_model):
    proba = text_model.predict_proba(TEXTS)
    assert text_model.labels_from_proba(proba) == text_model.predict_labels(TEXTS)
    with pytest.raises(ValueError, match="shape"):
        text_model.labels_from_proba(proba[:, :2])


def test_texts_without_word_tokens_still_fit():
    # No token of two word characters anywhere: only the char block has something to learn.
    clf = ChoiceClassifier(classes=["yes", "no"]).fit(["k", "y :)", "n", "n :("], ["yes", "yes", "no", "no"])
    assert clf.features_.get_params()["word"] == "drop"
    assert clf.predict_proba(["ok", "", "totally new words"]).shape == (3, 2)
    assert clf.predict_labels(["y :)", "n :("]) == [["yes"], ["no"]]
    with pytest.raises(ValueError, match="blank"):
        ChoiceClassifier(classes=["yes", "no"]).fit(["", "   "], ["yes", "no"])


def test_single_class_fit_is_constant():
    clf = ChoiceClassifier(classes=CLASSES).fit(TEXTS[:3], ["sports"] * 3)
    proba = clf.predict_proba(["anything at all", "the senate"])
    np.testing.assert_array_equal(proba, [[1.0, 0.0, 0.0, 0.0]] * 2)
    assert clf.predict_labels(["x"]) == [["sports"]]


def test_two_rows_two_classes():
    clf = ChoiceClassifier(classes=["pos", "neg"]).fit(["good", "bad"], ["pos", "neg"])
    assert clf.predict_labels(["good", "bad"]) == [["pos"], ["neg"]]


def test_unknown_label_raises_with_name():
    with pytest.raises(ValueError, match="'cooking'"):
        ChoiceClassifier(classes=CLASSES).fit(TEXTS[:2], ["sports", "cooking"])
    with pytest.raises(ValueError, match="'cooking'"):
        ChoiceClassifier(classes=CLASSES, multi_label=True).fit(TEXTS[:2], [["sports"], ["tech", "cooking"]])


@pytest.mark.parametrize(
    "kwargs,X,y,match",
    [
        ({"classes": []}, ["a"], ["a"], "empty"),
        ({"classes": ["a", "a"]}, ["a"], ["a"], "duplicate"),
        ({"classes": ["a"], "modality": "audio"}, ["a"], ["a"], "modality"),
        ({"classes": ["a"]}, ["a", "b"], ["a"], "lengths"),
        ({"classes": ["a"]}, [], [], "zero rows"),
        ({"classes": ["a"]}, [b"bytes"], ["a"], "str"),
        ({"classes": ["a"], "multi_label": True}, ["x"], ["a"], "lists"),
        ({"classes": ["a"]}, ["x"], [["a"]], "strings"),
    ],
)
def test_fit_validation(kwargs, X, y, match):
    with pytest.raises(ValueError, match=match):
        ChoiceClassifier(**kwargs).fit(X, y)


def test_predict_before_fit_raises():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        ChoiceClassifier(classes=CLASSES).predict_proba(["x"])


def test_multi_label_with_never_and_always_positive_classes():
    classes = ["sports", "politics", "tech", "news", "weather"]
    # every row is "news" (always positive); "weather" never positive; one row has no label
    y = [[label, "news"] for label in LABELS]
    y[-1] = ["news"]
    clf = ChoiceClassifier(classes=classes, multi_label=True).fit(TEXTS, y)
    proba = clf.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), 5)
    assert proba.min() >= 0.0 and proba.max() <= 1.0
    n = len(TEXTS)
    np.testing.assert_allclose(proba[:, 4], 1 / (n + 2))  # Laplace-smoothed constant
    np.testing.assert_allclose(proba[:, 3], (n + 1) / (n + 2))
    predicted = clf.predict_labels(TEXTS)
    assert predicted[:-1] == [[label, "news"] for label in LABELS[:-1]]
    assert all("weather" not in row for row in predicted)
    assert clf.predict(TEXTS[:1]).tolist() == [[1, 0, 0, 1, 0]]


def test_multi_label_threshold_and_empty_rows():
    clf = ChoiceClassifier(classes=["a", "b"], multi_label=True).fit(
        ["alpha", "beta", "alpha beta", "nothing", "zzz"], [["a"], ["b"], ["a", "b"], [], []]
    )
    assert clf.predict_labels(["nothing"]) == [[]]
    assert clf.predict_labels(["alpha beta"], threshold=0.0) == [["a", "b"]]
    assert clf.predict_labels(["alpha beta"], threshold=1.01) == [[]]
    # rows are independent, not a distribution
    assert not np.allclose(clf.predict_proba(["alpha", "nothing"]).sum(axis=1), 1.0)


def _digits_uint8():
    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return list(images), [str(t) for t in digits.target]


def test_image_digits_accuracy_above_chance():
    images, labels = _digits_uint8()
    classes = [str(d) for d in range(10)]
    clf = ChoiceClassifier(modality="image", classes=classes).fit(images[:300], labels[:300])
    predicted = [row[0] for row in clf.predict_labels(images[300:700])]
    accuracy = np.mean(np.array(predicted) == np.array(labels[300:700]))
    assert accuracy > 0.8  # chance is 0.1
    proba = clf.predict_proba(images[:5])
    assert proba.shape == (5, 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_image_mixed_shapes_multi_label():
    rng = np.random.default_rng(0)
    dark = [rng.integers(0, 60, size=(8 + i, 10, 3), dtype=np.uint8) for i in range(6)]
    bright = [rng.integers(190, 256, size=(12, 6 + i), dtype=np.uint8) for i in range(6)]
    clf = ChoiceClassifier(modality="image", classes=["dark", "bright", "blue"], multi_label=True)
    clf.fit(dark + bright, [["dark"]] * 6 + [["bright"]] * 6)
    assert clf.predict_labels(
        [np.dstack([np.zeros((5, 5, 3), np.uint8), np.full((5, 5), 255, np.uint8)])]
    ) == [["dark"]]
    assert clf.predict_labels([np.full((20, 20), 250, np.uint8)]) == [["bright"]]


def test_logreg_samples_and_transform(text_model):
    samples = text_model.predict_proba_samples(TEXTS[:4])
    assert samples.shape == (1, 4, len(CLASSES))
    np.testing.assert_array_equal(samples[0], text_model.predict_proba(TEXTS[:4]))
    assert text_model.predict_proba_samples([]).shape == (1, 0, len(CLASSES))
    features = text_model.transform(TEXTS[:4])
    assert features.shape[0] == 4 and features.dtype == np.float64
    assert features.shape[1] == text_model.transform(["x"]).shape[1]


@pytest.mark.parametrize(
    "strategy,kind",
    [
        ("margin", "logreg"),
        ("entropy", "logreg"),
        ("least_confidence", "logreg"),
        ("bald", "mlp"),
        ("predictive_entropy", "mlp"),
        ("variation_ratio", "mlp"),
        ("mean_std", "mlp"),
        ("vote_entropy", "committee"),
        ("kl_consensus", "committee"),
    ],
)
def test_make_estimator_picks_model_kind(strategy, kind):
    clf = make_estimator(strategy, "image", ("a", "b"), True, random_state=7, n_samples=5)
    assert isinstance(clf, ChoiceClassifier)
    params = clf.get_params()
    assert params["model"] == kind
    assert (params["modality"], params["classes"], params["multi_label"]) == ("image", ["a", "b"], True)
    assert (params["random_state"], params["n_samples"]) == (7, 5)
    assert not hasattr(clf, "classes_")  # unfitted


def test_make_estimator_explicit_model_and_unknown_strategy():
    assert make_estimator("vote_entropy", "text", ["a"], False, model="mlp").model == "mlp"
    with pytest.raises(ValueError, match="unknown uncertainty strategy"):
        make_estimator("nope", "text", ["a"], False)


def test_unknown_model_kind_raises():
    with pytest.raises(ValueError, match="model must be one of"):
        ChoiceClassifier(classes=CLASSES, model="forest").fit(TEXTS, LABELS)


def test_logreg_path_does_not_import_torch():
    # The default model must keep server start fast: torch is only imported for "mlp".
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from model.estimators import ChoiceClassifier, make_estimator\n"
        "from model.uncertainty import uncertainty_for\n"
        "clf = make_estimator('margin', 'text', ['a', 'b'], False).fit(['good', 'bad'], ['a', 'b'])\n"
        "uncertainty_for(clf, 'margin', ['ok'])\n"
        "uncertainty_for(clf, 'bald', ['ok'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

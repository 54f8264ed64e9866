from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from model.crossfit import cross_fitted_confidence, fold_assignment
from model.estimators import make_estimator
from model.uncertainty import decision_confidence
from tests.support.corpus import CLASSES, LABELS, TEXTS


class Memoriser:
    """A 1-nearest-neighbour caricature: certain and right on rows it was fitted on, clueless elsewhere.

    Scored by a model that had seen it, a row would get confidence 1 and be right; out of fold it
    gets the uniform distribution. Every fitted instance is recorded, with what it was fitted on.
    """

    fitted: list[Memoriser] = []

    def __init__(self, classes: list[str], multi_label: bool = False):
        self.classes_ = np.asarray(classes)
        self.multi_label = multi_label

    def fit(self, X: list[str], y: list[Any]) -> Memoriser:
        self.memory = dict(zip(X, y, strict=True))
        Memoriser.fitted.append(self)
        return self

    def predict_proba(self, X: list[str]) -> np.ndarray:
        out = np.full((len(X), len(self.classes_)), 0.4 if self.multi_label else 1.0 / len(self.classes_))
        for row, x in enumerate(X):
            if x in self.memory:
                truth = self.memory[x] if self.multi_label else [self.memory[x]]
                out[row] = np.isin(self.classes_, truth).astype(float)
        return out


@pytest.fixture(autouse=True)
def _forget() -> None:
    Memoriser.fitted = []


def _rows(n: int, classes: list[str]) -> tuple[list[str], list[str]]:
    return [f"row {i}" for i in range(n)], [classes[i % len(classes)] for i in range(n)]


def test_no_row_is_scored_by_a_model_that_saw_it():
    X, y = _rows(53, ["a", "b", "c"])
    confidence, correct, fold = cross_fitted_confidence(lambda: Memoriser(["a", "b", "c"]), X, y, n_folds=5)
    np.testing.assert_allclose(confidence, 1 / 3)  # a seen row would score 1.0
    assert confidence.dtype == np.float64 and correct.dtype == bool and fold.dtype == np.int64
    assert len(Memoriser.fitted) == 5  # one model per fold
    for k, model in enumerate(Memoriser.fitted):
        assert set(model.memory) == {x for x, f in zip(X, fold, strict=True) if f != k}


def test_correct_is_whether_the_predicted_label_is_the_truth():
    X, y = _rows(20, ["a", "b"])
    # Uniform probabilities: the argmax is the first class, so exactly the "a" rows count as right.
    _, correct, _ = cross_fitted_confidence(lambda: Memoriser(["a", "b"]), X, y, n_folds=4)
    np.testing.assert_array_equal(correct, np.asarray(y) == "a")


def test_folds_are_stratified_and_balanced():
    y = ["big"] * 40 + ["mid"] * 13 + ["rare"] * 3
    fold = fold_assignment(y, 5, seed=3)
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 56
    for label in ("big", "mid", "rare"):
        per_fold = np.bincount(fold[np.asarray(y) == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1, label  # a rare class: 3 rows in 3 different folds
    np.testing.assert_array_equal(fold, fold_assignment(y, 5, seed=3))  # seeded
    assert not np.array_equal(fold, fold_assignment(y, 5, seed=4))


def test_a_class_with_fewer_rows_than_folds_is_scored_by_models_that_never_saw_it():
    X, y = _rows(30, ["a", "b"])
    X, y = X + ["lonely"], y + ["c"]
    confidence, correct, fold = cross_fitted_confidence(lambda: Memoriser(["a", "b", "c"]), X, y, n_folds=5)
    assert len(confidence) == 31 and not correct[-1] and np.bincount(fold).max() - np.bincount(fold).min() <= 1


def test_tiny_data():
    for n in (0, 1):
        X, y = _rows(n, ["a"])
        confidence, correct, fold = cross_fitted_confidence(lambda: Memoriser(["a"]), X, y)
        assert confidence.size == correct.size == fold.size == 0
    X, y = _rows(3, ["a", "b"])
    _, _, fold = cross_fitted_confidence(lambda: Memoriser(["a", "b"]), X, y, n_folds=5)
    assert sorted(fold.tolist()) == [0, 1, 2]  # as many folds as rows


def test_multi_label_rows():
    classes = ["x", "y", "z"]
    X = [f"row {i}" for i in range(24)]
    y: list[list[str]] = [[], ["x"], ["x", "y"], ["z"]] * 6
    confidence, correct, fold = cross_fitted_confidence(lambda: Memoriser(classes, multi_label=True), X, y, n_folds=3)
    np.testing.assert_allclose(confidence, 0.6**3)  # unseen: every label at 0.4 -> P(all three "no"s right)
    np.testing.assert_array_equal(correct, [row == [] for row in y])  # predicted label set: empty
    for label in ("x", "z"):  # strata by rarest label keep each label spread over the folds
        per_fold = np.bincount(fold[[label in row for row in y]], minlength=3)
        assert per_fold.max() - per_fold.min() <= 1


def test_with_the_real_classifier_each_fold_model_is_fitted_on_the_other_folds():
    def make() -> Any:
        return make_estimator("margin", "text", CLASSES, False, random_state=0)

    confidence, correct, fold = cross_fitted_confidence(make, TEXTS, LABELS, n_folds=3, seed=1)
    texts, labels, held = np.asarray(TEXTS), np.asarray(LABELS), fold == 0
    model = make().fit(list(texts[~held]), list(labels[~held]))
    proba = model.predict_proba(list(texts[held]))
    np.testing.assert_allclose(confidence[held], decision_confidence(proba))
    np.testing.assert_array_equal(correct[held], model.predict(list(texts[held])) == labels[held])


def test_validation():
    X, y = _rows(10, ["a", "b"])
    for bad in (1, 0, 2.0, True):
        with pytest.raises(ValueError, match="n_folds"):
            cross_fitted_confidence(lambda: Memoriser(["a", "b"]), X, y, n_folds=bad)
    with pytest.raises(ValueError, match="lengths"):
        cross_fitted_confidence(lambda: Memoriser(["a", "b"]), X, y[:-1])


class Sampler(Memoriser):
    """predict_proba says class "a" for sure; its Monte-Carlo samples average to "b" at 0.7."""

    def predict_proba(self, X: list[str]) -> np.ndarray:
        return np.tile([1.0, 0.0], (len(X), 1))

    def predict_proba_samples(self, X: list[str]) -> np.ndarray:
        return np.stack([np.tile([0.2, 0.8], (len(X), 1)), np.tile([0.4, 0.6], (len(X), 1))])


def test_a_sampled_strategy_scores_the_folds_by_the_sample_mean_as_tasks_are_scored():
    """With BALD, tasks get the MC mean's label and confidence: the certifying rows must be scored alike."""
    from model.uncertainty import get_strategy

    X, y = ["p", "q", "r", "s"], ["b", "b", "a", "b"]
    plain, plain_ok, _ = cross_fitted_confidence(lambda: Sampler(["a", "b"]), X, y, n_folds=2)
    np.testing.assert_allclose(plain, 1.0)
    np.testing.assert_array_equal(plain_ok, np.asarray(y) == "a")
    sampled, sampled_ok, _ = cross_fitted_confidence(lambda: Sampler(["a", "b"]), X, y, n_folds=2,
                                                     strategy=get_strategy("bald"))
    np.testing.assert_allclose(sampled, decision_confidence(np.array([[0.3, 0.7]])).item())
    np.testing.assert_array_equal(sampled_ok, np.asarray(y) == "b")

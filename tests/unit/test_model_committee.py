"""Bootstrapped logistic-regression committees: ChoiceClassifier(model="committee")."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from model.committee import bootstrap_rows
from model.estimators import ChoiceClassifier
from model.uncertainty import uncertainty_for

CLASSES = ["sports", "politics", "tech", "weather"]  # "weather" is never labelled
TEXTS = [
    "the team won the football match",
    "a late goal decided the soccer game",
    "the striker scored twice in the final",
    "parliament passed the new budget law",
    "the minister resigned after the election",
    "voters elect a new president",
    "the new smartphone has a faster processor",
    "software update fixes security bug",
    "the startup released an open source database",
]
LABELS = ["sports"] * 3 + ["politics"] * 3 + ["tech"] * 3
DIGIT_CLASSES = [str(d) for d in range(10)]


def test_stratified_bootstrap_keeps_every_class():
    targets = np.array([0] * 18 + [1, 2])  # two classes with a single row each
    rng = np.random.default_rng(0)
    for _ in range(50):
        rows = bootstrap_rows(targets, rng, multi_label=False)
        assert len(rows) == len(targets)
        assert np.bincount(targets[rows], minlength=3).tolist() == [18, 1, 1]
    draws = [tuple(bootstrap_rows(targets, rng, multi_label=False)) for _ in range(5)]
    assert len(set(draws)) > 1  # actual resampling, not the identity
    multi = bootstrap_rows(np.zeros((7, 3)), rng, multi_label=True)
    assert len(multi) == 7 and multi.min() >= 0 and multi.max() < 7


def test_text_committee_learns_and_members_differ():
    clf = ChoiceClassifier(classes=CLASSES, model="committee", committee_size=4).fit(TEXTS, LABELS)
    assert clf.kind_ == "committee" and len(clf.members_) == 4
    assert clf.predict_labels(TEXTS) == [[label] for label in LABELS]
    samples = clf.predict_proba_samples(TEXTS + ["the goal of the election"])
    assert samples.shape == (4, len(TEXTS) + 1, 4)
    np.testing.assert_allclose(samples.sum(axis=-1), 1.0)
    np.testing.assert_array_equal(samples[..., 3], 0.0)  # unseen class
    assert np.abs(samples - samples[0]).max() > 1e-3  # bootstrap members are not copies
    np.testing.assert_allclose(clf.predict_proba(TEXTS), samples[:, : len(TEXTS)].mean(axis=0))
    again = ChoiceClassifier(classes=CLASSES, model="committee", committee_size=4).fit(TEXTS, LABELS)
    np.testing.assert_array_equal(again.predict_proba_samples(TEXTS), samples[:, : len(TEXTS)])
    probs, u = uncertainty_for(clf, "vote_entropy", TEXTS)
    assert probs.shape == (len(TEXTS), 4) and u.shape == (len(TEXTS),)


def test_digits_committee_accuracy_above_chance():
    data = load_digits()
    images = list(np.round(data.images * (255.0 / 16.0)).astype(np.uint8))
    labels = np.array([str(t) for t in data.target])
    clf = ChoiceClassifier(modality="image", classes=DIGIT_CLASSES, model="committee", committee_size=3)
    clf.fit(images[:300], list(labels[:300]))
    assert np.mean(clf.predict(images[1000:1300]) == labels[1000:1300]) > 0.8  # chance is 0.1
    probs, u = uncertainty_for(clf, "kl_consensus", images[1000:1100])
    assert u.shape == (100,) and u.min() >= 0.0 and u.max() <= 1.0
    assert u.max() > 0.0


def test_committee_single_class_and_multi_label():
    one = ChoiceClassifier(classes=CLASSES, model="committee", committee_size=3).fit(TEXTS[:3], ["sports"] * 3)
    np.testing.assert_array_equal(one.predict_proba_samples(["x"]), np.tile([1.0, 0.0, 0.0, 0.0], (3, 1, 1)))
    y = [[label] for label in LABELS]
    y[0] = ["sports", "tech"]  # "tech" positive once among sports rows; "weather" never positive
    multi = ChoiceClassifier(classes=CLASSES, multi_label=True, model="committee", committee_size=5).fit(TEXTS, y)
    samples = multi.predict_proba_samples(TEXTS)
    assert samples.shape == (5, len(TEXTS), 4)
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    # each member falls back to its own Laplace constant for the never-positive label
    np.testing.assert_allclose(samples[..., 3], 1 / (len(TEXTS) + 2))
    assert (multi.predict_proba(TEXTS[3:6]).argmax(axis=1) == CLASSES.index("politics")).all()


def test_committee_needs_two_members():
    with pytest.raises(ValueError, match="committee_size"):
        ChoiceClassifier(classes=CLASSES, model="committee", committee_size=1).fit(TEXTS, LABELS)

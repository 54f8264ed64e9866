"""model.crowd.annotators (accuracy with an interval, weights: the spammer ranks last) and model.crowd.profiles."""

from __future__ import annotations

import numpy as np
import pytest

from model.crowd import Annotations, annotator_report, dawid_skene, majority_vote
from model.crowd.annotators import weights_of
from model.crowd.profiles import draw_answers, noise_profile, parse_profile

SIX = "0.95,0.95,0.95,0.95,0.7,spam"


def _six_annotators(n: int = 1500, k: int = 5, seed: int = 0, doubled: float = 0.2):
    """Six annotators splitting ``n`` items, a share ``doubled`` labelled twice; a mediocre model's proba."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    who, answers = draw_answers(truth, parse_profile(SIX), k, seed=seed, per_item=2)
    two = rng.random(n) < doubled
    items = np.r_[np.arange(n), np.flatnonzero(two)]
    names = np.r_[who[:, 0], who[two, 1]]
    labels = np.r_[answers[:, 0], answers[two, 1]]
    classes = tuple(str(c) for c in range(k))
    ann = Annotations.from_records(items, [f"a{w}" for w in names], [classes[v] for v in labels], classes)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += 2.0
    return ann, truth, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_the_spammer_ranks_last_and_loses_its_weight() -> None:
    ann, truth, proba = _six_annotators()
    report = annotator_report(ann, dawid_skene(ann, proba=proba), proba)
    assert [s.annotator for s in report][-2:] == ["a4", "a5"]  # the 0.7 annotator, then the spammer
    spammer, sloppy = report[-1], report[-2]
    assert spammer.weight < 0.1 and spammer.unreliable and not sloppy.unreliable
    assert spammer.accuracy == pytest.approx(0.2, abs=0.08)  # right by chance: 1 / 5 (a little flattered)
    for careful in report[:4]:
        assert careful.interval[0] - 0.03 <= 0.95 <= careful.interval[1] + 0.03 and careful.basis == "posterior"
        assert careful.n_labels == np.sum(ann.annotator == ann.annotators.index(careful.annotator))
        assert careful.agreement_model > spammer.agreement_model
        assert careful.agreement_consensus > spammer.agreement_consensus
    assert sloppy.accuracy == pytest.approx(0.7, abs=0.06)
    row = spammer.as_dict()
    assert row["annotator"] == "a5" and isinstance(row["interval"], list)


def test_down_weighting_the_spammer_improves_the_vote() -> None:
    ann, truth, proba = _six_annotators(doubled=1.0)  # every item twice: the vote has something to weigh
    report = annotator_report(ann, majority_vote(ann), proba)  # not Dawid-Skene: the report runs it itself
    weighted, plain = majority_vote(ann, weights=weights_of(ann, report)), majority_vote(ann)
    assert np.mean(weighted.label == truth) > np.mean(plain.label == truth) + 0.1  # a 1-1 split goes to the reliable
    # With the model's probabilities, Dawid-Skene uses both, and beats the weighted vote (which ignores the model).
    assert np.mean(dawid_skene(ann, proba=proba).label == truth) > np.mean(weighted.label == truth)


def test_accuracy_is_measured_on_ground_truth_when_there_is_enough() -> None:
    # "t" answers ground truth on 20 items; "u" labels them too and gets 15 right.
    items = list(range(20)) * 2
    who = ["t"] * 20 + ["u"] * 20
    labels = ["a"] * 20 + ["a"] * 15 + ["b"] * 5
    flags = [True] * 20 + [False] * 20
    ann = Annotations.from_records(items, who, labels, ["a", "b"], ground_truth=flags)
    by_name = {s.annotator: s for s in annotator_report(ann, dawid_skene(ann))}
    assert by_name["u"].basis == "ground_truth" and by_name["u"].accuracy == 0.75
    assert by_name["u"].n_ground_truth == 20 and by_name["t"].n_ground_truth == 0
    assert by_name["u"].interval == pytest.approx((0.531, 0.888), abs=1e-3)  # Wilson, 15 / 20


def test_profiles_parse_and_draw() -> None:
    profile = parse_profile(" 0.9, 0.7 ,SPAM")
    assert profile.accuracies == (0.9, 0.7, None) and profile.describe() == "0.9,0.7,spam"
    assert profile.expected_error(4) == pytest.approx((0.1 + 0.3 + 0.75) / 3)
    for bad in ("", "1.5", "0", "nine"):
        with pytest.raises(ValueError):
            parse_profile(bad)
    with pytest.raises(ValueError):
        noise_profile(1.0)
    truth = np.random.default_rng(0).integers(0, 4, 20_000)
    who, answers = draw_answers(truth, profile, 4, seed=5)
    assert who.shape == answers.shape == (20_000, 1)
    for j, expected in enumerate((0.9, 0.7, 0.25)):
        mine = who[:, 0] == j
        assert abs(mine.mean() - 1 / 3) < 0.02 and np.mean(answers[mine, 0] == truth[mine]) == pytest.approx(expected,
                                                                                                             abs=0.02)
    again = draw_answers(truth, profile, 4, seed=5)
    assert np.array_equal(again[1], answers)  # seeded: every arm of a replay sees the same answers
    who2, _ = draw_answers(truth[:100], profile, 4, seed=5, per_item=3)
    assert all(len(set(row)) == 3 for row in who2.tolist())  # distinct annotators per item
    flipped = draw_answers(truth, noise_profile(0.3), 4, seed=1)[1][:, 0]
    assert np.mean(flipped != truth) == pytest.approx(0.3, abs=0.015)

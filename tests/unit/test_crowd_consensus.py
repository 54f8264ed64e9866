"""model.crowd: the annotation container, majority vote, Dawid-Skene, CROWDLAB and Krippendorff's alpha."""

from __future__ import annotations

import numpy as np
import pytest

from model.crowd import Annotations, crowdlab, dawid_skene, krippendorff_alpha, majority_vote
from model.crowd.profiles import draw_answers, parse_profile


def _wide(rows: list[list[int | None]], names: str = "xyz", classes: tuple[str, ...] = ("0", "1", "2"),
          ground_truth: set[tuple[int, str]] = frozenset()) -> Annotations:
    """Annotations from a table: one row per item, one column per annotator, None = not labelled."""
    items, who, labels, flags = [], [], [], []
    for i, row in enumerate(rows):
        for name, value in zip(names, row, strict=False):
            if value is not None:
                items.append(i)
                who.append(name)
                labels.append(classes[value])
                flags.append((i, name) in ground_truth)
    return Annotations.from_records(items, who, labels, classes, n_items=len(rows), ground_truth=flags)


def _crowd(accuracies: str, n: int = 1500, k: int = 5, seed: int = 0, per_item: int = 3):
    truth = np.random.default_rng(seed).integers(0, k, n)
    who, answers = draw_answers(truth, parse_profile(accuracies), k, seed=seed, per_item=per_item)
    classes = tuple(str(c) for c in range(k))
    ann = Annotations.from_records(np.repeat(np.arange(n), per_item), [f"a{w}" for w in who.ravel()],
                                   [classes[v] for v in answers.ravel()], classes)
    return ann, truth


# ----------------------------------------------------------------------------- the container


def test_from_records_keeps_the_last_answer_per_annotator_and_item() -> None:
    ann = Annotations.from_records([0, 0, 1, 0], ["u1", "u2", "u1", "u1"], ["a", "b", "b", "b"], ["a", "b"])
    assert len(ann) == 3  # u1's first answer on item 0 was replaced by its correction
    assert ann.annotators == ("u1", "u2")
    rows = zip(ann.item.tolist(), ann.annotator.tolist(), ann.label.tolist(), strict=True)
    assert sorted(rows) == [(0, 0, 1), (0, 1, 1), (1, 0, 1)]


def test_from_records_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError, match="'c'"):
        Annotations.from_records([0], ["u"], ["c"], ["a", "b"])
    with pytest.raises(ValueError, match=">= 0"):
        Annotations.from_records([-1], ["u"], ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="differ in length"):
        Annotations.from_records([0, 1], ["u"], ["a"], ["a", "b"])
    with pytest.raises(ValueError, match="n_items"):
        Annotations.from_records([3], ["u"], ["a"], ["a", "b"], n_items=2)


# ----------------------------------------------------------------------------- Krippendorff's alpha


def test_alpha_matches_krippendorffs_published_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
    # 12 units with missing values, nominal alpha = 0.743.
    rows = [[1, 1, None, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
            [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [None, 5, 5, 5], [None, None, 1, 1], [None, 3, None, None]]
    ann = _wide([[None if v is None else v - 1 for v in row] for row in rows], names="ABCD",
                classes=("1", "2", "3", "4", "5"))
    assert krippendorff_alpha(ann) == pytest.approx(0.743, abs=5e-4)


def test_alpha_is_one_for_agreement_and_undefined_without_pairs_or_variety() -> None:
    assert krippendorff_alpha(_wide([[0, 0], [1, 1], [2, 2]])) == pytest.approx(1.0)
    assert krippendorff_alpha(_wide([[0, None], [None, 1]])) is None  # nothing labelled twice
    assert krippendorff_alpha(_wide([[0, 0], [0, 0]])) is None  # one class only: disagreement impossible
    assert krippendorff_alpha(_wide([[0, 1], [1, 0]])) < 0  # systematic disagreement: worse than chance


# ----------------------------------------------------------------------------- majority vote


def test_majority_vote_reports_ties_and_breaks_them_by_model_then_frequency_then_order() -> None:
    ann = _wide([[2, 2, 1], [1, 2, None], [0, 0, None], [0, 1, None], [2, None, None], [None, None, None]])
    vote = majority_vote(ann)
    # Answers overall: class 2 four times, classes 0 and 1 three times each. Item 1 (1 vs 2) goes to the
    # more frequent class 2, against the class order; item 3 (0 vs 1, equally frequent) to the first class.
    assert vote.label.tolist() == [2, 2, 0, 0, 2, -1]
    assert vote.tied.tolist() == [False, True, False, True, False, False]
    assert vote.agreement[:5].tolist() == pytest.approx([2 / 3, 0.5, 1.0, 0.5, 1.0])
    assert np.isnan(vote.agreement[5]) and np.isnan(vote.confidence[5])
    assert vote.label_names() == ["2", "2", "0", "0", "2", None]
    proba = np.full((6, 3), 1 / 3)
    proba[1] = [0.1, 0.8, 0.1]
    proba[3] = [0.2, 0.7, 0.1]
    assert majority_vote(ann, proba=proba).label.tolist() == [2, 1, 0, 1, 2, -1]  # the model breaks the ties
    summary = vote.summary()
    counts = (summary["tasks"], summary["annotations"], summary["multi_annotated_tasks"], summary["ties"])
    assert counts == (5, 10, 4, 2)


def test_weights_silence_an_annotator_and_ground_truth_wins() -> None:
    ann = _wide([[0, 1, 1], [2, 0, 0]], ground_truth={(1, "x")})
    assert majority_vote(ann).label.tolist() == [1, 2]  # item 1: x's ground truth beats two votes
    silenced = majority_vote(ann, weights=np.array([1.0, 0.0, 0.0]))
    assert silenced.label[0] == 0
    assert silenced.confidence[1] == 1.0
    with pytest.raises(ValueError, match="weights"):
        majority_vote(ann, weights=np.array([1.0, -1.0, 0.0]))


# ----------------------------------------------------------------------------- Dawid-Skene


def test_dawid_skene_beats_the_vote_with_annotators_of_unequal_skill() -> None:
    ann, truth = _crowd("0.9,0.75,0.6")
    vote, ds = majority_vote(ann), dawid_skene(ann)
    assert np.mean(ds.label == truth) >= np.mean(vote.label == truth) + 0.005
    # and it recovers each annotator's accuracy (the diagonal of its confusion matrix, averaged over classes)
    accuracy = {ann.annotators[a]: float(np.mean(np.diag(ds.confusion[a]))) for a in range(3)}
    assert accuracy == pytest.approx({"a0": 0.9, "a1": 0.75, "a2": 0.6}, abs=0.03)
    assert ds.iterations < 100 and np.allclose(ds.proba.sum(axis=1), 1.0)


def test_dawid_skene_uses_the_model_as_each_items_prior() -> None:
    ann, truth = _crowd("0.9,0.75,0.6", per_item=1)  # one answer per item: the vote can only copy it
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (truth.size, 5))
    logits[np.arange(truth.size), truth] += 2.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    plain, with_model = dawid_skene(ann), dawid_skene(ann, proba=proba)
    assert with_model.method == "dawid_skene+model"
    assert np.mean(with_model.label == truth) > np.mean(plain.label == truth) + 0.02
    with pytest.raises(ValueError, match="shape"):
        dawid_skene(ann, proba=proba[:10])


def test_dawid_skene_keeps_ground_truth() -> None:
    ann = _wide([[0, 1, 1], [2, 2, 2], [1, 1, 0]], ground_truth={(0, "x")})
    ds = dawid_skene(ann)
    assert ds.label[0] == 0 and ds.confidence[0] == 1.0 and ds.proba[0].tolist() == [1.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- CROWDLAB


ROWS = [[0, 0, 1], [1, 1, None], [2, None, 2], [0, 1, 2], [1, None, None], [None, 2, 2], [0, 0, 0], [2, 1, None]]
PROBA = np.array([[.7, .2, .1], [.2, .6, .2], [.1, .2, .7], [.3, .4, .3], [.5, .3, .2], [.2, .2, .6], [.8, .1, .1],
                  [.2, .5, .3]])


def test_crowdlab_matches_cleanlab() -> None:
    # Reference: cleanlab 2.9.0, get_label_quality_multiannotator(pd.DataFrame(ROWS, columns=list("xyz")), PROBA,
    # return_weights=True) -> consensus_label, consensus_quality_score, model_weight, annotator_weight.
    result = crowdlab(_wide(ROWS), PROBA)
    assert result.label.tolist() == [0, 1, 2, 1, 0, 2, 0, 1]
    assert result.confidence.tolist() == pytest.approx(
        [0.682598, 0.642449, 0.716112, 0.392282, 0.449309, 0.634909, 0.796069, 0.487755], abs=1e-6)
    assert result.weights["model"] == pytest.approx(1.5)
    assert result.weights["annotators"] == pytest.approx([2 / 9, 2 / 9, 0.125])


def test_crowdlab_at_least_as_accurate_as_the_vote() -> None:
    ann, truth = _crowd("0.9,0.75,0.6")
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1, (truth.size, 5))
    logits[np.arange(truth.size), truth] += 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert np.mean(crowdlab(ann, proba).label == truth) >= np.mean(majority_vote(ann).label == truth)

"""model.crowd.issues: cross-fitted probabilities (no row scored by a model that saw it), confident learning,
the label-issue ranking and ActiveLab's scores."""

from __future__ import annotations

import numpy as np
import pytest

from model.crowd import Annotations, activelab_scores, cross_fitted_proba, dawid_skene, label_issues
from model.crowd.issues import confident_learning, crowd_label_issues, label_quality, relabel_or_new
from model.crowd.profiles import draw_answers, parse_profile
from model.estimators import make_estimator


class Recording:
    """An estimator that remembers which rows it was fitted on and which it scored (rows are their own ids)."""

    log: list[tuple[set[int], list[int]]] = []

    def __init__(self, classes: list[str], drop: str | None = None) -> None:
        self.classes, self.drop = classes, drop

    def fit(self, X, y):
        self.fitted = {int(x) for x in X}
        self.classes_ = np.asarray([c for c in self.classes if c != self.drop])
        return self

    def predict_proba(self, X):
        Recording.log.append((self.fitted, [int(x) for x in X]))
        out = np.zeros((len(X), len(self.classes_)))
        out[:, 0] = 1.0
        return out


def test_no_row_is_scored_by_a_model_that_saw_it() -> None:
    Recording.log = []
    n = 53
    y = [("a", "b", "c")[i % 3] for i in range(n)]
    proba, fold = cross_fitted_proba(lambda: Recording(["a", "b", "c"]), list(range(n)), y, ["a", "b", "c"])
    scored = [row for _, rows in Recording.log for row in rows]
    assert sorted(scored) == list(range(n))  # every row scored, exactly once
    for fitted, rows in Recording.log:
        assert fitted.isdisjoint(rows)  # by a model that never saw it
        assert len(fitted) + len(rows) == n  # ... and that saw all the other rows
        assert len({int(fold[r]) for r in rows}) == 1
    assert len(Recording.log) == 5 and proba.shape == (n, 3) and np.allclose(proba.sum(axis=1), 1.0)


def test_fold_models_columns_are_mapped_onto_the_classes() -> None:
    # A fold model whose classes_ lack "a" and are ordered differently: columns follow the names, "a" gets 0.
    Recording.log = []
    proba, _ = cross_fitted_proba(lambda: Recording(["c", "b", "a"], drop="a"), list(range(10)), ["b", "c"] * 5,
                                  ["a", "b", "c"], n_folds=2)
    assert proba[:, 0].tolist() == [0.0] * 10 and proba[:, 2].tolist() == [1.0] * 10  # classes_[0] == "c"


def test_cross_fitted_proba_with_the_servers_estimator_and_too_few_rows() -> None:
    texts = [f"{w} {w} report number {i}" for i, w in enumerate(["invoice", "parcel", "password"] * 10)]
    y = ["billing", "shipping", "account"] * 10
    classes = ["account", "billing", "shipping"]
    proba, fold = cross_fitted_proba(lambda: make_estimator("margin", "text", classes, False), texts, y, classes)
    assert proba.shape == (30, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.mean(np.array(classes)[proba.argmax(axis=1)] == np.array(y)) > 0.9
    assert sorted(set(fold.tolist())) == [0, 1, 2, 3, 4]
    lonely, lonely_fold = cross_fitted_proba(lambda: make_estimator("margin", "text", classes, False), texts[:1],
                                             y[:1], classes)
    assert np.isnan(lonely).all() and lonely_fold.tolist() == [-1]
    with pytest.raises(ValueError, match="n_folds"):
        cross_fitted_proba(lambda: None, texts, y, classes, n_folds=1)


def test_confident_learning_thresholds_and_joint() -> None:
    given = np.array([0, 0, 0, 1, 1, 1])
    proba = np.array([[.9, .1], [.8, .2], [.2, .8], [.3, .7], [.1, .9], [.6, .4]])
    thresholds, joint, confident = confident_learning(given, proba)
    assert thresholds.tolist() == pytest.approx([(.9 + .8 + .2) / 3, (.7 + .9 + .4) / 3])
    # row 2 (given 0, p=.8 for 1 >= .667) and row 5 (given 1, p=.6 for 0 >= .633 is false; p=.4 < .667 too: none)
    assert confident.tolist() == [0, 0, 1, 1, 1, -1]
    assert joint.tolist() == [[2, 1], [0, 2]]
    assert label_quality(given, proba).tolist() == pytest.approx([.9, .8, .2, .7, .9, .4])
    assert label_quality(given, proba, "normalized_margin").tolist() == pytest.approx([.9, .8, .2, .7, .9, .4])
    with pytest.raises(ValueError, match="method"):
        label_quality(given, proba, "vibes")


def test_label_issues_rank_flipped_labels_first() -> None:
    rng = np.random.default_rng(0)
    n, k = 600, 4
    truth = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += 3.0
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    given = truth.copy()
    flipped = rng.choice(n, 60, replace=False)
    given[flipped] = (truth[flipped] + 1) % k
    classes = ["w", "x", "y", "z"]
    issues = label_issues([classes[g] for g in given], proba, classes)
    top = set(issues.index[:60].tolist())
    assert len(top & set(flipped.tolist())) / 60 >= 0.8  # precision at k = number of wrong labels
    assert issues.quality.tolist() == sorted(issues.quality.tolist())
    flagged = issues.index[issues.flagged]
    assert len(set(flagged.tolist()) & set(flipped.tolist())) / max(1, flagged.size) >= 0.7
    assert abs(issues.n_flagged - 60) < 40  # confident learning's estimate of how many are wrong
    row = issues.rows(limit=1)[0]
    assert set(row) == {"index", "given", "suggested", "quality", "flagged"}
    first = int(issues.index[0])
    assert row["given"] == classes[given[first]] and row["index"] == first
    assert row["suggested"] != row["given"]


def test_label_issues_skip_unscored_rows_and_refuse_unknown_labels() -> None:
    proba = np.array([[np.nan, np.nan], [0.9, 0.1], [0.2, 0.8]])
    issues = label_issues(["a", "b", "b"], proba, ["a", "b"])
    assert issues.index.tolist() == [1, 2] and issues.given.tolist() == [1, 1]
    with pytest.raises(ValueError, match="'q'"):
        label_issues(["a", "q", "b"], proba, ["a", "b"])


def test_crowd_label_issues_find_the_spammers_labels() -> None:
    rng = np.random.default_rng(3)
    n, k = 1200, 4
    truth = rng.integers(0, k, n)
    who, answers = draw_answers(truth, parse_profile("0.95,0.95,0.95,0.95,0.7,spam"), k, seed=3)
    classes = tuple("abcd")
    ann = Annotations.from_records(np.arange(n), [f"a{w}" for w in who[:, 0]], [classes[v] for v in answers[:, 0]],
                                   classes)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += 1.5  # a mediocre model: right ~65 % of the time
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    wrong = answers[:, 0] != truth
    crowd = crowd_label_issues(ann, dawid_skene(ann, proba=proba))
    model_only = label_issues(answers[:, 0], proba, classes)
    k_wrong = int(wrong.sum())
    precision = {name: float(np.mean(wrong[r.index[:k_wrong]]))
                 for name, r in (("crowd", crowd), ("model", model_only))}
    assert precision["crowd"] >= 0.5 and precision["crowd"] > precision["model"] + 0.05
    flagged = crowd.index[crowd.flagged]  # where the posterior overturns the label
    assert k_wrong / 3 <= flagged.size <= k_wrong and np.mean(wrong[flagged]) >= 0.8
    assert all(crowd.suggested[crowd.flagged] != crowd.given[crowd.flagged])
    with pytest.raises(ValueError, match="flag"):
        label_issues(answers[:, 0], proba, classes, flag="vibes")


def test_activelab_scores_match_cleanlab_and_prefer_split_items() -> None:
    rows = [[0, 0, 1], [1, 1, None], [2, None, 2], [0, 1, 2], [1, None, None], [None, 2, 2], [0, 0, 0], [2, 1, None]]
    proba = np.array([[.7, .2, .1], [.2, .6, .2], [.1, .2, .7], [.3, .4, .3], [.5, .3, .2], [.2, .2, .6],
                      [.8, .1, .1], [.2, .5, .3]])
    answers = [(i, a, str(v)) for i, row in enumerate(rows) for a, v in zip("xyz", row, strict=True) if v is not None]
    items, who, labels = zip(*answers, strict=True)
    ann = Annotations.from_records(items, who, labels, ["0", "1", "2"])
    unlabelled = np.array([[.9, .05, .05], [.4, .3, .3]])
    labelled, new = activelab_scores(ann, proba, unlabelled)
    # Reference: cleanlab 2.9.0 get_active_learning_scores with its temperature set to the one fitted here (0.5):
    # its own fit counts each item's answers into the first classes whatever they are (value_counts by position).
    assert labelled.tolist() == pytest.approx([0.790959, 0.7683, 0.833171, 0.434195, 0.561664, 0.767469, 0.869859,
                                               0.584993], abs=1e-6)
    assert new.tolist() == pytest.approx([0.919668, 0.455171], abs=1e-6)
    assert np.argmin(labelled) == 3  # the 0/1/2 split asks for another answer first
    assert relabel_or_new(labelled, new, 3) == [("relabel", 3), ("new", 1), ("relabel", 4)]


def test_activelab_with_one_answer_per_item_matches_cleanlab() -> None:
    ann = Annotations.from_records([0, 1, 2, 3], ["x", "y", "z", "x"], ["0", "1", "2", "1"], ["0", "1", "2"])
    proba = np.array([[.7, .2, .1], [.2, .6, .2], [.1, .2, .7], [.3, .4, .3]])
    labelled, new = activelab_scores(ann, proba, np.array([[.9, .05, .05], [.4, .3, .3]]))
    # Reference: cleanlab 2.9.0 get_active_learning_scores on the same single answers.
    assert labelled.tolist() == pytest.approx([0.577778, 0.511111, 0.577778, 0.377778], abs=1e-6)
    assert new.tolist() == pytest.approx([0.616667, 0.366667], abs=1e-6)


def test_crowd_round_runs_the_steps_in_order_on_text() -> None:
    from model.crowd import crowd_round

    words = {"billing": "invoice refund charge", "shipping": "parcel courier tracking", "account": "password login"}
    classes = sorted(words)
    rng = np.random.default_rng(0)
    truth = [classes[i % 3] for i in range(90)]
    texts = [f"{rng.choice(words[t].split())} {rng.choice(words[t].split())} please help {i}"
             for i, t in enumerate(truth)]
    items, who, labels = [], [], []
    for i, t in enumerate(truth):
        items += [i, i]
        who += ["careful", "spammer" if i % 2 else "careful2"]
        labels += [t, classes[int(rng.integers(0, 3))] if i % 2 else t]
    ann = Annotations.from_records(items, who, labels, classes, n_items=91)  # item 90: nobody labelled it
    step = crowd_round(ann, [*texts, "unlabelled"], lambda: make_estimator("margin", "text", classes, False))
    rows, targets = step.training_targets()
    assert rows.tolist() == list(range(90)) and targets == truth  # the careful annotators win every split
    assert np.isnan(step.proba[90]).all() and step.fold[90] == -1 and (step.fold[:90] >= 0).all()
    assert step.annotators[-1].annotator == "spammer"
    summary = step.summary(issues=3)
    assert (summary["tasks"], summary["annotations"], summary["multi_annotated_tasks"]) == (90, 180, 90)
    assert len(summary["label_issues"]) == 3 and summary["annotators"][-1]["annotator"] == "spammer"
    with pytest.raises(ValueError, match="method"):
        crowd_round(ann, texts, lambda: None, method="vibes")
    alone = crowd_round(Annotations.from_records([0], ["u"], ["billing"], classes), ["x"],
                        lambda: make_estimator("margin", "text", classes, False))
    assert alone.training_targets()[1] == ["billing"]  # one item: no honest score, the annotation alone

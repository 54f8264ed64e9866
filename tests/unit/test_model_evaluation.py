import json
import warnings

import pytest

from model.evaluation import evaluate

CLASSES = ["cat", "dog", "bird"]


def test_single_label_hand_values():
    y_true = ["cat", "cat", "dog", "dog"]
    y_pred = ["cat", "dog", "dog", "dog"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = evaluate(y_true, y_pred, CLASSES)
    json.dumps(out)
    assert out["n"] == 4
    assert out["accuracy"] == pytest.approx(0.75)
    # cat: P=1, R=1/2, F1=2/3; dog: P=2/3, R=1, F1=4/5; bird absent from both -> not averaged.
    assert out["macro_f1"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert out["per_class"]["cat"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert out["per_class"]["dog"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    )
    assert out["per_class"]["bird"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert list(out["per_class"]) == CLASSES
    assert type(out["per_class"]["cat"]["support"]) is int


def test_wrongly_predicted_absent_class_counts_in_macro():
    out = evaluate(["cat", "cat"], ["cat", "bird"], CLASSES)
    # cat: P=1, R=0.5, F1=2/3; bird: predicted but never true -> F1 0.
    assert out["macro_f1"] == pytest.approx((2 / 3 + 0.0) / 2)


def test_multi_label_hand_values():
    y_true = [["cat", "dog"], [], ["bird"]]
    y_pred = [["cat"], [], ["bird", "dog"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = evaluate(y_true, y_pred, CLASSES, multi_label=True)
    json.dumps(out)
    assert out["n"] == 3
    assert out["accuracy"] == pytest.approx(1 / 3)  # subset accuracy: only the empty row matches
    # cat: 1/1/1; dog: tp0 fp1 fn1 -> 0; bird: 1/1/1
    assert out["macro_f1"] == pytest.approx(2 / 3)
    assert out["per_class"]["dog"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert out["per_class"]["cat"]["support"] == 1


def test_multi_label_all_empty():
    out = evaluate([[], []], [[], []], CLASSES, multi_label=True)
    assert out["accuracy"] == 1.0 and out["macro_f1"] is None and out["n"] == 2


def test_empty_inputs():
    out = evaluate([], [], CLASSES)
    assert out["accuracy"] is None and out["macro_f1"] is None and out["n"] == 0
    assert out["per_class"]["dog"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    json.dumps(out)


def test_unknown_labels_and_bad_input():
    with pytest.raises(ValueError, match="'fish'"):
        evaluate(["cat"], ["fish"], CLASSES)
    with pytest.raises(ValueError, match="'fish'"):
        evaluate([["fish"]], [[]], CLASSES, multi_label=True)
    with pytest.raises(ValueError, match="lengths"):
        evaluate(["cat"], [], CLASSES)
    with pytest.raises(ValueError, match="lists"):
        evaluate(["cat"], ["cat"], CLASSES, multi_label=True)


def test_single_label_confusion_matrix():
    y_true = ["cat", "cat", "dog", "dog", "dog"]
    y_pred = ["cat", "dog", "dog", "dog", "cat"]
    confusion = evaluate(y_true, y_pred, CLASSES)["confusion"]
    json.dumps(confusion)
    # rows = true class, columns = predicted, in CLASSES order; "bird" never occurs but is present
    assert confusion == {"labels": CLASSES, "matrix": [[1, 1, 0], [1, 2, 0], [0, 0, 0]]}
    assert all(type(v) is int for row in confusion["matrix"] for v in row)


def test_single_label_confusion_matrix_predicted_only_class():
    confusion = evaluate(["cat", "cat"], ["cat", "bird"], CLASSES)["confusion"]
    assert confusion["matrix"] == [[1, 0, 1], [0, 0, 0], [0, 0, 0]]


def test_multi_label_confusion_per_class():
    y_true = [["cat", "dog"], [], ["bird"]]
    y_pred = [["cat"], [], ["bird", "dog"]]
    confusion = evaluate(y_true, y_pred, CLASSES, multi_label=True)["confusion"]
    json.dumps(confusion)
    assert confusion == {
        "labels": CLASSES,
        "per_class": {
            "cat": {"tp": 1, "fp": 0, "fn": 0, "tn": 2},
            "dog": {"tp": 0, "fp": 1, "fn": 1, "tn": 1},
            "bird": {"tp": 1, "fp": 0, "fn": 0, "tn": 2},
        },
    }


def test_confusion_of_empty_inputs_is_all_zero():
    single = evaluate([], [], CLASSES)["confusion"]
    assert single == {"labels": CLASSES, "matrix": [[0, 0, 0], [0, 0, 0], [0, 0, 0]]}
    multi = evaluate([], [], CLASSES, multi_label=True)["confusion"]
    assert multi["labels"] == CLASSES
    assert multi["per_class"] == {c: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for c in CLASSES}


def test_multi_label_with_one_class_scores_the_label_not_its_absence():
    # A one-column indicator matrix must not be read as a binary vector with positive class 0.
    out = evaluate([["cat"], [], ["cat"]], [["cat"], ["cat"], []], ["cat"], multi_label=True)
    assert out["per_class"]["cat"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert out["macro_f1"] == pytest.approx(0.5)
    assert out["accuracy"] == pytest.approx(1 / 3)
    assert out["confusion"]["per_class"] == {"cat": {"tp": 1, "fp": 1, "fn": 1, "tn": 0}}

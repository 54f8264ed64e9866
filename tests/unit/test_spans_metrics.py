"""Span metrics (model.spans.metrics) on hand-computed examples."""

import json

import pytest

from model.spans.metrics import evaluate_spans, prf


def S(start, end, label):
    return {"start": start, "end": end, "label": label}


TEXT = "Alice Smith met Bob in Paris"  # tokens: Alice Smith met Bob in Paris (0-5, 6-11, 12-15, 16-19, 20-22, 23-28)


def test_exact_and_token_overlap():
    gold = [[S(0, 11, "PER"), S(16, 19, "PER"), S(23, 28, "LOC")]]
    pred = [[S(0, 5, "PER"), S(16, 19, "PER"), S(23, 28, "ORG"), S(12, 15, "LOC")]]
    out = evaluate_spans(gold, pred, texts=[TEXT], labels=["PER", "LOC", "ORG"])
    # exact: one hit (Bob) out of 4 predicted and 3 gold
    assert (out["true_positives"], out["n_pred"], out["n_true"]) == (1, 4, 3)
    assert out["precision"] == pytest.approx(0.25) and out["recall"] == pytest.approx(1 / 3)
    assert out["f1"] == pytest.approx(2 * 0.25 * (1 / 3) / (0.25 + 1 / 3))
    # tokens: gold units {Alice/PER, Smith/PER, Bob/PER, Paris/LOC}; predicted {Alice/PER, Bob/PER, Paris/ORG, met/LOC}
    assert out["token_precision"] == pytest.approx(0.5) and out["token_recall"] == pytest.approx(0.5)
    assert out["token_f1"] == pytest.approx(0.5) and out["token_unit"] == "token"
    per = out["per_label"]
    assert list(per) == ["PER", "LOC", "ORG"]
    assert per["PER"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "n_pred": 2}
    assert per["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "n_pred": 1}
    assert per["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "n_pred": 1}  # found what is not
    json.dumps(out)  # JSON-able as it is


def test_characters_without_texts_and_labels_found_in_the_spans():
    out = evaluate_spans([[S(0, 4, "A")]], [[S(2, 6, "A"), S(8, 9, "B")]])
    # characters: gold {0,1,2,3}/A, predicted {2,3,4,5}/A + {8}/B -> 2 hits, 5 predicted, 4 gold
    assert out["token_unit"] == "char"
    assert out["token_precision"] == pytest.approx(0.4) and out["token_recall"] == pytest.approx(0.5)
    assert list(out["per_label"]) == ["A", "B"] and out["f1"] == 0.0


def test_no_spans_anywhere_and_duplicates():
    nothing = evaluate_spans([[], []], [[], []], texts=["a", "b"])
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (1.0, 1.0, 1.0)
    assert nothing["token_f1"] == 1.0 and nothing["per_label"] == {}
    missed = evaluate_spans([[S(0, 1, "A")]], [[]])
    assert (missed["precision"], missed["recall"], missed["f1"]) == (0.0, 0.0, 0.0)
    twice = evaluate_spans([[S(0, 1, "A")]], [[S(0, 1, "A"), S(0, 1, "A")]])
    assert twice["true_positives"] == 1 and twice["precision"] == 0.5
    with pytest.raises(ValueError):
        evaluate_spans([[]], [[], []])


def test_prf():
    assert prf(0, 0, 0) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert prf(0, 3, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert prf(2, 4, 2) == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3)}

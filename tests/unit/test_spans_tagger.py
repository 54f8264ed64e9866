"""SpanTagger (model.spans.tagger) and the CRF posteriors under it (model.spans.crf)."""

import itertools
import zipfile

import numpy as np
import pycrfsuite
import pytest
from sklearn.base import clone

from model import arrays_io, persistence
from model.scored import Scored
from model.scoring import order, score
from model.spans.crf import Chain, emission_scores, forward_backward
from model.spans.features import sequence_features
from model.spans.metrics import evaluate_spans
from model.spans.synthetic import LABELS, make_documents
from model.spans.tagger import SpanTagger
from model.spans.tokens import tag_segments, tokenize

LABEL_NAMES = list(LABELS)


@pytest.fixture(scope="module")
def english():
    X, y = make_documents(120, seed=1, ambiguity=0.1)
    return X, y, SpanTagger(labels=LABEL_NAMES + ["MISC"]).fit(X, y)


def test_learns_a_templated_task(english):
    _, _, tagger = english
    X_test, y_test = make_documents(100, seed=9)
    figures = evaluate_spans(y_test, tagger.predict(X_test), texts=X_test, labels=tagger.labels_)
    assert figures["f1"] > 0.8 and figures["token_f1"] > 0.8
    assert tagger.mode_ == "joint" and tagger.labels_ == LABEL_NAMES + ["MISC"]
    assert tagger.span_counts_[-1] == 0 and tagger.misaligned_ == []


@pytest.mark.parametrize("language", ["ja", "zh"])
def test_learns_japanese_and_chinese(language):
    X, y = make_documents(60, seed=1, language=language)
    X_test, y_test = make_documents(60, seed=4, language=language)
    tagger = SpanTagger(labels=LABEL_NAMES).fit(X, y)
    assert tagger.misaligned_ == []  # per-character Han and kana runs: every span lies on tokens
    assert evaluate_spans(y_test, tagger.predict(X_test), texts=X_test)["f1"] > 0.8


def test_predicted_spans_are_on_the_text(english):
    _, _, tagger = english
    text = "On March 3, Alice Johnson met Bob Smith at the Globex headquarters."
    spans = tagger.predict([text])[0]
    assert {(text[s["start"]:s["end"]], s["label"]) for s in spans} >= {("Alice Johnson", "PER"), ("Globex", "ORG")}
    for s in spans:
        assert set(s) == {"start", "end", "label", "score", "text"} and 0.0 <= s["score"] <= 1.0
        assert s["text"] == text[s["start"]:s["end"]]


def test_persistence_round_trip_without_pickle(english):
    X, _, tagger = english
    before = tagger.predict(X[:20])
    assert "_taggers" in tagger.__dict__  # opened by predict...
    data = persistence.dumps(tagger)
    assert "_taggers" in tagger.__dict__  # ...and saving did not close it
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as zf:
        assert arrays_io.MANIFEST in zf.namelist()  # the native format: no skops, no pickle
    loaded = persistence.loads(data)
    assert "_taggers" not in loaded.__dict__ and loaded.predict(X[:20]) == before
    assert isinstance(loaded.models_[0], np.ndarray) and loaded.models_[0].dtype == np.uint8
    np.testing.assert_array_equal(loaded.score_items("least_confidence", X[:20]).uncertainty,
                                  tagger.score_items("least_confidence", X[:20]).uncertainty)


def test_fits_edge_cases():
    one = SpanTagger().fit(["Alice met Bob ."], [[{"start": 0, "end": 5, "label": "PER"}]])
    assert one.labels_ == ["PER"] and one.predict(["Alice met Bob ."])[0][0]["label"] == "PER"
    nothing = SpanTagger(labels=["PER"]).fit(["no entities here", ""], [[], None])
    assert nothing.models_ == [None] and nothing.predict(["Alice", ""]) == [[], []]
    scored = nothing.score_items("least_confidence", ["Alice", ""])
    np.testing.assert_array_equal(scored.uncertainty, [0.0, 0.0])
    np.testing.assert_array_equal(scored.decision, [1.0, 1.0])
    empty_doc = one.score_items("token_entropy", ["", "Alice"])
    assert empty_doc.labels[0] == [] and empty_doc.uncertainty[0] == 0.0 and empty_doc.decision[0] == 1.0
    with pytest.raises(ValueError):
        SpanTagger().fit([], [])
    with pytest.raises(ValueError):
        SpanTagger().fit(["a"], [[], []])
    with pytest.raises(TypeError):
        SpanTagger().fit([b"bytes"], [[]])
    with pytest.raises(ValueError):
        SpanTagger(mode="nested").fit(["a"], [[]])


def test_estimator_contract():
    tagger = SpanTagger(labels=["PER"], c1=0.2)
    assert clone(tagger).get_params() == tagger.get_params()
    X = ["Alice met Bob ."] * 3
    fitted = tagger.fit(X, [[{"start": 0, "end": 5, "label": "PER"}]] * 3)
    assert fitted is tagger and [(s["start"], s["end"]) for s in fitted.predict(X[:1])[0]] == [(0, 5)]
    refit = tagger.fit(X, [[{"start": 10, "end": 13, "label": "PER"}]] * 3)
    assert [(s["start"], s["end"]) for s in refit.predict(X[:1])[0]] == [(10, 13)]  # not the first model's answer


def test_overlapping_spans_train_one_chain_per_label():
    text = "Bank of New York Mellon opened in Paris ."
    y = [{"start": 0, "end": 23, "label": "ORG"}, {"start": 8, "end": 16, "label": "LOC"},
         {"start": 34, "end": 39, "label": "LOC"}]
    tagger = SpanTagger(labels=["ORG", "LOC", "PER"]).fit([text] * 5, [y] * 5)
    assert tagger.mode_ == "per_label" and len(tagger.models_) == 3 and tagger.models_[2] is None
    got = {(s["start"], s["end"], s["label"]) for s in tagger.predict([text])[0]}
    assert got == {(0, 23, "ORG"), (8, 16, "LOC"), (34, 39, "LOC")}
    joint = SpanTagger(labels=["ORG", "LOC"], mode="joint").fit([text] * 5, [y] * 5)
    assert joint.mode_ == "joint"
    assert [m["reason"] for m in joint.misaligned_] == ["overlap"] * 5


def test_misaligned_training_spans_are_reported_and_snapped():
    X = ["Alice Johnson visited Paris.", "Bob went to Berlin."]
    y = [[{"start": 0, "end": 13, "label": "PER"}, {"start": 22, "end": 26, "label": "LOC"}],
         [{"start": 12, "end": 18, "label": "LOC"}, {"start": 0, "end": 3, "label": "ORG"}]]
    tagger = SpanTagger(labels=["PER", "LOC"]).fit(X, y)
    assert [(m["doc"], m["reason"], m["snapped"]) for m in tagger.misaligned_] == [
        (0, "end_inside_token", [22, 27]), (1, "unknown_label", None)]
    assert tagger.span_counts_ == [1, 2]


def test_score_items_through_the_kernel(english):
    X, _, tagger = english
    pool = X[:30]
    for strategy in ("least_confidence", "mnlp", "token_entropy", "token_entropy_mean", "random", "margin", "bald"):
        scored = score(tagger, strategy, pool, with_features=True)
        assert isinstance(scored, Scored) and len(scored) == 30
        assert scored.probs.shape == (30, len(tagger.labels_))
        assert np.all((scored.uncertainty >= 0) & (scored.uncertainty <= 1))
        np.testing.assert_allclose(scored.confidence, 1 - scored.uncertainty)
        assert np.all((scored.decision > 0) & (scored.decision <= 1))
        assert scored.features.shape[0] == 30
    queue = order("cluster", scored, random_state=0)
    assert sorted(queue.order.tolist()) == list(range(30))
    for doc, row in zip(scored.labels, scored.probs, strict=True):
        for span in doc:
            assert row[tagger.labels_.index(span["label"])] >= span["score"]
    empty = score(tagger, "least_confidence", [], with_features=True)
    assert len(empty) == 0 and empty.probs.shape == (0, len(tagger.labels_))


def _crfsuite(tagger):
    """CRFsuite's own tagger on the stored model, and the bytes it reads (it does not copy them: keep them)."""
    blob = tagger.models_[0].tobytes()
    crf = pycrfsuite.Tagger()
    crf.open_inmemory(blob)
    return crf, blob


def test_least_confidence_is_one_minus_the_path_probability(english):
    X, _, tagger = english
    scored = tagger.score_items("least_confidence", X[:10])
    crf, _blob = _crfsuite(tagger)
    for i, text in enumerate(X[:10]):
        feats = sequence_features(tokenize(text))
        p = crf.probability(crf.tag(feats))
        assert scored.decision[i] == pytest.approx(p, rel=1e-4)
        assert scored.uncertainty[i] == pytest.approx(1 - p, abs=1e-4)


def test_marginals_match_crfsuite(english):
    X, _, tagger = english
    crf, _blob = _crfsuite(tagger)
    docs = [sequence_features(tokenize(x)) for x in X[:5]]
    chains = forward_backward(emission_scores(docs, tagger.attributes_[0], tagger.emission_[0]),
                              tagger.transition_[0])
    for feats, chain in zip(docs, chains, strict=True):
        crf.set(feats)
        expected = np.array([[crf.marginal(s, t) for s in tagger.states_[0]] for t in range(len(feats))])
        np.testing.assert_allclose(chain.marginals(), expected, atol=1e-4)


def _brute_force(scores, transition, event):
    """Sum of P(path) over every path for which ``event(path)`` holds."""
    n, k = scores.shape
    total = z = 0.0
    for path in itertools.product(range(k), repeat=n):
        w = np.exp(sum(scores[t, s] for t, s in enumerate(path)) + sum(transition[a, b] for a, b in
                                                                       zip(path, path[1:], strict=False)))
        z += w
        total += w if event(path) else 0.0
    return total / z


def test_span_probability_is_exact():
    rng = np.random.default_rng(0)
    states = ["O", "B-0", "I-0", "B-1", "I-1"]
    scores, transition = rng.normal(0, 1.5, (5, 5)), rng.normal(0, 1.5, (5, 5))
    chain: Chain = forward_backward([scores], transition)[0]
    for first, last, label in [(0, 1, 0), (1, 3, 0), (2, 5, 1), (0, 5, 0), (4, 5, 1)]:
        begin, inside = 1 + 2 * label, 2 + 2 * label

        def event(path, first=first, last=last, label=label):
            segments = tag_segments([states[s] for s in path])
            return (first, last, str(label)) in segments

        expected = _brute_force(scores, transition, event)
        assert chain.segment_probability(first, last, begin, inside, [begin, inside]) == pytest.approx(expected)
    path = [0, 1, 2, 0, 3]
    assert np.exp(chain.path_log_prob(path)) == pytest.approx(_brute_force(scores, transition,
                                                                          lambda p: list(p) == path))


def test_span_scores_are_roughly_calibrated():
    """On a task with built-in ambiguity (names that say nothing about their type, in contexts that say
    nothing either, labelled "person" 60 % of the time), the spans' scores match how often they are right:
    overall (expected calibration error over five bands) and among the unsure ones."""
    X, y = make_documents(200, seed=11, ambiguity=0.3)
    X_test, y_test = make_documents(200, seed=12, ambiguity=0.3)
    tagger = SpanTagger(labels=LABEL_NAMES).fit(X, y)
    gold = {(i, s["start"], s["end"], s["label"]) for i, doc in enumerate(y_test) for s in doc}
    scores, right = [], []
    for i, doc in enumerate(tagger.predict(X_test)):
        for s in doc:
            scores.append(s["score"])
            right.append((i, s["start"], s["end"], s["label"]) in gold)
    scores, right = np.asarray(scores), np.asarray(right, dtype=float)
    bands = np.digitize(scores, [0.2, 0.4, 0.6, 0.8])
    gap = sum(abs(scores[bands == b].mean() - right[bands == b].mean()) * np.sum(bands == b)
              for b in np.unique(bands)) / len(scores)
    assert gap < 0.05
    unsure = scores < 0.8
    assert unsure.sum() >= 50  # the ambiguous names do come out unsure
    assert abs(scores[unsure].mean() - right[unsure].mean()) < 0.1
    assert 0.45 < right[unsure].mean() < 0.75  # about the 60 % the task allows


def test_transform_and_cost(english):
    X, _, tagger = english
    features = tagger.transform(X[:4])
    assert features.shape[0] == 4 and features.nnz > 0
    np.testing.assert_array_equal(tagger.cost(["a b c", ""]), [3, 0])
    blank = SpanTagger().fit(["...", "!"], [[], []])
    assert blank.vectorizer_ is None and blank.transform(["x"]).shape == (1, 1)

"""model.textfast: the fast text transform gives scikit-learn's matrix exactly, on any text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from model.features import make_text_features
from model.textfast import char_wb_ngrams, transform_text

TRAIN = [
    "Return the number of items in the queue.", "Open the file and read its header!", "refund my order, please",
    "The refunds arrived late; the order did not.", "x", "Größe des Puffers in Bytes", "emoji 😀 only :)",
    "tab\tseparated\nand new lines", "  leading and trailing  ", "a b c d e f g",
]
# Text that reaches the analyzers' corners: unicode whitespace, one-letter words, punctuation runs.
WORDS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
DOCS = st.lists(st.lists(st.one_of(WORDS, st.sampled_from(["the", "order", "refund", "a", "Größe", "😀"])),
                         max_size=12).map(lambda ws: " ".join(ws)), min_size=1, max_size=8)
SEPARATORS = st.sampled_from([" ", "  ", "\t", "\n", "\u3000", "\u00a0"])


def _same(a, b) -> None:
    assert type(a) is type(b) and a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data)  # exactly: the same arithmetic in the same order


@pytest.fixture(scope="module")
def union() -> FeatureUnion:
    return make_text_features().fit(TRAIN)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=DOCS)
def test_the_default_union_transforms_any_text_as_scikit_learn_does(union, docs):
    _same(transform_text(union, docs), union.transform(docs))


@settings(max_examples=100, deadline=None)
@given(docs=DOCS, sep=SEPARATORS, sizes=st.sampled_from([(1, 1), (2, 2), (3, 3), (2, 4), (1, 5), (4, 4)]))
def test_other_char_wb_sizes_and_separators_match(docs, sep, sizes):
    # Sizes the zip path does not take (ranges, n > 3) go word by word; both must match.
    docs = [sep.join(d.split(" ")) for d in docs]
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=sizes, sublinear_tf=True).fit(TRAIN + docs)
    fitted = FeatureUnion([("char", vectorizer)])
    _same(transform_text(fitted, docs), fitted.transform(docs))


def test_char_wb_ngrams_are_scikit_learns_for_a_range():
    analyze = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)).build_analyzer()
    for text in ["a", "ab", "abc de", "  x  yz ", "Größe 😀"]:
        assert list(char_wb_ngrams(text.lower(), 2, 4)) == analyze(text)


def test_a_dropped_block_and_unknown_text(union):
    # A first round of emoji-only texts drops the word block (features.drop_empty_text_blocks).
    only_chars = make_text_features()
    only_chars.set_params(word="drop")
    only_chars.fit([":) :(", "😀 😀", "!!"])
    docs = ["never seen", "", "😀 :)"]
    _same(transform_text(only_chars, docs), only_chars.transform(docs))
    _same(transform_text(union, ["", "   ", "zzzz qqqq"]), union.transform(["", "   ", "zzzz qqqq"]))


def test_anything_else_goes_through_its_own_transform():
    custom = FeatureUnion([("w", TfidfVectorizer(analyzer=str.split).fit(TRAIN))])
    weighted = FeatureUnion([("w", TfidfVectorizer().fit(TRAIN))], transformer_weights={"w": 2.0})
    for features in (custom, weighted):
        _same(transform_text(features, ["the order"]), features.transform(["the order"]))

"""Tokens with offsets and spans <-> BIO tags (model.spans.tokens)."""

import unicodedata

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from model.spans.tokens import (
    REASONS,
    align,
    bio_tags,
    overlapping,
    spans_from_tags,
    token_ranges,
    tokenize,
)

ALPHABET = "abcXYZ09 ,.-'_\n\t東京大阪人あいうのカタナー・한국어ไทยदि\u0301\u200b\u00a0🙂"
SEPARATORS = set(" \n\t\u200b\u00a0")


def _texts(tokens):
    return [t.text for t in tokens]


# --------------------------------------------------------------------------- tokenizer


def test_words_numbers_and_punctuation():
    tokens = tokenize("Dr. Smith paid $10.50 for 3kg, didn't he?")
    assert _texts(tokens) == ["Dr", ".", "Smith", "paid", "$", "10", ".", "50", "for", "3", "kg", ",", "didn", "'",
                              "t", "he", "?"]
    assert tokens[2].script == "latin" and tokens[5].script == "digit" and tokens[1].script == "punct"


def test_japanese_han_per_character_kana_by_run():
    tokens = tokenize("トヨタは東京で新車を発表した。ジョン・スミス")
    assert _texts(tokens) == ["トヨタ", "は", "東", "京", "で", "新", "車", "を", "発", "表", "した", "。",
                              "ジョン", "・", "スミス"]
    assert [t.script for t in tokens[:3]] == ["katakana", "hiragana", "han"]


def test_chinese_korean_thai_and_combining_marks():
    assert _texts(tokenize("张伟在北京工作。")) == ["张", "伟", "在", "北", "京", "工", "作", "。"]
    assert _texts(tokenize("서울에서 만나요")) == ["서", "울", "에", "서", "만", "나", "요"]
    assert _texts(tokenize("हिन्दी भाषा")) == ["हिन्दी", "भाषा"]  # vowel signs and virama stay in the word
    assert _texts(tokenize("café")) == ["café"]
    assert _texts(tokenize("cafe\u0301 2024年")) == ["cafe\u0301", "2024", "年"]
    thai = tokenize("สวัสดี")
    assert "".join(_texts(thai)) == "สวัสดี" and all(len(t.text) <= 2 for t in thai)


def test_separators_are_never_tokens():
    assert tokenize("") == [] and tokenize(" \t\n\u200b\ufeff\x00") == []
    assert _texts(tokenize("a\x00b\u200bc")) == ["a", "b", "c"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=40))
def test_offsets_round_trip(text):
    tokens = tokenize(text)
    covered = set()
    previous_end = 0
    for t in tokens:
        assert text[t.start:t.end] == t.text and t.start >= previous_end and t.end > t.start
        previous_end = t.end
        covered.update(range(t.start, t.end))
    for i, ch in enumerate(text):  # every character outside a token is a separator
        if i not in covered:
            assert ch in SEPARATORS or ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf"), repr(ch)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=ALPHABET, max_size=20), st.text(alphabet=ALPHABET, max_size=20))
def test_tokens_do_not_cross_a_space(a, b):
    joined = tokenize(a + " " + b)
    shift = len(a) + 1
    assert joined == tokenize(a) + [t._replace(start=t.start + shift, end=t.end + shift) for t in tokenize(b)]


# --------------------------------------------------------------------------- spans <-> tags


@st.composite
def aligned_spans(draw):
    """A text and spans on its token boundaries, none sharing a token."""
    text = draw(st.text(alphabet=ALPHABET, max_size=40))
    tokens = tokenize(text)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(tokens)), max_size=8))))
    spans = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        if draw(st.booleans()):
            label = draw(st.sampled_from(["PER", "LOC", "ORG"]))
            spans.append({"start": tokens[a].start, "end": tokens[b - 1].end, "label": label})
    return text, tokens, spans


@settings(max_examples=200, deadline=None)
@given(aligned_spans())
def test_span_tag_round_trip(case):
    text, tokens, spans = case
    tags, misaligned = align(text, spans)
    assert misaligned == []
    assert len(tags) == len(tokens)
    assert spans_from_tags(tokens, tags) == spans


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=ALPHABET, min_size=1, max_size=30), st.data())
def test_any_span_is_exact_or_reported(text, data):
    spans = [{"start": data.draw(st.integers(-2, len(text) + 2)), "end": data.draw(st.integers(-2, len(text) + 2)),
              "label": "X"} for _ in range(data.draw(st.integers(0, 4)))]
    tokens = tokenize(text)
    tags, reports = align(text, spans, tokens)
    reported = {m.index for m in reports}
    assert len(reported) == len(reports)  # one report per span
    boundaries = {t.start for t in tokens}, {t.end for t in tokens}
    found = {(s["start"], s["end"]) for s in spans_from_tags(tokens, tags)}
    for i, span in enumerate(spans):
        if i not in reported:  # exact: on token boundaries, and tagged
            assert span["start"] in boundaries[0] and span["end"] in boundaries[1]
            assert (span["start"], span["end"]) in found
    for m in reports:
        assert m.reason in REASONS
        if m.snapped is not None:
            assert m.snapped[0] in boundaries[0] and m.snapped[1] in boundaries[1]
            assert m.to_json(doc=3)["snapped"] == list(m.snapped)


def test_misaligned_spans_are_snapped_and_reported():
    text = "Barack Obama visited Paris and Berlin ."
    spans = [
        {"start": 0, "end": 12, "label": "PER"},  # exact
        {"start": 21, "end": 25, "label": "LOC"},  # "Pari": ends inside "Paris"
        {"start": 30, "end": 37, "label": "LOC"},  # " Berlin": leading space
        {"start": 2, "end": 4, "label": "PER"},  # inside "Barack", and inside the first span
        {"start": 12, "end": 13, "label": "PER"},  # a space only
        {"start": 5, "end": 99, "label": "PER"},  # past the end
        {"start": 0, "end": 6, "label": "NOPE"},  # not one of the labels
        {"start": "0", "end": 6, "label": "PER"},  # not a span
    ]
    tags, reports = align(text, spans, labels=["PER", "LOC"])
    assert tags == ["B-PER", "I-PER", "O", "B-LOC", "O", "B-LOC", "O"]
    by_index = {m.index: m for m in reports}
    assert 0 not in by_index
    assert (by_index[1].reason, by_index[1].snapped) == ("end_inside_token", (21, 26))
    assert (by_index[2].reason, by_index[2].snapped) == ("surrounding_space", (31, 37))
    assert (by_index[3].reason, by_index[3].snapped) == ("overlap", None)  # snapped, then collided: left out
    assert by_index[4].reason == "no_token" and by_index[5].reason == "bad_offsets"
    assert by_index[6].reason == "unknown_label" and by_index[7].reason == "not_a_span"
    assert len(reports) == 7
    assert align("in Oslo", [{"start": np.int64(3), "end": np.int64(7), "label": "LOC"}]) == (["O", "B-LOC"], [])
    report = by_index[1].to_json(doc=0)
    assert report == {"doc": 0, "start": 21, "end": 25, "label": "LOC", "index": 1, "reason": "end_inside_token",
                      "message": REASONS["end_inside_token"], "snapped": [21, 26]}


def test_adjacent_spans_of_one_label_stay_apart():
    text = "Alice Bob Carol"
    spans = [{"start": 0, "end": 5, "label": "PER"}, {"start": 6, "end": 9, "label": "PER"},
             {"start": 10, "end": 15, "label": "PER"}]
    tags, reports = align(text, spans)
    assert tags == ["B-PER", "B-PER", "B-PER"] and reports == []
    assert spans_from_tags(tokenize(text), tags) == spans
    two = [{"start": 0, "end": 9, "label": "PER"}, {"start": 10, "end": 15, "label": "PER"}]
    tags, _ = align(text, two)
    assert tags == ["B-PER", "I-PER", "B-PER"] and spans_from_tags(tokenize(text), tags) == two


def test_overlaps_are_detected():
    text = "Bank of New York Mellon"
    tokens = tokenize(text)
    nested = [{"start": 0, "end": 23, "label": "ORG"}, {"start": 8, "end": 16, "label": "LOC"}]
    ranges, reports = token_ranges(tokens, nested)
    assert reports == [] and overlapping(ranges) and overlapping(ranges, across_labels=True)
    same_label = [{"start": 0, "end": 16, "label": "ORG"}, {"start": 8, "end": 23, "label": "ORG"}]
    ranges, _ = token_ranges(tokens, same_label)
    assert overlapping(ranges) and not overlapping(ranges, across_labels=True)
    apart = [{"start": 0, "end": 4, "label": "ORG"}, {"start": 8, "end": 16, "label": "LOC"}]
    assert not overlapping(token_ranges(tokens, apart)[0])
    tags, reports = align(text, nested)  # one BIO sequence keeps the earliest, longest span
    assert tags == ["B-ORG"] + ["I-ORG"] * 4 and [m.reason for m in reports] == ["overlap"]


def test_lenient_decoding_of_stray_inside_tags():
    tokens = tokenize("a b c d")
    assert spans_from_tags(tokens, ["I-X", "I-X", "I-Y", "O"]) == [
        {"start": 0, "end": 3, "label": "X"}, {"start": 4, "end": 5, "label": "Y"}]
    assert bio_tags(3, []) == ["O", "O", "O"]


def test_cjk_spans_align_exactly():
    text = "田中太郎さんは東京へ行きました。"
    spans = [{"start": 0, "end": 4, "label": "PER"}, {"start": 7, "end": 9, "label": "LOC"}]
    tags, reports = align(text, spans)
    assert reports == []
    assert tags[:8] == ["B-PER", "I-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    assert spans_from_tags(tokenize(text), tags) == spans

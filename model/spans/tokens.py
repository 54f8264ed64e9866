"""Tokens with character offsets, and character spans <-> token tags (BIO) with every mismatch reported.

The tagger labels tokens; Label Studio stores spans as character offsets (``end`` exclusive), and the
offsets are the truth. This module is the only place the two meet.

How text becomes tokens (:func:`tokenize`), by script:

* scripts written with spaces (Latin, Cyrillic, Greek, Arabic, Devanagari, ...): runs of letters
  (with their combining marks, so a Hindi word is one token), runs of digits, and every other
  visible character (punctuation, symbols, emoji) as a token of its own. Letters and digits are
  split apart (``10km`` -> ``10`` ``km``, ``2024年`` -> ``2024`` ``年``): an annotator may mark the
  number alone, and a token boundary the data never uses costs nothing, while a missing one makes
  a span misaligned;
* Han characters (Chinese, Japanese kanji): one token per character. Chinese is written without
  spaces and labelloop ships no word segmenter; per-character tags are the standard way to tag
  Chinese entities, and every span an annotator can select starts and ends on a token;
* Hiragana and Katakana: one token per run of the same kana. A change of script is where Japanese
  words mostly change (a katakana loanword or name, then a hiragana particle: ``トヨタは``), so
  runs give word-like tokens whose boundaries entity spans fall on; a span ending inside a hiragana
  run (rare: particles and inflections are not entities) is snapped and reported;
* Hangul: one token per syllable block. Korean is written with spaces, but a particle is glued to
  the noun it marks (``서울에서`` = "in Seoul") and entity spans stop before it;
* Thai, Lao, Khmer, Myanmar (no spaces between words): one token per character with its combining
  marks, for the same reason as Han;
* whitespace, control characters and zero-width separators are never part of a token.

``granularity="word"`` configs: Label Studio then snaps a selection to the browser's word boundaries
(Unicode word breaks). Those are never finer than these tokens -- a word break falls between letters
and punctuation, at spaces, and (with a dictionary) between CJK words, all of which are token
boundaries here -- except inside a kana run, which a dictionary may split; so word-granularity spans
align exactly, and the tagger's own spans are whole words too. With the default ``symbol``
granularity an annotator can select part of a word; such a span is snapped (see below).

Spans and tags (:func:`token_ranges`, :func:`align`, :func:`spans_from_tags`): a span covers the tokens
it touches. One that starts or ends inside a token (or carries leading / trailing spaces) is *snapped*
to the tokens it covers for training -- an annotator who selected "Pari" of "Paris" meant the entity,
and leaving it out would teach the tagger that its tokens are outside any entity -- and reported
with the reason. Spans that cannot be used (bad offsets, no token, an unknown label, a collision
with another span) are left out and reported likewise. Nothing is dropped silently.
"""

from __future__ import annotations

import bisect
import numbers
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

OUTSIDE = "O"

# Code point ranges, by script. Kept as text so they go straight into character classes.
_HAN = "\u3005-\u3007\u3021-\u3029\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_HIRAGANA = "\u3041-\u309f"
_KATAKANA = "\u30a0-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9f"  # not U+30FB KATAKANA MIDDLE DOT
_HANGUL = "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff"
_NO_SPACE = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff"  # Thai, Lao, Myanmar, Khmer
_SEPARATORS = "\\s\x00-\x1f\x7f-\x9f\u200b\u2060\ufeff\ud800-\udfff"  # never inside a token


@lru_cache(maxsize=1)
def _marks() -> str:
    """Combining marks of the Basic Multilingual Plane (plus ZWNJ / ZWJ / soft hyphen) as a class body.

    Python's ``re`` has no ``\\p{M}``; without the marks a Devanagari or Thai word would fall apart at
    every vowel sign. Built once, lazily (about 10 ms).
    """
    ranges: list[list[int]] = []
    for cp in range(0x0300, 0x10000):
        if unicodedata.category(chr(cp))[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    body = "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)
    return body + "\u200c\u200d\u00ad"


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern[str]:
    special = _HAN + _HIRAGANA + _KATAKANA + _HANGUL + _NO_SPACE
    marks = _marks()
    letter = f"[^\\W\\d_{special}]"
    return re.compile(
        f"(?P<han>[{_HAN}])"
        f"|(?P<hiragana>[{_HIRAGANA}]+)"
        f"|(?P<katakana>[{_KATAKANA}]+)"
        f"|(?P<hangul>[{_HANGUL}][{marks}]*)"
        f"|(?P<cluster>[{_NO_SPACE}][{marks}]*)"
        f"|(?P<digit>\\d+)"
        f"|(?P<word>{letter}(?:{letter}|[{marks}])*)"
        f"|(?P<punct>[^{_SEPARATORS}][{marks}]*)"
    )


class Token(NamedTuple):
    """One token: its text, character offsets into the document (``end`` exclusive) and script."""

    text: str
    start: int
    end: int
    script: str


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text`` in order (see the module docstring); ``text[t.start:t.end] == t.text``."""
    tokens = []
    for match in _pattern().finditer(text):
        kind = match.lastgroup or "punct"
        piece = match.group()
        script = _word_script(piece[0]) if kind == "word" else _cluster_script(piece[0]) if kind == "cluster" else kind
        tokens.append(Token(piece, match.start(), match.end(), script))
    return tokens


@lru_cache(maxsize=4096)
def _word_script(char: str) -> str:
    """The script of a letter, from its Unicode name: ``latin``, ``cyrillic``, ``greek``, ``arabic``..."""
    name = unicodedata.name(char, "")
    return name.split(" ", 1)[0].lower() if name else "other"


def _cluster_script(char: str) -> str:
    cp = ord(char)
    return "thai" if cp < 0x0E80 else "lao" if cp < 0x0F00 else "myanmar" if cp < 0x1100 else "khmer"


# --------------------------------------------------------------------------- spans <-> token ranges

#: Why a span was snapped (used for training with covering-token offsets) or left out.
SNAPPED_REASONS = {
    "start_inside_token": "starts inside a token; snapped to the start of that token",
    "end_inside_token": "ends inside a token; snapped to the end of that token",
    "both_inside_tokens": "starts and ends inside tokens; snapped to the tokens it covers",
    "surrounding_space": "includes leading or trailing whitespace; trimmed to the tokens it covers",
}
LEFT_OUT_REASONS = {
    "not_a_span": "not a span: needs integer start and end and a string label",
    "bad_offsets": "offsets outside the text, or end <= start",
    "no_token": "covers no token (only whitespace)",
    "unknown_label": "its label is not one of the tagger's labels",
    "overlap": "overlaps another span that is kept, and a token carries one tag",
}
REASONS = {**SNAPPED_REASONS, **LEFT_OUT_REASONS}


@dataclass(frozen=True)
class Misaligned:
    """A span that does not fall on token boundaries, or could not be used: what, why, what was used.

    ``snapped`` is the ``(start, end)`` character range trained on instead, or None when the span was
    left out; ``reason`` is a key of :data:`REASONS`; ``index`` the span's position in its document's
    list. One span gets one report: a snapped span that then collides is reported as left out.
    """

    span: Any
    reason: str
    snapped: tuple[int, int] | None = None
    index: int = -1

    def to_json(self, doc: int | None = None) -> dict[str, Any]:
        """A JSON-able report (``doc``: the document's position, when reporting over a corpus)."""
        out: dict[str, Any] = {} if doc is None else {"doc": doc}
        span = self.span if isinstance(self.span, Mapping) else {}
        for key in ("start", "end", "label"):
            value = span.get(key)
            out[key] = int(value) if _is_int(value) else value if isinstance(value, str) else None
        out.update(index=self.index, reason=self.reason, message=REASONS[self.reason],
                   snapped=list(self.snapped) if self.snapped else None)
        return out


class TokenRange(NamedTuple):
    """A span on tokens: tokens ``first`` to ``last`` (exclusive) carry ``label``; ``index`` is the span's
    position in the input list."""

    first: int
    last: int
    label: str
    index: int


def token_ranges(tokens: Sequence[Token], spans: Iterable[Any], labels: Iterable[str] | None = None, *,
                 text_length: int | None = None) -> tuple[list[TokenRange], list[Misaligned]]:
    """Each usable span as a token range (snapped where needed), and a report of every span not exact.

    ``labels``: when given, spans with another label are left out (``unknown_label``). ``text_length``:
    when given, spans ending past it are left out (``bad_offsets``), as are negative or empty ones
    always. Overlaps are not resolved here (:func:`resolve_overlaps` does), so the caller can tell
    whether there are any.
    """
    limit = text_length if text_length is not None else float("inf")
    starts = [t.start for t in tokens]
    ends = [t.end for t in tokens]
    allowed = None if labels is None else set(labels)
    ranges: list[TokenRange] = []
    reports: list[Misaligned] = []
    for index, span in enumerate(spans):
        parsed = _parse_span(span)
        if parsed is None:
            reports.append(Misaligned(span, "not_a_span", index=index))
            continue
        start, end, label = parsed
        if not 0 <= start < end <= limit:
            reports.append(Misaligned(span, "bad_offsets", index=index))
            continue
        if allowed is not None and label not in allowed:
            reports.append(Misaligned(span, "unknown_label", index=index))
            continue
        first = bisect.bisect_right(ends, start)  # first token ending after the span's start
        last = bisect.bisect_left(starts, end)  # tokens before this one start before the span's end
        if first >= last:
            reports.append(Misaligned(span, "no_token", index=index))
            continue
        ranges.append(TokenRange(first, last, label, index))
        reason = _snap_reason(start, end, tokens[first], tokens[last - 1])
        if reason:
            reports.append(Misaligned(span, reason, (tokens[first].start, tokens[last - 1].end), index))
    return ranges, reports


def _parse_span(span: Any) -> tuple[int, int, str] | None:
    if not isinstance(span, Mapping):
        return None
    start, end, label = span.get("start"), span.get("end"), span.get("label")
    if not (_is_int(start) and _is_int(end) and isinstance(label, str)):
        return None
    return int(start), int(end), label


def _is_int(value: Any) -> bool:
    """An integer offset (numpy's too), but not a bool or a float that happens to be whole."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _snap_reason(start: int, end: int, first: Token, last: Token) -> str | None:
    start_inside, end_inside = first.start < start, last.end > end
    if start_inside and end_inside:
        return "both_inside_tokens"
    if start_inside:
        return "start_inside_token"
    if end_inside:
        return "end_inside_token"
    if first.start > start or last.end < end:
        return "surrounding_space"
    return None


def overlapping(ranges: Sequence[TokenRange], *, across_labels: bool = False) -> bool:
    """Do any two ranges share a token (``across_labels``: any two of different labels)?"""
    ordered = sorted(ranges)
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            if b.first >= a.last:
                break  # sorted by first token: no later range reaches back into ``a``
            if not across_labels or a.label != b.label:
                return True
    return False


def resolve_overlaps(ranges: Sequence[TokenRange], spans: Sequence[Any]) -> tuple[list[TokenRange], list[Misaligned]]:
    """Keep a set of ranges no two of which share a token: earliest first, the longer one on a tie.

    One BIO sequence gives each token one tag, so of two colliding spans one has to go; the other is
    reported (``overlap``), not dropped silently.
    """
    kept: list[TokenRange] = []
    reports: list[Misaligned] = []
    end = 0
    for r in sorted(ranges, key=lambda r: (r.first, -r.last, r.index)):
        if r.first < end:
            reports.append(Misaligned(spans[r.index], "overlap", index=r.index))
            continue
        kept.append(r)
        end = r.last
    return kept, reports


def bio_tags(n_tokens: int, ranges: Iterable[TokenRange]) -> list[str]:
    """BIO tags for non-overlapping ranges: ``B-label`` on a span's first token, ``I-label`` after it.

    Two adjacent spans of the same label stay two spans (``B I B``), which is why tags are BIO and
    not merely the label per token.
    """
    tags = [OUTSIDE] * n_tokens
    for r in ranges:
        tags[r.first] = f"B-{r.label}"
        for t in range(r.first + 1, r.last):
            tags[t] = f"I-{r.label}"
    return tags


def align(text: str, spans: Sequence[Any], tokens: Sequence[Token] | None = None,
          labels: Iterable[str] | None = None) -> tuple[list[str], list[Misaligned]]:
    """BIO tags of ``text``'s tokens for ``spans``, and a report of every span that was not exact.

    Snapped spans are tagged on the tokens they cover; colliding ones keep the earliest (longest on a
    tie) span. ``tokens`` defaults to :func:`tokenize`.
    """
    tokens = tokenize(text) if tokens is None else tokens
    ranges, reports = token_ranges(tokens, spans, labels, text_length=len(text))
    kept, collisions = resolve_overlaps(ranges, spans)
    return bio_tags(len(tokens), kept), merge_reports(reports, collisions)


def merge_reports(*groups: Iterable[Misaligned]) -> list[Misaligned]:
    """One report per span (the last one given wins: a left-out verdict after a snap), by span index."""
    by_index: dict[int, Misaligned] = {}
    for group in groups:
        for report in group:
            by_index[report.index] = report
    return [by_index[i] for i in sorted(by_index)]


def spans_from_tags(tokens: Sequence[Token], tags: Sequence[str]) -> list[dict[str, Any]]:
    """Character spans from BIO tags (the inverse of :func:`bio_tags` on token-aligned spans).

    Lenient, as CoNLL's scorer: an ``I-x`` that does not continue an ``x`` span starts one.
    """
    return [{"start": tokens[a].start, "end": tokens[b - 1].end, "label": label} for a, b, label in tag_segments(tags)]


def tag_segments(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(first, last_exclusive, label)`` of each span in a BIO sequence (lenient, see :func:`spans_from_tags`)."""
    out: list[tuple[int, int, str]] = []
    current: list[Any] | None = None
    for t, tag in enumerate(tags):
        prefix, label = tag[:2], tag[2:]
        if prefix == "I-" and current is not None and current[2] == label:
            current[1] = t + 1
            continue
        if current is not None:
            out.append((current[0], current[1], current[2]))
            current = None
        if prefix in ("B-", "I-"):
            current = [t, t + 1, label]
    if current is not None:
        out.append((current[0], current[1], current[2]))
    return out

"""A fitted text feature union's ``transform``, the same matrix in two thirds of the time.

Why: scoring a task the round did not score is mostly turning its text into tf-idf features, and
scikit-learn's ``CountVectorizer`` counts n-grams in a Python loop that looks each one up in the
vocabulary inside a ``try``/``except KeyError`` (most of a new text's character n-grams are known,
many of its word bigrams are not). Here every n-gram is looked up by ``map`` over
``vocabulary.get`` (in C) and numpy counts the (document, column) pairs in one sort; character
trigrams inside word boundaries (``char_wb``) are cut from the whole text by ``zip``. Everything after the
counts is scikit-learn's own arithmetic in its own order (sublinear tf, idf, L2 norm), so the
result equals ``union.transform(X)`` exactly; a unit test checks that on random texts. Measured on
1,000 docstrings (the default union, idle machine): 70 ms against scikit-learn's 103 ms.

Only what this module knows is taken over: a ``FeatureUnion`` of fitted ``TfidfVectorizer`` blocks
(or dropped ones) with no weights and no custom analyzer, tokenizer or preprocessor. Anything else
goes through its own ``transform``.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion
from sklearn.preprocessing import normalize


def transform_text(features: Any, X: Sequence[Any]) -> Any:
    """``features.transform(X)``, through :func:`tfidf_transform` when ``features`` is a union it covers."""
    blocks = _covered_blocks(features)
    if not blocks:  # not a union this module covers, or nothing kept: scikit-learn's own transform
        return features.transform(X)
    return sp.hstack([tfidf_transform(v, X) for v in blocks]).tocsr()


def _covered_blocks(features: Any) -> list[TfidfVectorizer]:
    """The kept blocks of an unweighted union of plain, fitted ``TfidfVectorizer`` s; [] for anything else."""
    if type(features) is not FeatureUnion or features.transformer_weights:
        return []
    blocks = [v for _, v in features.transformer_list if not (isinstance(v, str) and v == "drop")]
    return blocks if all(type(v) is TfidfVectorizer and _plain(v) for v in blocks) else []


def _plain(v: TfidfVectorizer) -> bool:
    """A fitted vectorizer with scikit-learn's own analysis (nothing user-supplied to run)."""
    return (hasattr(v, "vocabulary_") and v.analyzer in ("word", "char", "char_wb") and v.tokenizer is None
            and v.preprocessor is None and v.input == "content")


def tfidf_transform(v: TfidfVectorizer, X: Sequence[Any]) -> sp.csr_matrix:
    """``v.transform(X)`` for a fitted, plain ``TfidfVectorizer`` (see the module docstring)."""
    counts = _counts(v, X)
    if v.binary:
        counts.data.fill(1)
    # scikit-learn's TfidfTransformer.transform, step for step.
    if v.sublinear_tf:
        np.log(counts.data, counts.data)
        counts.data += 1.0
    if v.use_idf:
        counts.data *= v.idf_[counts.indices]
    if v.norm is not None:
        counts = normalize(counts, norm=v.norm, copy=False)
    return counts


def _counts(v: TfidfVectorizer, X: Sequence[Any]) -> sp.csr_matrix:
    """The document-term count matrix (``v.dtype``, sorted indices), as ``CountVectorizer`` builds it.

    Every n-gram of every document is mapped to its column in C (``map`` over ``vocabulary.get``
    with -1 for unknown ones); numpy then counts the (document, column) pairs in one sort.
    """
    lookup, analyze, width = v.vocabulary_.get, _analyzer(v), len(v.vocabulary_)
    columns: list[int] = []
    lengths = array("q")
    for doc in X:
        before = len(columns)
        columns += map(lookup, analyze(doc), repeat(-1))
        lengths.append(len(columns) - before)
    n_docs = len(lengths)
    column = np.asarray(columns, dtype=np.int64)
    row = np.repeat(np.arange(n_docs, dtype=np.int64), np.frombuffer(lengths, dtype=np.int64))
    known = column >= 0
    pairs, counts = np.unique(row[known] * width + column[known], return_counts=True)
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs // width, minlength=n_docs), out=indptr[1:])
    index_dtype = np.int32 if len(pairs) <= np.iinfo(np.int32).max and width <= np.iinfo(np.int32).max else np.int64
    matrix = sp.csr_matrix((counts.astype(v.dtype), (pairs % width).astype(index_dtype), indptr.astype(index_dtype)),
                           shape=(n_docs, width))
    matrix.has_sorted_indices = True  # np.unique sorted the pairs: by row, then column
    return matrix


def _analyzer(v: TfidfVectorizer) -> Callable[[Any], Iterable[str]]:
    """``v.build_analyzer()``, with ``char_wb`` n-grams cut by slicing (same n-grams, same order)."""
    if v.analyzer != "char_wb":
        return v.build_analyzer()
    preprocess, decode = v.build_preprocessor(), v.decode
    min_n, max_n = v.ngram_range

    def analyze(doc: Any) -> Iterable[str]:
        return char_wb_ngrams(preprocess(decode(doc)), min_n, max_n)

    return analyze


def char_wb_ngrams(text: str, min_n: int, max_n: int) -> Iterable[str]:
    """The character n-grams inside word boundaries that scikit-learn's ``char_wb`` analyzer makes,
    or (one size, 2 or 3) a superset whose extra n-grams no vocabulary holds.

    scikit-learn pads each whitespace-separated word with one space each side and, for each n,
    takes every window of n characters, at least one (the whole padded word when it is shorter
    than n); a word shorter than n stops the larger sizes. For one size n of 2 or 3 every padded
    word has at least n characters, so the words are joined with two spaces and every window of
    the whole string is taken, by ``zip`` in C: the extra windows, across a join, hold two spaces,
    which no word's n-gram does, so they are never in a vocabulary fitted by the same analyzer and
    the lookup drops them (a unigram window of one space would be). Other sizes go word by word.
    """
    words = text.split()
    if 2 <= min_n == max_n <= 3:
        joined = " " + "  ".join(words) + " "
        return map("".join, zip(*(joined[k:] for k in range(min_n)), strict=False))
    grams: list[str] = []
    for word in words:
        padded = f" {word} "
        length = len(padded)
        for n in range(min_n, max_n + 1):
            if length <= n:
                grams.append(padded)
                break
            grams += [padded[i : i + n] for i in range(length - n + 1)]
    return grams

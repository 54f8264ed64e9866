"""``SpanTagger``: a linear-chain CRF over tokens that learns labelled character spans from a few documents.

Documents are strings, targets lists of ``{"start", "end", "label"}`` character spans (``end``
exclusive, Label Studio's convention). The tagger tokenizes (:mod:`model.spans.tokens`), turns spans
into BIO tags, trains CRFsuite on hand-made features (:mod:`model.spans.features`) and answers spans
again as character offsets, each with a ``score``: the probability that this span is right.

Why a CRF: it trains from tens of documents on a CPU in well under a second (L-BFGS over sparse
features), its posteriors are exact (forward-backward) and so give real probabilities for the queue
and for auto-labelling, and it needs no pretrained weights (nothing may be downloaded at run time).

Overlapping spans: one BIO sequence gives a token one tag, so when the training spans of different
labels overlap (``mode="auto"``), the tagger trains one chain per label (per-label BIO) and answers the
union of their spans; otherwise one chain over all labels, which also learns how labels follow each
other. Spans of one label that overlap each other cannot be represented either way; the later ones
are left out and reported in ``misaligned_``, with every span that was snapped to token boundaries.

Persistence: the fitted state is numpy arrays, lists, dicts and scalars only -- the CRFsuite model
file as a uint8 array, and the weights read back from it for the posteriors -- so
:mod:`model.persistence` stores it in the native format, without pickle. The CRFsuite ``Tagger`` is
opened from those bytes (``open_inmemory``) when first needed and never saved (``__getstate__``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from model.scored import Scored
from model.spans.crf import emission_scores, forward_backward, token_entropy, train_chain
from model.spans.features import sequence_features
from model.spans.tokens import (
    OUTSIDE,
    Misaligned,
    Token,
    TokenRange,
    merge_reports,
    overlapping,
    resolve_overlaps,
    tag_segments,
    token_ranges,
    tokenize,
)
from model.spans.uncertainty import SequencePosterior, SpanStrategy, get_span_strategy, token_cost

MODES = ("auto", "joint", "per_label")


class SpanTagger(BaseEstimator):
    """Named-entity-style span tagger for Label Studio ``<Labels>`` over ``<Text>``.

    Parameters
    ----------
    labels:
        The label names of the project's config, in order (the columns of ``probs``). Empty: the
        sorted labels found in ``y``. Spans with a label outside a given list are left out (reported).
    c1, c2:
        L1 and L2 regularisation of CRFsuite's L-BFGS training. L1 keeps the model small (most of the
        many sparse features get weight 0); both keep a tagger trained on ten documents from trusting
        one word it saw once.
    max_iterations:
        L-BFGS iterations (the cap on fit time).
    mode:
        ``auto`` (one chain, or one per label when training spans of different labels overlap),
        ``joint`` (always one chain: overlapping spans are left out, reported) or ``per_label``.
    random_state:
        Accepted for the uniform factory signature; L-BFGS is deterministic and ignores it.

    Attributes
    ----------
    labels_:
        The label names, in ``probs`` column order. ``mode_``: ``joint`` or ``per_label``.
    misaligned_:
        One JSON-able report per training span that was snapped or left out
        (:meth:`model.spans.tokens.Misaligned.to_json`: ``doc``, ``index``, ``start``, ``end``,
        ``label``, ``reason``, ``message``, ``snapped``).
    span_counts_:
        Spans of each label trained on. ``n_documents_``, ``n_tokens_``: the training set's size.
    chain_labels_, models_, states_, attributes_, emission_, transition_:
        Per chain: the label indices it tags, the CRFsuite model file (uint8 array; None for a chain
        whose labels no document used yet: it predicts nothing), its tag names, attribute index, state
        weights and transition weights (see :mod:`model.spans.crf`).
    vectorizer_:
        The tf-idf of :meth:`transform` (None when the texts had no word at all).
    """

    def __init__(self, labels: Sequence[str] = (), c1: float = 0.05, c2: float = 0.05, max_iterations: int = 100,
                 mode: str = "auto", random_state: int | None = 0):
        self.labels = labels
        self.c1 = c1
        self.c2 = c2
        self.max_iterations = max_iterations
        self.mode = mode
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Sequence[str], y: Sequence[Sequence[dict[str, Any]] | None]) -> SpanTagger:
        """Train on documents ``X`` and their spans ``y`` (a document may have none; None counts as none)."""
        texts, targets = _check_texts(X), [list(spans or []) for spans in y]
        if len(texts) != len(targets):
            raise ValueError(f"{len(texts)} documents but {len(targets)} span lists")
        if not texts:
            raise ValueError("SpanTagger needs at least one document to fit")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        self.__dict__.pop("_taggers", None)  # a refit must not answer with the old model
        self.labels_ = _label_names(self.labels, targets)
        tokens = [tokenize(text) for text in texts]
        feats = [sequence_features(t) for t in tokens]
        ranges, reports = [], []
        for text, toks, spans in zip(texts, tokens, targets, strict=True):
            r, rep = token_ranges(toks, spans, self.labels_, text_length=len(text))
            ranges.append(r)
            reports.append(rep)
        cross_label = any(overlapping(r, across_labels=True) for r in ranges)
        self.mode_ = "per_label" if self.mode == "per_label" or (self.mode == "auto" and cross_label) else "joint"
        every = list(range(len(self.labels_)))
        groups = [[k] for k in every] if self.mode_ == "per_label" else [every]
        tag_seqs, used = self._tag_sequences(tokens, targets, ranges, reports, groups)
        self._fit_chains(feats, tag_seqs, groups)
        self.span_counts_ = [int(sum(1 for doc in used for r in doc if r.label == name)) for name in self.labels_]
        self.misaligned_ = [m.to_json(doc) for doc, rep in enumerate(reports) for m in rep]
        self.n_documents_, self.n_tokens_ = len(texts), int(sum(len(t) for t in tokens))
        self.vectorizer_ = _fit_vectorizer(texts)
        return self

    def _tag_sequences(self, tokens: list[list[Token]], targets: list[list[Any]], ranges: list[list[TokenRange]],
                       reports: list[list[Misaligned]], groups: list[list[int]]) -> tuple[list[list[list[str]]], list]:
        """Per chain, the BIO tag sequence of every document (internal tags ``B-k`` / ``I-k``, k = label
        index); collisions within a chain are resolved and their reports merged into ``reports``."""
        index = {name: k for k, name in enumerate(self.labels_)}
        per_chain: list[list[list[str]]] = [[] for _ in groups]
        used: list[list[TokenRange]] = []
        for d, (toks, spans) in enumerate(zip(tokens, targets, strict=True)):
            kept_doc: list[TokenRange] = []
            collisions: list[Misaligned] = []
            for c, group in enumerate(groups):
                mine = [r for r in ranges[d] if index[r.label] in group]
                kept, lost = resolve_overlaps(mine, spans)
                collisions += lost
                kept_doc += kept
                tags = [OUTSIDE] * len(toks)
                for r in kept:
                    tags[r.first] = f"B-{index[r.label]}"
                    tags[r.first + 1:r.last] = [f"I-{index[r.label]}"] * (r.last - r.first - 1)
                per_chain[c].append(tags)
            reports[d] = merge_reports(reports[d], collisions)
            used.append(kept_doc)
        return per_chain, used

    def _fit_chains(self, feats: list[list[list[str]]], tag_seqs: list[list[list[str]]],
                    groups: list[list[int]]) -> None:
        """Train one CRFsuite chain per group; a group nobody used yet gets no model (it predicts nothing)."""
        params = {"c1": float(self.c1), "c2": float(self.c2), "max_iterations": int(self.max_iterations),
                  "feature.possible_transitions": True}
        self.chain_labels_ = [list(g) for g in groups]
        self.models_, self.states_, self.attributes_, self.emission_, self.transition_ = [], [], [], [], []
        for seqs in tag_seqs:
            if not any(tag != OUTSIDE for tags in seqs for tag in tags):
                self.models_.append(None)
                self.states_.append([])
                self.attributes_.append({})
                self.emission_.append(np.zeros((0, 0)))
                self.transition_.append(np.zeros((0, 0)))
                continue
            trained = train_chain(feats, seqs, params)
            self.models_.append(trained.model)
            self.states_.append(trained.states)
            self.attributes_.append(trained.attributes)
            self.emission_.append(trained.emission)
            self.transition_.append(trained.transition)

    # ------------------------------------------------------------------ inference

    def predict(self, X: Sequence[str]) -> list[list[dict[str, Any]]]:
        """Spans per document: ``{"start", "end", "label", "score", "text"}``, ``score`` = P(this span is right),
        ``text`` the characters it covers."""
        return self._decode(_check_texts(X))[0]

    def transform(self, X: Sequence[str]) -> Any:
        """Sparse tf-idf of the texts (fitted at fit time), for the diversity queues and the cold start."""
        check_is_fitted(self, "labels_")
        texts = _check_texts(X)
        if self.vectorizer_ is None:
            return sp.csr_matrix((len(texts), 1))
        return self.vectorizer_.transform(texts)

    def cost(self, X: Sequence[str]) -> np.ndarray:
        """Each document's labelling cost in tokens (:func:`model.spans.uncertainty.token_cost`)."""
        return token_cost(_check_texts(X))

    def score_items(self, strategy: Any, X: Sequence[str], *, with_features: bool = False) -> Scored:
        """One pass over ``X`` as a :class:`model.scored.Scored` (how :func:`model.scoring.score` asks).

        ``labels``: each document's spans; ``uncertainty`` from ``strategy`` (a span heuristic, or any
        classification name, mapped by :func:`~model.spans.uncertainty.span_strategy_name`);
        ``decision``: P(the predicted span set is exactly right) = P(best path); ``probs``: per label the
        best score of a span of that label (0 without one).
        """
        check_is_fitted(self, "labels_")
        texts = _check_texts(X)
        if not texts:
            return Scored.empty(len(self.labels_), with_features)
        acquisition = strategy if isinstance(strategy, SpanStrategy) else get_span_strategy(strategy)
        spans, posterior = self._decode(texts)
        uncertainty = acquisition(posterior)
        return Scored(
            probs=label_presence(spans, self.labels_),
            labels=spans,
            uncertainty=uncertainty,
            confidence=1.0 - uncertainty,
            decision=np.exp(posterior.log_prob),
            features=self.transform(texts) if with_features else None,
        )

    def posterior(self, X: Sequence[str]) -> SequencePosterior:
        """The per-document posterior summary the span heuristics read."""
        return self._decode(_check_texts(X))[1]

    def _decode(self, texts: list[str]) -> tuple[list[list[dict[str, Any]]], SequencePosterior]:
        check_is_fitted(self, "labels_")
        tokens = [tokenize(text) for text in texts]
        feats = [sequence_features(t) for t in tokens]
        n_tokens = np.asarray([len(t) for t in tokens], dtype=np.int64)
        log_prob, entropy = np.zeros(len(texts)), np.zeros(len(texts))
        spans: list[list[dict[str, Any]]] = [[] for _ in texts]
        for c in range(len(self.models_)):
            if self.models_[c] is None:
                continue  # a chain without spans: every token is outside, surely
            self._decode_chain(c, tokens, feats, spans, log_prob, entropy)
        order = {name: k for k, name in enumerate(self.labels_)}
        for text, doc in zip(texts, spans, strict=True):
            doc.sort(key=lambda s: (s["start"], s["end"], order[s["label"]]))
            for span in doc:  # the covered text, as Label Studio's value.text holds it
                span["text"] = text[span["start"]:span["end"]]
        posterior = SequencePosterior(log_prob=np.minimum(log_prob, 0.0), entropy=entropy, n_tokens=n_tokens,
                                      n_decisions=n_tokens * len(self.models_))
        return spans, posterior

    def _decode_chain(self, c: int, tokens: list[list[Token]], feats: list[list[list[str]]],
                      spans: list[list[dict[str, Any]]], log_prob: np.ndarray, entropy: np.ndarray) -> None:
        """Best path (CRFsuite's Viterbi), its probability, token entropies and span scores of chain ``c``."""
        column = {name: j for j, name in enumerate(self.states_[c])}
        chains = forward_backward(emission_scores(feats, self.attributes_[c], self.emission_[c]), self.transition_[c])
        tagger = self._tagger(c)
        for i, chain in enumerate(chains):
            if chain is None:
                continue
            path = tagger.tag(feats[i])
            log_prob[i] += chain.path_log_prob([column[tag] for tag in path])
            entropy[i] += token_entropy(chain)
            for first, last, k in tag_segments(path):
                begin, inside = column.get(f"B-{k}"), column.get(f"I-{k}")
                same = [j for j in (begin, inside) if j is not None]
                score = chain.segment_probability(first, last, begin, inside, same)
                spans[i].append({"start": tokens[i][first].start, "end": tokens[i][last - 1].end,
                                 "label": self.labels_[int(k)], "score": score})

    def _tagger(self, c: int) -> Any:
        """Chain ``c``'s CRFsuite tagger, opened from the stored bytes on first use.

        The bytes object is kept next to the tagger: CRFsuite may read the model from that memory for
        as long as the tagger lives.
        """
        taggers = self.__dict__.setdefault("_taggers", {})
        if c not in taggers:
            import pycrfsuite

            blob = self.models_[c].tobytes()
            tagger = pycrfsuite.Tagger()
            tagger.open_inmemory(blob)
            taggers[c] = (tagger, blob)
        return taggers[c][0]

    def __getstate__(self) -> dict[str, Any]:
        """The fitted state without the live CRFsuite taggers (reopened lazily from ``models_``)."""
        state = dict(super().__getstate__())  # object.__getstate__ hands back __dict__ itself: copy
        state.pop("_taggers", None)
        return state


def label_presence(spans: Sequence[Sequence[dict[str, Any]]], labels: Sequence[str]) -> np.ndarray:
    """(n_docs, n_labels): the best score of a span of each label in each document (0 without one)."""
    column = {name: j for j, name in enumerate(labels)}
    out = np.zeros((len(spans), len(labels)))
    for i, doc in enumerate(spans):
        for span in doc:
            j = column.get(span["label"])
            if j is not None:
                out[i, j] = max(out[i, j], float(span.get("score", 1.0)))
    return out


def _check_texts(X: Any) -> list[str]:
    texts = list(X)
    bad = next((i for i, x in enumerate(texts) if not isinstance(x, str)), None)
    if bad is not None:
        raise TypeError(f"SpanTagger takes documents as strings; item {bad} is {type(texts[bad]).__name__}")
    return texts


def _label_names(labels: Sequence[str], targets: list[list[Any]]) -> list[str]:
    """The config's labels in order (duplicates dropped), or the sorted labels of the targets."""
    if labels:
        return list(dict.fromkeys(str(name) for name in labels))
    found = {span.get("label") for spans in targets for span in spans if isinstance(span, dict)}
    return sorted(name for name in found if isinstance(name, str))


def _fit_vectorizer(texts: list[str]) -> Any:
    """The project's text tf-idf (word + character n-grams), or None when the texts have no n-gram at all."""
    from model.features import make_text_features

    vectorizer = make_text_features()
    try:
        vectorizer.fit(texts)
    except ValueError:  # empty vocabulary: documents of spaces and punctuation only
        return None
    return vectorizer

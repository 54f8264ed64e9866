"""Span (named-entity-style) labelling for Label Studio ``<Labels>`` over ``<Text>``: strings in, spans out.

* :mod:`~model.spans.tokens` -- a tokenizer with character offsets (per-script rules for text written
  without spaces), spans <-> BIO tags, and the report of every span that is not on token boundaries;
* :mod:`~model.spans.features` -- the CRF's token features;
* :mod:`~model.spans.crf` -- CRFsuite training and exact posteriors (marginals, span probabilities);
* :mod:`~model.spans.tagger` -- :class:`SpanTagger`, the scikit-learn-style estimator (it scores itself
  for :func:`model.scoring.score` through ``score_items``);
* :mod:`~model.spans.uncertainty` -- document-level acquisition heuristics (:data:`SPAN_STRATEGIES`) and
  :func:`span_strategy_name`, which maps classification strategy names onto them;
* :mod:`~model.spans.metrics` -- exact-span and token-overlap precision / recall / F1;
* :mod:`~model.spans.simulation` -- offline active-learning replays (active vs random);
* :mod:`~model.spans.synthetic` -- templated documents with exact spans (English, Japanese, Chinese).

A span is ``{"start": int, "end": int, "label": str}`` with character offsets into the document,
``end`` exclusive (Label Studio's convention); predicted spans add ``"score"``::

    from model.scoring import order, score
    from model.spans import SpanTagger

    tagger = SpanTagger(labels=["PER", "LOC"]).fit(texts, spans)  # spans: one list per text
    tagger.predict(["Alice flew to Oslo."])  # [[{"start": 0, "end": 5, "label": "PER", "score": 0.97}, ...]]
    tagger.misaligned_  # every training span snapped to token boundaries or left out, with the reason
    queue = order("greedy", score(tagger, "least_confidence", pool))  # the server's queue
"""

from model.spans.metrics import evaluate_spans
from model.spans.tagger import SpanTagger
from model.spans.tokens import Misaligned, Token, align, spans_from_tags, tokenize
from model.spans.uncertainty import (
    DEFAULT_SPAN_STRATEGY,
    SPAN_STRATEGIES,
    SequencePosterior,
    SpanStrategy,
    get_span_strategy,
    span_strategy_name,
    token_cost,
)

__all__ = [
    "DEFAULT_SPAN_STRATEGY",
    "SPAN_STRATEGIES",
    "Misaligned",
    "SequencePosterior",
    "SpanStrategy",
    "SpanTagger",
    "Token",
    "align",
    "evaluate_spans",
    "get_span_strategy",
    "span_strategy_name",
    "spans_from_tags",
    "token_cost",
    "tokenize",
]

"""Document-level acquisition functions for span tagging: a CRF's posterior -> one uncertainty per document.

The contract is :mod:`model.uncertainty`'s: float64 ``(n,)`` in [0, 1], 0 = the model is sure, so the
queue, the difficulty buckets and Label Studio's ``score`` work unchanged. Each heuristic is a small
class in :data:`SPAN_STRATEGIES`; :func:`span_strategy_name` maps a project's classification strategy
name onto the nearest one, so one project-level name serves every label family.

What they read (:class:`SequencePosterior`, one row per document): the log-probability of the best
tag path (summed over the tagger's chains: one, or one per label when spans overlap), the summed
token entropies, and the number of tag decisions (tokens x chains). The heuristics are the standard
ones for sequence labelling (Settles & Craven 2008; Shen et al. 2017):

* ``least_confidence``: ``1 - P(best path)``. The default: it is the chance that the document needs
  a correction at all, the quantity an annotator's review resolves. Long documents score higher
  (more tokens, more ways to be wrong) -- and they also cost more to review.
* ``mnlp``, maximum normalised log-probability: ``1 - P(best path) ** (1 / n_decisions)``, one minus
  the geometric mean per-decision probability of the best path. Length-normalised, so a long
  document is not picked merely for being long.
* ``token_entropy``: the total token entropy ``H`` (each token's entropy over tags divided by
  ``log n_tags``, so one maximally unsure token adds 1), squashed by ``H / (H + 1)``: in [0, 1),
  strictly increasing in ``H`` -- it keeps favouring long documents with many unsure tokens, and
  never saturates, so the ranking among very unsure documents survives (``1 - exp(-H)`` would round
  to 1 from ``H`` ~ 37 on).
* ``token_entropy_mean``: ``H / n_decisions``, the mean normalised token entropy.
* ``random``: uniform draws (the control arm).

:func:`token_cost` is what a document costs to label, in tokens: the replay reports its curves
against documents *and* against tokens, since a strategy that picks long documents buys each of its
"labels" with more reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from model.spans.tokens import tokenize

#: ``token_entropy``'s half-way point: total entropy of one maximally unsure token scores 0.5.
ENTROPY_SCALE = 1.0


@dataclass(frozen=True)
class SequencePosterior:
    """Per document: ``log_prob`` of the best path (<= 0), summed normalised token ``entropy`` (>= 0),
    ``n_tokens`` and ``n_decisions`` (tokens x chains; 0 for an empty document)."""

    log_prob: np.ndarray
    entropy: np.ndarray
    n_tokens: np.ndarray
    n_decisions: np.ndarray

    def __len__(self) -> int:
        return len(self.log_prob)


class SpanStrategy:
    """Base class: validation and clipping; subclasses implement :meth:`score`."""

    name: ClassVar[str] = ""

    def __call__(self, posterior: SequencePosterior) -> np.ndarray:
        """Per-document uncertainty in [0, 1], float64 (n,)."""
        out = np.asarray(self.score(posterior), dtype=np.float64).reshape(len(posterior))
        if out.size and not np.all(np.isfinite(out)):
            raise ValueError(f"span strategy {self.name!r} produced non-finite uncertainties")
        return np.clip(out, 0.0, 1.0)

    def score(self, posterior: SequencePosterior) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class LeastConfidence(SpanStrategy):
    """``1 - P(best path)``: the chance that the predicted span set is not exactly right."""

    name = "least_confidence"

    def score(self, posterior: SequencePosterior) -> np.ndarray:
        return -np.expm1(np.minimum(posterior.log_prob, 0.0))


class MNLP(SpanStrategy):
    """``1 - exp(log P(best path) / n_decisions)``: least confidence per tag decision (length-normalised)."""

    name = "mnlp"

    def score(self, posterior: SequencePosterior) -> np.ndarray:
        per_decision = np.minimum(posterior.log_prob, 0.0) / np.maximum(posterior.n_decisions, 1)
        return -np.expm1(per_decision)


class TokenEntropy(SpanStrategy):
    """``H / (H + scale)`` of the total normalised token entropy ``H``: favours long, unsure documents."""

    name = "token_entropy"

    def __init__(self, scale: float = ENTROPY_SCALE):
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.scale = float(scale)

    def score(self, posterior: SequencePosterior) -> np.ndarray:
        h = np.maximum(posterior.entropy, 0.0)
        return h / (h + self.scale)


class TokenEntropyMean(SpanStrategy):
    """The mean normalised token entropy: ``H / n_decisions``."""

    name = "token_entropy_mean"

    def score(self, posterior: SequencePosterior) -> np.ndarray:
        return np.maximum(posterior.entropy, 0.0) / np.maximum(posterior.n_decisions, 1)


class RandomSpans(SpanStrategy):
    """Uniform random uncertainties: the control arm. ``random_state`` seeds the draws (None: fresh)."""

    name = "random"

    def __init__(self, random_state: int | None = None):
        self.random_state = random_state
        self._rng = np.random.default_rng(random_state)

    def score(self, posterior: SequencePosterior) -> np.ndarray:
        return self._rng.random(len(posterior))


SPAN_STRATEGIES: dict[str, type[SpanStrategy]] = {
    cls.name: cls for cls in (LeastConfidence, MNLP, TokenEntropy, TokenEntropyMean, RandomSpans)
}
DEFAULT_SPAN_STRATEGY = "least_confidence"

#: Classification names with a span namesake in spirit. Every other name -- the sampled ones (BALD,
#: committees, MC dropout), which a CRF cannot serve since it draws no samples -- means the default.
NEAREST = {
    # torn between the best answers -> is the best path right at all
    "margin": "least_confidence",
    # uncertainty over the whole distribution -> over every token's tags
    "entropy": "token_entropy",
    "predictive_entropy": "token_entropy",
}


def span_strategy_name(strategy: Any) -> str:
    """The span heuristic a project's ``strategy`` setting means for spans.

    Span names pass through; ``margin`` -> ``least_confidence`` (there is no second-best path to
    compare with), ``entropy`` / ``predictive_entropy`` -> ``token_entropy``, ``auto`` and any sampled
    classification strategy (``bald``, ``vote_entropy``, ``mc_dropout``, ...) -> ``least_confidence``.
    Raises ValueError for a name that no family knows.
    """
    if isinstance(strategy, SpanStrategy):
        return strategy.name
    name = strategy if isinstance(strategy, str) else str(getattr(strategy, "name", ""))
    if name in SPAN_STRATEGIES:
        return name
    from model.uncertainty import STRATEGIES

    if name in NEAREST:
        return NEAREST[name]
    if name in STRATEGIES or name in ("auto", "mc_dropout"):
        return DEFAULT_SPAN_STRATEGY
    raise ValueError(
        f"unknown span strategy {name!r}; valid: {', '.join(sorted(SPAN_STRATEGIES))}, "
        f"or a classification strategy ({', '.join(sorted(STRATEGIES))})")


def get_span_strategy(name: Any = DEFAULT_SPAN_STRATEGY, **params: Any) -> SpanStrategy:
    """A new instance of the heuristic ``name`` means (:func:`span_strategy_name`), with ``params``."""
    if isinstance(name, SpanStrategy):
        return name
    return SPAN_STRATEGIES[span_strategy_name(name)](**params)


def token_cost(X: Sequence[str]) -> np.ndarray:
    """int64 (n,): each document's length in tokens (:func:`model.spans.tokens.tokenize`), its labelling cost."""
    return np.asarray([len(tokenize(text)) for text in X], dtype=np.int64)

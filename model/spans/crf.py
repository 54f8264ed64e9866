"""One linear-chain CRF: training with CRFsuite, and exact posteriors in numpy from its weights.

CRFsuite trains the chain and finds the best path (``Tagger.tag``), but its Python API exposes only
per-token marginals and the probability of a whole path. The span score annotators read is the
probability that *this span* is right -- its tokens carry exactly its tags and the next token does
not continue it -- which needs the forward and backward quantities. So :func:`train_chain` also
reads the trained weights back (``Tagger.info``: state weights per attribute and label, transition
weights; CRFsuite's linear chain has no start / end transitions) and :func:`forward_backward`
computes, for many documents at once, the scaled forward / backward messages from which
:meth:`Chain.marginals`, :meth:`Chain.path_log_prob` and :meth:`Chain.segment_probability` are exact
(up to CRFsuite's dump printing weights to 6 decimals; the tests compare with ``Tagger.marginal``).

Scaling (Rabiner's HMM recipe) instead of log-space: one small matrix product per token position for
a whole batch of documents, no ``logsumexp``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import scipy.sparse as sp

#: Documents per padded batch in :func:`forward_backward` (sorted by length, so padding stays small).
BATCH = 256


@dataclass(frozen=True)
class TrainedChain:
    """What :func:`train_chain` returns: the CRFsuite model file and the weights read back from it."""

    model: np.ndarray  # uint8, the model file's bytes
    states: list[str]  # tag names, in the order of the weight columns
    attributes: dict[str, int]  # attribute -> row of ``emission``
    emission: np.ndarray  # (n_attributes + 1, n_states) state weights; the last row (unseen attributes) is 0
    transition: np.ndarray  # (n_states, n_states): from row to column


def train_chain(xseqs: Sequence[list[list[str]]], yseqs: Sequence[list[str]], params: dict[str, Any]) -> TrainedChain:
    """Train CRFsuite (L-BFGS) on feature / tag sequences, in a scratch directory that is then removed."""
    import pycrfsuite

    trainer = pycrfsuite.Trainer(algorithm="lbfgs", verbose=False)
    for xseq, yseq in zip(xseqs, yseqs, strict=True):
        trainer.append(xseq, yseq)
    trainer.set_params(params)
    with tempfile.TemporaryDirectory(prefix="labelloop-crf-") as scratch:
        path = os.path.join(scratch, "model.crfsuite")
        trainer.train(path)
        with open(path, "rb") as fh:
            blob = fh.read()
    tagger = pycrfsuite.Tagger()
    tagger.open_inmemory(blob)
    try:
        info = tagger.info()
    finally:
        tagger.close()
    states = sorted(info.labels, key=lambda name: int(info.labels[name]))
    column = {name: j for j, name in enumerate(states)}
    attributes = {name: i for i, name in enumerate(sorted({a for a, _ in info.state_features}))}
    emission = np.zeros((len(attributes) + 1, len(states)))  # the last row: attributes never seen
    for (attr, label), weight in info.state_features.items():
        emission[attributes[attr], column[label]] = weight
    transition = np.zeros((len(states), len(states)))
    for (a, b), weight in info.transitions.items():
        transition[column[a], column[b]] = weight
    return TrainedChain(np.frombuffer(blob, dtype=np.uint8).copy(), states, attributes, emission, transition)


def emission_scores(docs: Sequence[list[list[str]]], attributes: dict[str, int],
                    emission: np.ndarray) -> list[np.ndarray]:
    """Per document, the (n_tokens, n_states) sum of the state weights of each token's attributes.

    Attributes the chain never saw map to the last row of ``emission``, which is zeros: they weigh
    nothing, as in CRFsuite. One sparse product for the batch.
    """
    get, unknown = attributes.get, emission.shape[0] - 1
    indices: list[int] = []
    indptr = [0]
    for doc in docs:
        for feats in doc:
            indices.extend(map(get, feats, repeat(unknown, len(feats))))
            indptr.append(len(indices))
    n_tokens = len(indptr) - 1
    onehot = sp.csr_matrix((np.ones(len(indices)), np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
                           shape=(n_tokens, emission.shape[0]))
    scores = np.asarray(onehot @ emission) if n_tokens else np.zeros((0, emission.shape[1]))
    bounds = np.cumsum([0] + [len(doc) for doc in docs])
    return [scores[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@dataclass(frozen=True)
class Chain:
    """Scaled forward / backward messages of one document under one chain.

    ``alpha[t] * beta[t]`` is the marginal at ``t``; ``scale[t]`` the normaliser of step ``t``;
    ``weights`` the exponentiated emission scores (shifted per token: the shift cancels out) and
    ``moves`` the exponentiated transitions, shared by the batch.
    """

    scores: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    moves: np.ndarray
    transition: np.ndarray
    log_z: float

    def marginals(self) -> np.ndarray:
        """(n_tokens, n_states) posterior probability of each tag at each token."""
        m = self.alpha * self.beta
        return m / m.sum(axis=1, keepdims=True)

    def path_log_prob(self, path: Sequence[int]) -> float:
        """log P(path | text): the path's score minus log Z."""
        idx = np.asarray(path, dtype=np.int64)
        score = self.scores[np.arange(len(idx)), idx].sum() + self.transition[idx[:-1], idx[1:]].sum()
        return float(min(0.0, score - self.log_z))

    def segment_probability(self, first: int, last: int, begin: int | None, inside: int | None,
                            same_label: Sequence[int]) -> float:
        """P(tokens ``first``..``last - 1`` form exactly one span of a label), with BIO read leniently.

        The span begins with its ``begin`` tag, or with its ``inside`` tag after a token not of its label
        (``same_label``: the label's state columns); ``inside`` continues it to ``last - 1``; token
        ``last`` (if any) is not ``inside``. A tag the chain never saw is None: without ``inside`` only
        one-token spans exist.

        O(span length): the sums over the neighbours' tags are read off the messages themselves --
        ``alpha[t] = (alpha[t-1] @ moves) * weights[t] / scale[t]`` and
        ``beta[t] = moves @ (weights[t+1] * beta[t+1]) / scale[t+1]`` -- minus the excluded tags' terms.
        """
        total = 0.0
        if begin is not None and (inside is not None or last == first + 1):
            total += self._segment(float(self.alpha[first, begin]), begin, first, last, inside)
        if inside is not None:
            start = float(self.alpha[first, inside])  # every way into ``inside`` at ``first``...
            if first > 0:  # ...less those continuing a span of the same label
                into = sum(float(self.alpha[first - 1, s] * self.moves[s, inside]) for s in same_label)
                start -= into * float(self.weights[first, inside] / self.scale[first])
            total += self._segment(max(start, 0.0), inside, first, last, inside)
        return float(min(1.0, max(0.0, total)))

    def _segment(self, p: float, state: int, first: int, last: int, inside: int | None) -> float:
        """``p`` (the start's scaled forward mass) times the span's inside steps and its end."""
        for t in range(first + 1, last):
            p *= float(self.moves[state, inside] * self.weights[t, inside] / self.scale[t])
            state = inside
        if last < len(self.scale):
            ahead = float(self.beta[last - 1, state])  # every way on from ``state``...
            if inside is not None:  # ...less continuing the span
                ahead -= float(self.moves[state, inside] * self.weights[last, inside] * self.beta[last, inside]
                               / self.scale[last])
            p *= max(ahead, 0.0)
        return p


def forward_backward(scores: Sequence[np.ndarray], transition: np.ndarray) -> list[Chain | None]:
    """A :class:`Chain` per document (None for a document without tokens), in padded batches.

    Documents are sorted by length and run :data:`BATCH` at a time; a batch pads to its longest
    document with neutral steps that are never read back.
    """
    moves = np.exp(transition)
    out: list[Chain | None] = [None] * len(scores)
    order = sorted((i for i in range(len(scores)) if len(scores[i])), key=lambda i: len(scores[i]))
    for lo in range(0, len(order), BATCH):
        chunk = order[lo:lo + BATCH]
        lengths = np.array([len(scores[i]) for i in chunk])
        padded = np.zeros((len(chunk), lengths.max(), transition.shape[0]))
        for b, i in enumerate(chunk):
            padded[b, :lengths[b]] = scores[i]
        shift = padded.max(axis=2, keepdims=True)
        weights = np.exp(padded - shift)
        alpha, beta, scale = _messages(weights, moves, lengths)
        for b, i in enumerate(chunk):
            n = lengths[b]
            log_z = float(np.log(scale[b, :n]).sum() + shift[b, :n, 0].sum())
            out[i] = Chain(scores[i], alpha[b, :n], beta[b, :n], scale[b, :n], weights[b, :n], moves, transition,
                           log_z)
    return out


def _messages(weights: np.ndarray, moves: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scaled forward and backward passes over a padded batch (B, T, S)."""
    n_docs, n_steps, _ = weights.shape
    alpha = np.empty_like(weights)
    scale = np.ones((n_docs, n_steps))
    v = weights[:, 0]
    for t in range(n_steps):
        if t:
            v = (alpha[:, t - 1] @ moves) * weights[:, t]
        scale[:, t] = v.sum(axis=1)
        alpha[:, t] = v / scale[:, t, None]
    beta = np.ones_like(weights)
    for t in range(n_steps - 2, -1, -1):
        v = ((weights[:, t + 1] * beta[:, t + 1]) @ moves.T) / scale[:, t + 1, None]
        beta[:, t] = np.where((t < lengths - 1)[:, None], v, 1.0)
    return alpha, beta, scale


def token_entropy(chain: Chain) -> float:
    """Sum over tokens of the entropy of the tag marginal, each divided by log(n_states) (so in [0, 1])."""
    n_states = chain.alpha.shape[1]
    if n_states < 2:
        return 0.0
    m = chain.marginals()
    h = -(m * np.log(np.where(m > 0, m, 1.0))).sum(axis=1) / np.log(n_states)
    return float(np.clip(h, 0.0, 1.0).sum())

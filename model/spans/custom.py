"""Bring your own span tagger: a user's model behind the span family's contract.

A project names a factory (``path/to/file.py:make`` or ``package.module:make``, see :mod:`model.custom`)
returning an unfitted tagger with ``fit(texts, spans)`` and ``predict(texts)``: ``texts`` a list of
strings, ``spans`` per text a list of ``{"start", "end", "label"}`` (character offsets, ``end``
exclusive); ``predict`` answers in the same form, each span with an optional ``"score"``, the
probability that it is right. Optional: ``transform(texts)`` (features for the cluster queue), and
``score_items(strategy, texts, with_features=...)`` returning a :class:`model.scored.Scored`, for a
tagger that computes its own sequence uncertainty.

Without ``score_items`` a text is scored from its spans' scores, taken as independent: the probability
that every predicted span is right is their product (the ``decision`` auto-labelling certifies), and its
uncertainty is one minus that (least confidence). A text with no predicted span gets decision 0: the
tagger gave no probability that it holds none, so it is never auto-labelled on that answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from model.custom import FactoryError, make_user_estimator
from model.scored import Scored
from model.spans.tagger import _check_texts, _fit_vectorizer, label_presence

#: The methods a user's tagger must have.
REQUIRED = ("fit", "predict")


class BringYourOwnTagger(BaseEstimator):
    """A user's span tagger (made by ``factory``) answering for the label config's ``labels``.

    Attributes: ``estimator_`` (the fitted user tagger), ``labels_``, ``vectorizer_`` (a tf-idf for the
    cluster queue when the user's tagger has no ``transform``).
    """

    def __init__(self, factory: str = "", labels: Sequence[str] = (), random_state: int | None = None) -> None:
        self.factory = factory
        self.labels = labels
        self.random_state = random_state

    def fit(self, X: Sequence[str], y: Sequence[Sequence[dict[str, Any]] | None]) -> BringYourOwnTagger:
        texts = _check_texts(X)
        self.labels_ = [str(name) for name in self.labels]
        self.estimator_ = make_user_estimator(self.factory, self.random_state, REQUIRED, "a span tagger")
        self.estimator_.fit(texts, [[dict(s) for s in spans or []] for spans in y])
        self.vectorizer_ = None if callable(getattr(self.estimator_, "transform", None)) else _fit_vectorizer(texts)
        return self

    def predict(self, X: Sequence[str]) -> list[list[dict[str, Any]]]:
        """The user's spans, checked (offsets in the text, a label of the config, a score in [0, 1])."""
        check_is_fitted(self, "estimator_")
        texts = _check_texts(X)
        answers = list(self.estimator_.predict(texts))
        if len(answers) != len(texts):
            raise FactoryError(f"model {self.factory!r}: predict returned {len(answers)} answers for "
                               f"{len(texts)} texts")
        return [[self._span(text, span) for span in spans or []] for text, spans in zip(texts, answers, strict=True)]

    def _span(self, text: str, span: Any) -> dict[str, Any]:
        try:
            start, end, label = int(span["start"]), int(span["end"]), str(span["label"])
            score = float(span.get("score", 1.0))
        except (TypeError, KeyError, ValueError) as exc:
            raise FactoryError(f"model {self.factory!r}: predict gave {span!r}, not a {{start, end, label}} span")\
                from exc
        if not 0 <= start < end <= len(text) or label not in self.labels_ or not 0.0 <= score <= 1.0:
            raise FactoryError(f"model {self.factory!r}: predicted span {span!r} is outside its text, has a label "
                               f"not in the config ({self.labels_}) or a score outside [0, 1]")
        return {"start": start, "end": end, "label": label, "score": score, "text": text[start:end]}

    def transform(self, X: Sequence[str]) -> Any:
        check_is_fitted(self, "estimator_")
        own = getattr(self.estimator_, "transform", None)
        if callable(own):
            return own(_check_texts(X))
        import scipy.sparse as sp

        texts = _check_texts(X)
        return self.vectorizer_.transform(texts) if self.vectorizer_ is not None else sp.csr_matrix((len(texts), 1))

    def score_items(self, strategy: Any, X: Sequence[str], *, with_features: bool = False) -> Scored:
        """The user's own ``score_items`` when it has one; else least confidence from the spans' scores (the
        project's ``strategy`` then has nothing to choose between: a tagger without posteriors gives one
        measure of doubt)."""
        check_is_fitted(self, "estimator_")
        own = getattr(self.estimator_, "score_items", None)
        if callable(own):
            return own(strategy, _check_texts(X), with_features=with_features)
        texts = _check_texts(X)
        if not texts:
            return Scored.empty(len(self.labels_), with_features)
        spans = self.predict(texts)
        decision = np.array([float(np.prod([s["score"] for s in doc])) if doc else 0.0 for doc in spans])
        uncertainty = 1.0 - decision
        return Scored(probs=label_presence(spans, self.labels_), labels=spans, uncertainty=uncertainty,
                      confidence=decision.copy(), decision=decision,
                      features=self.transform(texts) if with_features else None)

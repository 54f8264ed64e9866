"""The classifier behind a Label Studio ``<Choices>`` control, for text or image tasks.

Everything the backend needs from one model lives in :class:`ChoiceClassifier`: it takes raw
payloads (strings or pixel arrays), owns its feature extractor, and always answers in the
column order of the configured ``classes`` -- including classes nobody has labelled yet, which
is the normal state of a project in its first training rounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from model.features import PixelFeatures, drop_empty_text_blocks, make_text_features

MODALITIES = ("text", "image")


class ChoiceClassifier(ClassifierMixin, BaseEstimator):
    """Features + logistic regression, single- or multi-label, over a fixed label set.

    Parameters
    ----------
    modality:
        ``"text"`` (X is a list of str) or ``"image"`` (X is a list of uint8 arrays of shape
        (H, W) or (H, W, C); sizes may differ).
    classes:
        All label names configured in the project, in the order the probability columns use.
    multi_label:
        If True, y rows are lists of labels and every class gets an independent probability.
    C:
        Inverse L2 regularisation strength of the logistic regressions. The default is weaker
        regularisation than sklearn's 1.0 because tf-idf / pixel features on few rows otherwise
        give washed-out probabilities near the class prior.
    random_state:
        Passed to the feature factory and the solvers, for reproducible fits.

    Attributes (after fit)
    ----------------------
    classes_: np.ndarray of str, the configured classes (same order as ``classes``).
    n_train_: number of training rows.
    features_: the fitted feature transformer.
    model_: single-label only -- the fitted LogisticRegression, or None when y had one class.
    seen_: single-label only -- int indices (into ``classes_``) of the columns ``model_`` covers.
    label_models_: multi-label only -- per class a fitted binary LogisticRegression, or None
        when that class was always or never positive in y.
    label_constant_: multi-label only -- per class the probability used when its model is None.
    """

    def __init__(
        self,
        modality: str = "text",
        classes: Sequence[str] = (),
        multi_label: bool = False,
        C: float = 10.0,
        random_state: int | None = 0,
    ):
        self.modality = modality
        self.classes = classes
        self.multi_label = multi_label
        self.C = C
        self.random_state = random_state

    # ------------------------------------------------------------------ fit

    def fit(self, X: Sequence[Any], y: Sequence[Any]) -> ChoiceClassifier:
        """Fit features and classifier(s). Raises ValueError on unknown labels or bad shapes."""
        classes = self._validated_classes()
        if len(X) != len(y):
            raise ValueError(f"X and y have different lengths: {len(X)} != {len(y)}")
        if len(X) == 0:
            raise ValueError("cannot fit on zero rows")
        self._check_inputs(X)
        index = {name: i for i, name in enumerate(classes)}
        # Validate the labels before the (comparatively slow) feature fit, so label errors
        # surface as such rather than as some feature-extraction failure.
        targets = _indicator(y, index) if self.multi_label else _encode(y, index)

        self.classes_ = np.asarray(classes, dtype=str)
        self.n_train_ = len(X)
        self.features_ = self._make_features(X)
        features = _as_float64(self.features_.fit_transform(X))

        if self.multi_label:
            self._fit_multi_label(features, targets)
        else:
            self._fit_single_label(features, targets)
        return self

    def _fit_single_label(self, features: Any, codes: np.ndarray) -> None:
        self.seen_ = np.unique(codes)
        if len(self.seen_) == 1:
            # Logistic regression refuses one-class data, yet the first labelled batch of a
            # real project often is exactly that. The honest model then is a constant one.
            self.model_ = None
            return
        self.model_ = self._logistic().fit(features, codes)
        self.seen_ = self.model_.classes_.astype(np.int64)

    def _fit_multi_label(self, features: Any, indicator: np.ndarray) -> None:
        n = indicator.shape[0]
        positives = indicator.sum(axis=0)
        # Laplace-smoothed positive rate: a class never (always) positive so far gets a low
        # (high) probability that moves towards 0 (1) as evidence accumulates, instead of a
        # hard 0/1 that would make its label look perfectly certain after one round.
        self.label_constant_ = (positives + 1.0) / (n + 2.0)
        self.label_models_ = []
        for j in range(indicator.shape[1]):
            column = indicator[:, j]
            if 0 < positives[j] < n:
                self.label_models_.append(self._logistic().fit(features, column))
            else:
                self.label_models_.append(None)

    # ------------------------------------------------------------ predict

    def predict_proba(self, X: Sequence[Any]) -> np.ndarray:
        """Return float64 probabilities of shape (len(X), len(classes_)), columns = ``classes_``.

        Single-label rows sum to 1 and classes unseen in training get 0. Multi-label columns
        are independent probabilities in [0, 1].
        """
        check_is_fitted(self, "classes_")
        n_classes = len(self.classes_)
        if len(X) == 0:
            return np.zeros((0, n_classes), dtype=np.float64)
        self._check_inputs(X)
        features = _as_float64(self.features_.transform(X))
        proba = np.zeros((len(X), n_classes), dtype=np.float64)

        if self.multi_label:
            for j, model in enumerate(self.label_models_):
                if model is None:
                    proba[:, j] = self.label_constant_[j]
                else:
                    proba[:, j] = model.predict_proba(features)[:, 1]
            return proba

        if self.model_ is None:
            proba[:, self.seen_[0]] = 1.0
        else:
            proba[:, self.seen_] = self.model_.predict_proba(features)
        return proba

    def predict_labels(self, X: Sequence[Any], threshold: float = 0.5) -> list[list[str]]:
        """Return label names per row: ``[argmax]`` (single-label) or all with p >= threshold."""
        return self.labels_from_proba(self.predict_proba(X), threshold=threshold)

    def labels_from_proba(self, proba: np.ndarray, threshold: float = 0.5) -> list[list[str]]:
        """Turn an output of :meth:`predict_proba` into label names, without predicting again.

        Callers that need both probabilities (for uncertainty) and labels use this to run the
        model once.
        """
        check_is_fitted(self, "classes_")
        proba = np.asarray(proba, dtype=np.float64)
        if proba.ndim != 2 or proba.shape[1] != len(self.classes_):
            raise ValueError(f"expected probabilities of shape (n, {len(self.classes_)}), got {proba.shape}")
        if self.multi_label:
            return [[str(self.classes_[j]) for j in np.flatnonzero(row >= threshold)] for row in proba]
        return [[str(self.classes_[j])] for j in proba.argmax(axis=1)]

    def predict(self, X: Sequence[Any]) -> np.ndarray:
        """sklearn-style predict: class names (single-label) or a 0/1 indicator matrix (multi)."""
        proba = self.predict_proba(X)
        if self.multi_label:
            return (proba >= 0.5).astype(np.int64)
        return self.classes_[proba.argmax(axis=1)] if len(proba) else self.classes_[:0]

    # ------------------------------------------------------------ helpers

    def _validated_classes(self) -> list[str]:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        if isinstance(self.classes, str):
            raise ValueError("classes must be a sequence of label names, not a single string")
        classes = list(self.classes)
        if not classes:
            raise ValueError("classes is empty: configure at least one label")
        bad = [c for c in classes if not isinstance(c, str)]
        if bad:
            raise ValueError(f"class names must be strings, got {bad!r}")
        duplicates = sorted({c for c in classes if classes.count(c) > 1})
        if duplicates:
            raise ValueError(f"duplicate class names: {duplicates}")
        return classes

    def _check_inputs(self, X: Sequence[Any]) -> None:
        # Only text needs checking here: a non-string would be silently str()-ed or crash deep
        # in the tokenizer. Images are validated per item by PixelFeatures.
        if self.modality == "text":
            for i, item in enumerate(X):
                if not isinstance(item, str):
                    raise ValueError(f"text modality expects str inputs; row {i} is {type(item).__name__}")

    def _make_features(self, X: Sequence[Any]) -> Any:
        if self.modality == "text":
            return drop_empty_text_blocks(make_text_features(random_state=self.random_state), X)
        return PixelFeatures()

    def _logistic(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=1000, random_state=self.random_state)


def _as_float64(features: Any) -> Any:
    """Cast dense float32 pixel features up: fitted on float32, LogisticRegression stays in
    float32 and its probabilities then miss summing to 1 by ~1e-7."""
    return features.astype(np.float64) if features.dtype != np.float64 else features


def _encode(y: Sequence[Any], index: dict[str, int]) -> np.ndarray:
    """Map single-label names to column indices, rejecting non-strings and unknown names."""
    codes = np.empty(len(y), dtype=np.int64)
    unknown = []
    for i, label in enumerate(y):
        if not isinstance(label, str):
            raise ValueError(f"single-label y must contain strings; row {i} is {type(label).__name__}")
        if label in index:
            codes[i] = index[label]
        else:
            unknown.append(label)
    _raise_unknown(unknown, index)
    return codes


def _indicator(y: Sequence[Any], index: dict[str, int]) -> np.ndarray:
    """Map multi-label rows (lists of names, maybe empty) to a 0/1 matrix over all classes."""
    indicator = np.zeros((len(y), len(index)), dtype=np.int64)
    unknown = []
    for i, row in enumerate(y):
        # A bare string would iterate as characters and silently train on nonsense.
        if isinstance(row, str) or not isinstance(row, (list, tuple, set, frozenset, np.ndarray)):
            raise ValueError(f"multi-label y rows must be lists of strings; row {i} is {row!r}")
        for label in row:
            if isinstance(label, str) and label in index:
                indicator[i, index[label]] = 1
            else:
                unknown.append(label)
    _raise_unknown(unknown, index)
    return indicator


def _raise_unknown(unknown: list[Any], index: dict[str, int]) -> None:
    if unknown:
        names = sorted({repr(u) for u in unknown})
        raise ValueError(f"unknown label(s) {', '.join(names)}; configured classes: {list(index)}")

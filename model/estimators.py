"""The classifier behind a Label Studio ``<Choices>`` control, for text or image tasks.

Everything the backend needs from one model lives in :class:`ChoiceClassifier`: it takes raw
payloads (strings or pixel arrays), owns its feature extractor, and always answers in the
column order of the configured ``classes`` -- including classes nobody has labelled yet, which
is the normal state of a project in its first training rounds.

Three kinds of classifier sit behind the same features and the same API (``model=``):

* ``"logreg"`` (default): logistic regression; one probability vector per task.
* ``"mlp"``: a torch MLP with dropout (:mod:`model.torch_mlp`); Monte-Carlo dropout gives T
  stochastic probability vectors per task, for BALD and friends.
* ``"committee"``: bootstrapped logistic regressions (:mod:`model.committee`); M members'
  vectors per task, for vote entropy and KL-to-consensus.

:meth:`ChoiceClassifier.predict_proba_samples` exposes those samples as (T, N, C);
:func:`make_estimator` picks the kind an acquisition function was designed for.

torch is imported only when an ``"mlp"`` model is fitted or used, so a server running the
default logistic regression never pays its multi-second import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from model.calibration import CALIBRATIONS, ProbabilityCalibrator, choose_calibration, out_of_fold_proba
from model.committee import (
    check_committee_size,
    committee_proba,
    fit_committee,
    fit_logistic_head,
    logistic_head_proba,
)
from model.features import drop_empty_text_blocks, make_image_features, make_text_features
from model.scored import labels_from_proba
from model.textfast import transform_text
from model.uncertainty import get_strategy

MODALITIES = ("text", "image")
MODELS = ("logreg", "mlp", "committee")

# Constructor defaults of the parameters added after the first release. Model files written
# before them lack these attributes; ``__setstate__`` fills them in so old files keep loading.
_ADDED_PARAMS: dict[str, Any] = {
    "model": "logreg",
    "n_samples": 20,
    "committee_size": 5,
    "hidden_size": 128,
    "dropout": 0.5,
    "epochs": 20,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "batch_size": 128,
    "calibration": "none",
}


class ChoiceClassifier(ClassifierMixin, BaseEstimator):
    """Features + a classifier (logistic regression, MLP or committee), single- or multi-label.

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
        Inverse L2 regularisation strength of the logistic regressions ("logreg" and the
        committee members). The default is weaker regularisation than sklearn's 1.0 because
        tf-idf / pixel features on few rows otherwise give washed-out probabilities near the
        class prior.
    random_state:
        Seeds everything random: the solvers, the committee's bootstrap, the MLP's
        initialisation, shuffling and dropout masks (training and MC inference). None draws
        fresh entropy at fit time.
    model:
        ``"logreg"``, ``"mlp"`` or ``"committee"`` (see the module docstring).
    n_samples:
        T, the number of Monte-Carlo dropout passes of :meth:`predict_proba_samples` for
        ``"mlp"``. Read at predict time, so it can change without refitting.
    committee_size:
        Number of bootstrapped members of ``"committee"`` (>= 2).
    hidden_size, dropout, epochs, lr, weight_decay, batch_size:
        ``"mlp"`` only: width of the hidden layer, dropout rate after it, passes over the
        training rows (at least :data:`model.torch_mlp.MIN_STEPS` optimiser steps are taken
        on tiny sets), AdamW learning rate and decoupled weight decay, mini-batch size.
    calibration:
        ``"none"`` (default), ``"temperature"``, ``"sigmoid"``, ``"isotonic"`` or ``"auto"``:
        recalibrate :meth:`predict_proba` with a :class:`model.calibration.ProbabilityCalibrator`
        fitted during ``fit`` on out-of-fold probabilities of the training rows (3 folds,
        stratified for single-label, each fitting a clone with ``calibration="none"``, so ``fit``
        costs three extra fits). The caller's validation split is never used, so calibration
        measured on it stays honest.
        Applied only with enough labels (:func:`model.calibration.choose_calibration`: >= 50
        rows and >= 3 per class); ``"auto"`` picks ``"temperature"`` for single-label and
        ``"sigmoid"`` for multi-label. What was used is in ``calibration_``.

    Attributes (after fit)
    ----------------------
    classes_: np.ndarray of str, the configured classes (same order as ``classes``).
    n_train_: number of training rows.
    features_: the fitted feature transformer.
    kind_: the ``model`` this estimator was fitted as.
    seen_: single-label "logreg" / "mlp" -- int indices (into ``classes_``) of the columns the
        fitted model covers; all other columns get probability 0.
    model_: single-label "logreg" -- the fitted LogisticRegression, or None when y had one class.
    label_models_: multi-label "logreg" -- per class a fitted binary LogisticRegression, or None
        when that class was always or never positive in y.
    label_constant_: multi-label "logreg" / "mlp" -- per class the probability used when it
        has no model (Laplace-smoothed positive rate).
    label_varies_: multi-label "mlp" -- bool per class: was it sometimes but not always positive
        (only those columns come from the network).
    net_: "mlp" -- the network weights as float32 numpy arrays (``w0, b0, w1, b1``), or None
        when there was nothing to learn (one class / no varying label).
    net_dropout_: "mlp" -- the dropout rate the network was trained with (MC inference uses it
        even if ``dropout`` is changed later).
    mc_seed_: "mlp" -- seed of the MC-dropout masks, fixed at fit time so a fitted (or
        reloaded) model gives the same samples for the same input.
    members_: "committee" -- the members' heads (see :func:`model.committee.fit_logistic_head`).
    calibration_: the calibration actually applied: ``"none"`` or a method of
        :data:`model.calibration.METHODS` (``"auto"`` resolved, ``"none"`` if there were too few labels).
    calibration_reason_: why (``"not requested"``, ``"requested"``, ``"auto: ..."``, or what was
        missing, e.g. ``"too few labelled rows to calibrate: 30 < 50"``), for reports.
    calibrator_: the fitted :class:`model.calibration.ProbabilityCalibrator`, or None.
    """

    def __init__(
        self,
        modality: str = "text",
        classes: Sequence[str] = (),
        multi_label: bool = False,
        C: float = 10.0,
        random_state: int | None = 0,
        model: str = "logreg",
        n_samples: int = 20,
        committee_size: int = 5,
        hidden_size: int = 128,
        dropout: float = 0.5,
        epochs: int = 20,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        calibration: str = "none",
    ):
        self.modality = modality
        self.classes = classes
        self.multi_label = multi_label
        self.C = C
        self.random_state = random_state
        self.model = model
        self.n_samples = n_samples
        self.committee_size = committee_size
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.calibration = calibration

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Fill in parameters and ``kind_`` missing from model files written before they existed."""
        state = dict(state)
        for name, default in _ADDED_PARAMS.items():
            state.setdefault(name, default)
        if "classes_" in state:
            state.setdefault("kind_", "logreg")
            state.setdefault("calibration_", "none")
            state.setdefault("calibration_reason_", "not requested")
            state.setdefault("calibrator_", None)
        super().__setstate__(state)

    # ------------------------------------------------------------------ fit

    def fit(self, X: Sequence[Any], y: Sequence[Any]) -> ChoiceClassifier:
        """Fit features and classifier(s). Raises ValueError on unknown labels or bad shapes."""
        classes = self._validated_classes()
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if len(X) != len(y):
            raise ValueError(f"X and y have different lengths: {len(X)} != {len(y)}")
        if len(X) == 0:
            raise ValueError("cannot fit on zero rows")
        self._check_inputs(X)
        # Hyper-parameters too are checked before any slow work.
        mlp_params = self._mlp_params() if self.model == "mlp" else None
        if self.model == "committee":
            check_committee_size(self.committee_size)
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        index = {name: i for i, name in enumerate(classes)}
        # Validate the labels before the (comparatively slow) feature fit, so label errors
        # surface as such rather than as some feature-extraction failure.
        targets = _indicator(y, index) if self.multi_label else _encode(y, index)

        # A refit (possibly as another kind) must not leave a previous fit's state behind: it
        # would be saved with the model and could be mistaken for the current one.
        for name in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
            delattr(self, name)
        self.classes_ = np.asarray(classes, dtype=str)
        self.n_train_ = len(X)
        self.kind_ = self.model
        self.features_ = self._make_features(X)
        features = _as_float64(self.features_.fit_transform(X))

        if mlp_params is not None:
            self._fit_mlp(features, targets, mlp_params)
        elif self.kind_ == "committee":
            self.members_ = fit_committee(
                features,
                targets,
                size=self.committee_size,
                multi_label=self.multi_label,
                make_logistic=self._logistic,
                random_state=self.random_state,
            )
        else:
            head = fit_logistic_head(features, targets, multi_label=self.multi_label, make_logistic=self._logistic)
            if self.multi_label:
                self.label_models_ = head["label_models"]
                self.label_constant_ = head["label_constant"]
            else:
                self.model_ = head["model"]
                self.seen_ = head["seen"]
        self._fit_calibration(X, y, targets)
        return self

    def _fit_calibration(self, X: Sequence[Any], y: Sequence[Any], targets: np.ndarray) -> None:
        """Set ``calibration_``, ``calibration_reason_`` and ``calibrator_`` (see ``calibration``)."""
        self.calibrator_ = None
        self.calibration_, self.calibration_reason_ = choose_calibration(self.calibration, targets, self.multi_label)
        if self.calibration_ == "none":
            return
        held_out = out_of_fold_proba(
            clone(self).set_params(calibration="none"),
            X,
            y,
            targets,
            multi_label=self.multi_label,
            random_state=self.random_state,
        )
        self.calibrator_ = ProbabilityCalibrator(self.calibration_, multi_label=self.multi_label).fit(held_out, targets)

    def _mlp_params(self) -> Any:
        """The validated ``MLPParams`` (imports torch: only called for ``model="mlp"``)."""
        from model.torch_mlp import MLPParams

        params = MLPParams(
            hidden_size=int(self.hidden_size),
            dropout=float(self.dropout),
            epochs=int(self.epochs),
            lr=float(self.lr),
            weight_decay=float(self.weight_decay),
            batch_size=int(self.batch_size),
        )
        params.validate()
        return params

    def _fit_mlp(self, features: Any, targets: np.ndarray, params: Any) -> None:
        from model.device import select_device
        from model.torch_mlp import fit_mlp

        seed = _seed(self.random_state)
        self.mc_seed_ = seed
        self.net_dropout_ = params.dropout
        self.net_ = None
        if self.multi_label:
            n = targets.shape[0]
            positives = targets.sum(axis=0)
            # Same constants as the logistic head: labels always / never positive so far are
            # not learnable, and a network would give them a falsely certain 0 or 1.
            self.label_constant_ = (positives + 1.0) / (n + 2.0)
            self.label_varies_ = (positives > 0) & (positives < n)
            if not self.label_varies_.any():
                return
            codes = targets[:, self.label_varies_]
            outputs = codes.shape[1]
        else:
            self.seen_ = np.unique(targets).astype(np.int64)
            if len(self.seen_) == 1:
                return  # one class: the constant model, as for logistic regression
            outputs, codes = len(self.seen_), np.searchsorted(self.seen_, targets)
        self.net_ = fit_mlp(
            features,
            codes,
            n_outputs=outputs,
            multi_label=self.multi_label,
            params=params,
            seed=seed,
            device=select_device(),
        )

    # ------------------------------------------------------------ predict

    def predict_proba(self, X: Sequence[Any]) -> np.ndarray:
        """Return float64 probabilities of shape (len(X), len(classes_)), columns = ``classes_``.

        Single-label rows sum to 1 and classes unseen in training get 0. Multi-label columns
        are independent probabilities in [0, 1]. "mlp" runs one deterministic pass (dropout
        off); "committee" returns the members' mean (a bagged logistic regression). When a
        calibration was fitted (``calibration_ != "none"``) the probabilities are calibrated.
        """
        features = self._features_or_none(X)
        if features is None:
            return np.zeros((0, len(self.classes_)), dtype=np.float64)
        if self.kind_ == "mlp":
            proba = self._mlp_proba(features, n_samples=None)
        elif self.kind_ == "committee":
            proba = self._committee_proba(features).mean(axis=0)
        else:
            proba = self._logreg_proba(features)
        return proba if self.calibrator_ is None else self.calibrator_.transform(proba)

    def predict_proba_samples(self, X: Sequence[Any]) -> np.ndarray:
        """Return float64 sampled probabilities of shape (T, len(X), len(classes_)).

        * "mlp": T = ``n_samples`` Monte-Carlo dropout passes, one batched forward per chunk of
          tasks (see :mod:`model.torch_mlp`); identical for the same input and fitted model.
        * "committee": the M = ``committee_size`` members' probabilities.
        * "logreg": its single prediction, T = 1 (sampled acquisition functions then see no
          disagreement: BALD is 0, predictive entropy equals entropy).

        Each sample obeys the :meth:`predict_proba` contract (rows sum to 1 / independent).

        Samples are never calibrated, even when :meth:`predict_proba` is: the calibrator is a
        map fitted to the *mean* prediction, not to single dropout masks or committee members,
        and applying it per sample would reshape the disagreement between samples that BALD and
        vote entropy measure (isotonic steps even collapse distinct samples onto one value).
        These functions only rank tasks, for which the raw disagreement is the right signal.
        So for "logreg" the single sample equals the *uncalibrated* probabilities.
        """
        n_samples = self._n_samples()
        features = self._features_or_none(X)
        if features is None:
            return np.zeros((n_samples, 0, len(self.classes_)), dtype=np.float64)
        if self.kind_ == "mlp":
            return self._mlp_proba(features, n_samples=n_samples)
        if self.kind_ == "committee":
            return self._committee_proba(features)
        return self._logreg_proba(features)[np.newaxis]

    def transform(self, X: Sequence[Any]) -> Any:
        """Return the feature matrix the classifier sees (scipy sparse for text, dense for images).

        For consumers that need a task representation, e.g. k-means in a cluster-aware queue.
        """
        check_is_fitted(self, "classes_")
        self._check_inputs(X)
        return _as_float64(transform_text(self.features_, X))

    def predict_labels(self, X: Sequence[Any], threshold: float = 0.5) -> list[list[str]]:
        """Return label names per row: ``[argmax]`` (single-label) or all with p >= threshold."""
        return self.labels_from_proba(self.predict_proba(X), threshold=threshold)

    def labels_from_proba(self, proba: np.ndarray, threshold: float = 0.5) -> list[list[str]]:
        """Turn an output of :meth:`predict_proba` into label names, without predicting again.

        Callers that need both probabilities (for uncertainty) and labels use this to run the
        model once. The mean of :meth:`predict_proba_samples` over axis 0 is accepted too.
        """
        check_is_fitted(self, "classes_")
        return labels_from_proba(self.classes_, proba, bool(self.multi_label), threshold)

    def predict(self, X: Sequence[Any]) -> np.ndarray:
        """sklearn-style predict: class names (single-label) or a 0/1 indicator matrix (multi)."""
        proba = self.predict_proba(X)
        if self.multi_label:
            return (proba >= 0.5).astype(np.int64)
        return self.classes_[proba.argmax(axis=1)] if len(proba) else self.classes_[:0]

    # ------------------------------------------------------------ helpers

    def _features_or_none(self, X: Sequence[Any]) -> Any:
        """Validated features of X, or None for an empty X (nothing to transform)."""
        check_is_fitted(self, "classes_")
        if len(X) == 0:
            return None
        self._check_inputs(X)
        # The text union's transform, the same matrix in two thirds of the time (model/textfast.py).
        return _as_float64(transform_text(self.features_, X))

    def _n_samples(self) -> int:
        if self.kind_ == "committee":
            return len(self.members_)
        if self.kind_ != "mlp":
            return 1
        n = self.n_samples
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n!r}")
        return int(n)

    def _logreg_proba(self, features: Any) -> np.ndarray:
        if self.multi_label:
            head = {"label_models": self.label_models_, "label_constant": self.label_constant_}
        else:
            head = {"model": self.model_, "seen": self.seen_}
        return logistic_head_proba(head, features, len(self.classes_), self.multi_label)

    def _committee_proba(self, features: Any) -> np.ndarray:
        return committee_proba(self.members_, features, len(self.classes_), self.multi_label)

    def _mlp_proba(self, features: Any, n_samples: int | None) -> np.ndarray:
        """(N, C) deterministic or (T, N, C) MC-dropout probabilities in ``classes_`` columns."""
        n_rows, n_classes = features.shape[0], len(self.classes_)
        shape = (n_rows, n_classes) if n_samples is None else (n_samples, n_rows, n_classes)
        proba = np.zeros(shape, dtype=np.float64)
        if self.net_ is not None:
            from model.mlp_inference import mlp_proba_numpy, uses_torch_for_inference

            forward = mlp_proba_numpy  # no torch import in a serving worker (model.mlp_inference)
            kwargs: dict[str, Any] = {}
            if uses_torch_for_inference():
                from model.device import select_device
                from model.torch_mlp import mlp_proba as forward

                kwargs["device"] = select_device()
            net = forward(self.net_, features, multi_label=self.multi_label, n_samples=n_samples,
                          dropout=self.net_dropout_, seed=self.mc_seed_, **kwargs)
        if self.multi_label:
            if self.net_ is not None:
                proba[..., self.label_varies_] = net
            proba[..., ~self.label_varies_] = self.label_constant_[~self.label_varies_]
        elif self.net_ is None:
            proba[..., self.seen_[0]] = 1.0
        else:
            proba[..., self.seen_] = net
        return proba

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
        # RBF-kernel features over the pixels (model.features.RBFImageFeatures); files fitted
        # before it keep their stored PixelFeatures.
        return make_image_features(random_state=self.random_state)

    def _logistic(self) -> LogisticRegression:
        return LogisticRegression(C=self.C, max_iter=1000, random_state=self.random_state)


def make_estimator(
    strategy_name: str,
    modality: str,
    classes: Sequence[str],
    multi_label: bool,
    random_state: int | None = 0,
    **params: Any,
) -> ChoiceClassifier:
    """Return an unfitted classifier of the kind the acquisition function ``strategy_name`` needs.

    BALD and the other sampled MC-dropout functions need an "mlp", vote entropy and
    KL-to-consensus a "committee", the single-distribution ones a "logreg" (see
    ``AcquisitionFunction.model``). ``params`` are passed on to :class:`ChoiceClassifier`; an
    explicit ``model=`` in them overrides the choice (e.g. vote entropy over MC-dropout votes).
    Raises ValueError for an unknown strategy name.
    """
    params.setdefault("model", get_strategy(strategy_name).model)
    return ChoiceClassifier(
        modality=modality, classes=list(classes), multi_label=multi_label, random_state=random_state, **params
    )


def _seed(random_state: int | None) -> int:
    """An int seed for torch/numpy generators; fresh OS entropy when ``random_state`` is None."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
    return int(random_state)


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

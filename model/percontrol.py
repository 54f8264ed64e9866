"""One model per labelling control, over the same input: e.g. a scene class and the boxes of one image.

A label config with several controls (``<Choices>`` and ``<RectangleLabels>`` over one ``<Image>``)
asks several questions of each task. Each control gets its own estimator, trained on the tasks whose
annotation answers that control; the scoring kernel scores every control with its own model and
joins the answers per task (:meth:`PerControl.score_items`, which the kernel calls). Arrays in,
arrays out: targets arrive as ``{control: target or None}`` per task, already in the form each
control's estimator takes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from model.scored import Scored
from model.uncertainty import confidence_score


class PerControl(BaseEstimator):
    """``estimators``: control name -> unfitted estimator. Fitted: ``estimators_``, ``n_trained_`` and
    ``rows_`` (each control's training rows, so what a control's model reports per row maps back)."""

    def __init__(self, estimators: Mapping[str, Any] | None = None) -> None:
        self.estimators = estimators

    def fit(self, X: Sequence[Any], y: Sequence[Mapping[str, Any]]) -> PerControl:
        """Fit each control's estimator on the tasks that answer it (a None target leaves a task out).

        A control no task answers yet stays unfitted and is left out of predictions until it is.
        """
        if not self.estimators:
            raise ValueError("PerControl needs at least one control's estimator")
        if len(X) != len(y):
            raise ValueError(f"{len(X)} inputs but {len(y)} targets")
        self.estimators_: dict[str, Any] = {}
        self.n_trained_: dict[str, int] = {}
        self.rows_: dict[str, list[int]] = {}  # which rows of X each control's model was fitted on
        for name, estimator in self.estimators.items():
            rows = [i for i, target in enumerate(y) if target.get(name) is not None]
            self.n_trained_[name] = len(rows)
            self.rows_[name] = rows
            if rows:
                self.estimators_[name] = estimator.fit([X[i] for i in rows], [y[i][name] for i in rows])
        if not self.estimators_:
            raise ValueError("no task answers any control: nothing to train")
        return self

    @property
    def controls_(self) -> list[str]:
        """The fitted controls, in the label config's order."""
        check_is_fitted(self, "estimators_")
        return [name for name in (self.estimators or {}) if name in self.estimators_]

    def transform(self, X: Sequence[Any]) -> Any:
        """Features for diversity queues: the first fitted control's (they all read the same input)."""
        return self.estimators_[self.controls_[0]].transform(X)

    def score_items(self, strategy: Any, X: Sequence[Any], *, with_features: bool = False) -> Scored:
        """Per task ``{control: its answer}``, each control scored by its own model (the kernel calls this).

        A task is as uncertain as its most uncertain question, and as sure of being right as its least
        sure answer.
        """
        from model.scoring import score  # the kernel scores each control's own model

        parts = {name: score(self.estimators_[name], strategy, X) for name in self.controls_}
        n = len(X)
        if n == 0:
            return Scored.empty(0, with_features)
        uncertainty = np.vstack([p.uncertainty for p in parts.values()]).max(axis=0)
        return Scored(
            probs=np.hstack([p.probs for p in parts.values()]),
            labels=[{name: p.labels[i] for name, p in parts.items()} for i in range(n)],
            uncertainty=uncertainty,
            confidence=confidence_score(uncertainty),
            decision=np.vstack([p.decision for p in parts.values()]).min(axis=0),
            features=self.transform(X) if with_features else None,
            shown=None if all(p.shown is None for p in parts.values())
            else np.vstack([p.display for p in parts.values()]).min(axis=0),
        )

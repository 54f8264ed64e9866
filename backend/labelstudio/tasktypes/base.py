"""The task-type seam: what one kind of Label Studio control means to labelloop.

A label config is parsed into one :class:`TaskType` per supported control. The task type is the only
code that knows its control's JSON: how an annotation's result becomes the target a model trains on,
how a model's output becomes a prediction Label Studio shows, when a prediction counts as correct,
and how a validation split is scored. Reading a task's input (text, image) belongs to the object the
control points at and lives in labelstudio/tasks.py.

Adding a label type = a module here, its model in model/, and one entry in the registry of label
families (backend/labelstudio/families.py); the routes, the store and the training loop do not change.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from backend.errors import UnsupportedConfig

__all__ = ["TaskType", "UnsupportedConfig"]


@dataclass(frozen=True)
class TaskType(ABC):
    """One supported control over one object: names, where the input lives, and the JSON rules."""

    #: The Label Studio control tag this type serves (``Choices``, ``RectangleLabels``).
    tag: ClassVar[str] = ""
    #: The object tags it can label, and what it serves in words (error messages, docs).
    objects: ClassVar[tuple[str, ...]] = ()
    supported: ClassVar[str] = ""
    #: Its answer is a list of regions (boxes, spans): beside other controls, an annotation with none of
    #: this control's regions has not answered it (it may only have picked a class); alone, it says "none".
    region_control: ClassVar[bool] = False
    #: What auto-labelling also reports coverage of, when a task holds several of them ("box", "span").
    coverage_unit: ClassVar[str | None] = None

    from_name: str
    to_name: str
    data_key: str
    modality: str  # "text" or "image"

    @classmethod
    @abstractmethod
    def from_control(cls, control: Any, obj: Any) -> TaskType:
        """Build from the SDK's parsed control and the object it points at; UnsupportedConfig if unusable."""

    @abstractmethod
    def target(self, annotation: dict[str, Any], where: str = "annotation") -> Any | None:
        """The annotation's answer for this control, or None when it has none (BadInput if malformed)."""

    @abstractmethod
    def prediction(self, predicted: Any, score: float, version: str, confidence: float | None = None) -> dict[str, Any]:
        """One Label Studio prediction.

        ``score`` (the prediction's task-level score) orders the queue: lower is served first; it is not a
        probability. ``confidence`` is the probability that the prediction is right (a round's ``decision``),
        written as the score of each region the task type does not score itself, which is what Label Studio
        shows next to a region.
        """

    @abstractmethod
    def correct(self, predicted: Any, truth: Any) -> bool:
        """Whether a prediction counts as right (auto-labelling precision, difficulty)."""

    @abstractmethod
    def model_targets(self, targets: Sequence[Any]) -> list[Any]:
        """Targets in the form the model's ``fit`` takes."""

    @abstractmethod
    def evaluate(self, truth: Sequence[Any], predicted: Sequence[Any], probs: np.ndarray) -> dict[str, Any]:
        """Validation metrics: at least ``accuracy`` (the headline figure), ``macro_f1`` and ``ece``."""

    @abstractmethod
    def agreement(self, before: Sequence[Any], after: Sequence[Any]) -> float | None:
        """How far two rounds' predictions on the same tasks agree (the stopping signal), in [-1, 1]."""

    def threshold_rows(self, truth: Sequence[Any], predicted: Sequence[Any]) -> dict[str, list[Any]] | None:
        """Rows auto-labelling picks a threshold from when they are not one per task (None: per task).

        A detection control returns one row per predicted box (its score, whether it matched a true
        box, its image's index), since its guarantee holds per box.
        """
        return None

    def calibrate_shown(self, estimator: Any, probs: np.ndarray, truth: Sequence[Any]) -> float | None:
        """Fit what annotators read as a prediction's confidence on the validation split (``probs`` of its
        tasks, their ``truth``), stored on ``estimator``; None when the task type shows no such number
        (boxes and spans score their own regions)."""
        return None

    def unit_scores(self, predicted: Any) -> list[float]:
        """The scores of the units (see :attr:`coverage_unit`) a prediction shows annotators."""
        return []

    def item_confidence(self, predicted: Any, decision: float) -> float:
        """What auto-labelling compares with its threshold for one task (rows from :meth:`threshold_rows`
        or, by default, the task's decision confidence)."""
        return float(decision)

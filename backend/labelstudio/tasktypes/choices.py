"""`<Choices>` over `<Text>` or `<Image>`: classification, single-label or `choice="multiple"`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from backend.errors import BadInput, UnsupportedConfig
from backend.labelstudio.tasktypes.base import TaskType
from model.calibration import expected_calibration_error, shown_temperature
from model.evaluation import evaluate
from model.stopping import prediction_agreement_kappa


@dataclass(frozen=True)
class ChoicesTask(TaskType):
    """A classification control. Targets are lists of label names (one name unless multi-label)."""

    tag: ClassVar[str] = "Choices"
    objects: ClassVar[tuple[str, ...]] = ("Text", "Image")
    supported: ClassVar[str] = "<Choices> (single or choice=\"multiple\") over a <Text> or <Image> object"

    labels: tuple[str, ...] = ()
    multi_label: bool = False

    @classmethod
    def from_control(cls, control: Any, obj: Any) -> ChoicesTask:
        labels = tuple(control.labels)
        if len(labels) < 2 and not control.is_multiple_choice:
            raise UnsupportedConfig(f"<Choices name=\"{control.name}\"> needs at least 2 <Choice> values")
        if not labels:
            raise UnsupportedConfig(f"<Choices name=\"{control.name}\"> has no <Choice> values")
        return cls(from_name=control.name, to_name=obj.name, data_key=obj.value_name,
                   modality="text" if obj.tag == "Text" else "image", labels=labels,
                   multi_label=bool(control.is_multiple_choice))

    def target(self, annotation: dict[str, Any], where: str = "annotation") -> list[str] | None:
        """The choices an annotation gives for this control; None when it has no result for it.

        A label that is not in the config raises BadInput naming the field: it is a config/data
        mismatch the user must see, never something to train on silently.
        """
        results = annotation.get("result") or []
        if not isinstance(results, list):
            raise BadInput(f"{where}.result must be a list", field=f"{where}.result")
        for i, item in enumerate(results):
            if not isinstance(item, dict) or item.get("from_name") != self.from_name:
                continue
            value = item.get("value") or {}
            choices = value.get("choices") if isinstance(value, dict) else None
            field = f"{where}.result[{i}].value.choices"
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                raise BadInput(f"{field} must be a list of strings", field=field)
            unknown = [c for c in choices if c not in self.labels]
            if unknown:
                raise BadInput(
                    f"{field} has label(s) {unknown} not in the label config's <Choices name=\"{self.from_name}\"> "
                    f"(known: {list(self.labels)})",
                    field=field,
                )
            if not self.multi_label and len(choices) != 1:
                raise BadInput(f"{field} must hold exactly one choice for a single-choice control", field=field)
            return list(choices)
        return None

    def prediction(self, predicted: Sequence[str], score: float, version: str,
                   confidence: float | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {"from_name": self.from_name, "to_name": self.to_name, "type": "choices",
                                  "value": {"choices": list(predicted)}}
        if confidence is not None:  # the probability that these choices are right, not the queue's order
            result["score"] = round(float(confidence), 4)
        return {"result": [result], "score": float(score), "model_version": version}

    def correct(self, predicted: Sequence[str], truth: Sequence[str]) -> bool:
        return set(predicted) == set(truth)

    def model_targets(self, targets: Sequence[Sequence[str]]) -> list[Any]:
        return [list(t) for t in targets] if self.multi_label else [t[0] for t in targets]

    def evaluate(self, truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
                 probs: np.ndarray) -> dict[str, Any]:
        report = evaluate(self.model_targets(truth), self.model_targets(predicted), list(self.labels),
                          multi_label=self.multi_label)
        report["ece"] = expected_calibration_error(probs, self._truth(truth), multi_label=self.multi_label)
        return report

    def calibrate_shown(self, estimator: Any, probs: np.ndarray, truth: Sequence[Sequence[str]]) -> float | None:
        """A softening temperature for the shown choice's probability (model.calibration.shown_temperature),
        kept on the estimator as ``shown_temperature_`` so /predict shows the same; single-label only."""
        if self.multi_label or not len(truth):
            return None
        estimator.shown_temperature_ = shown_temperature(probs, self._truth(truth))
        return float(estimator.shown_temperature_)

    def agreement(self, before: Sequence[Sequence[str]], after: Sequence[Sequence[str]]) -> float | None:
        return prediction_agreement_kappa(self.model_targets(before), self.model_targets(after),
                                          classes=list(self.labels), multi_label=self.multi_label)

    def _truth(self, truth: Sequence[Sequence[str]]) -> np.ndarray:
        """Ground truth as the calibration metrics want it: class indices, or a 0/1 indicator matrix."""
        index = {name: i for i, name in enumerate(self.labels)}
        if not self.multi_label:
            return np.array([index[row[0]] for row in truth], dtype=int)
        out = np.zeros((len(truth), len(self.labels)), dtype=int)
        for i, row in enumerate(truth):
            out[i, [index[name] for name in row]] = 1
        return out

"""Several supported controls over one object (e.g. `<Choices>` and `<RectangleLabels>` on one `<Image>`).

Each control keeps its own task type and gets its own model (model.percontrol.PerControl); this
composite only joins them: a target or a prediction is ``{control name: that control's value}``, the
prediction Label Studio gets holds every control's regions, and the figures are per control (the
headline ``accuracy`` is their mean). A task whose annotation answers only some controls trains those.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from backend.labelstudio.tasktypes.base import TaskType


@dataclass(frozen=True)
class MultiControlTask(TaskType):
    """The controls of one label config that all read the same object's data."""

    tag: ClassVar[str] = ""

    controls: tuple[TaskType, ...] = ()

    @classmethod
    def from_control(cls, control: Any, obj: Any) -> MultiControlTask:
        raise TypeError("built by labelconfig.parse_label_config from the task types of its controls")

    @classmethod
    def of(cls, controls: Sequence[TaskType]) -> MultiControlTask:
        first = controls[0]
        return cls(from_name="+".join(c.from_name for c in controls), to_name=first.to_name,
                   data_key=first.data_key, modality=first.modality, controls=tuple(controls))

    def target(self, annotation: dict[str, Any], where: str = "annotation") -> dict[str, Any] | None:
        """Each control's answer (None where the annotation does not answer it); None if it answers none.

        A region control (boxes, spans) counts as answered only when the annotation has a region for it, so
        an annotation that only picks a class does not teach the detector that the image is empty.
        """
        answers = {}
        for c in self.controls:
            value = c.target(annotation, where=where)
            answers[c.from_name] = None if value == [] and c.region_control else value
        return answers if any(v is not None for v in answers.values()) else None

    def prediction(self, predicted: dict[str, Any], score: float, version: str,
                   confidence: float | None = None) -> dict[str, Any]:
        """Every control's regions; a control that does not score its own regions gets the task's confidence,
        the least sure of its answers (model.percontrol), so no region reads surer than the task is."""
        result = []
        for c in self.controls:
            if c.from_name in predicted:
                result.extend(c.prediction(predicted[c.from_name], score, version, confidence)["result"])
        return {"result": result, "score": float(score), "model_version": version}

    def correct(self, predicted: dict[str, Any], truth: dict[str, Any]) -> bool:
        """Right when every control the truth answers is right."""
        return all(c.correct(predicted[c.from_name], truth[c.from_name]) for c in self.controls
                   if truth.get(c.from_name) is not None and c.from_name in predicted)

    def model_targets(self, targets: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in targets]
        for c in self.controls:
            rows = [i for i, t in enumerate(targets) if t.get(c.from_name) is not None]
            converted = c.model_targets([targets[i][c.from_name] for i in rows])
            for i in range(len(targets)):
                out[i][c.from_name] = None
            for i, value in zip(rows, converted, strict=True):
                out[i][c.from_name] = value
        return out

    def evaluate(self, truth: Sequence[dict[str, Any]], predicted: Sequence[dict[str, Any]],
                 probs: np.ndarray) -> dict[str, Any]:
        """Each control's report on the tasks that answer it; per-class keys are ``control:class``."""
        reports: dict[str, dict[str, Any]] = {}
        columns = self._columns(predicted)
        for c in self.controls:
            rows = [i for i, t in enumerate(truth) if t.get(c.from_name) is not None
                    and c.from_name in predicted[i]]
            if rows:
                reports[c.from_name] = c.evaluate([truth[i][c.from_name] for i in rows],
                                                  [predicted[i][c.from_name] for i in rows],
                                                  np.asarray(probs)[rows][:, columns[c.from_name]])
        if not reports:
            return {"accuracy": None, "macro_f1": None, "ece": None, "per_class": {}, "controls": {}}
        per_class = {f"{name}:{k}": v for name, r in reports.items() for k, v in r["per_class"].items()}
        mean = lambda key: float(np.mean([r[key] for r in reports.values() if r.get(key) is not None]))  # noqa: E731
        scalars = {f"{name}.{k}": v for name, r in reports.items() for k, v in r.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {"accuracy": mean("accuracy"), "macro_f1": mean("macro_f1"), "ece": None,
                "per_class": per_class, **scalars}

    def _columns(self, predicted: Sequence[dict[str, Any]]) -> dict[str, slice]:
        """Each predicted control's columns in the joined ``probs`` (one per label, in config order)."""
        out, start = {}, 0
        for c in self.controls:
            if predicted and c.from_name in predicted[0]:
                width = len(getattr(c, "labels", ()))
                out[c.from_name] = slice(start, start + width)
                start += width
        return out

    def agreement(self, before: Sequence[dict[str, Any]], after: Sequence[dict[str, Any]]) -> float | None:
        values = []
        for c in self.controls:
            rows = [i for i in range(len(before)) if c.from_name in before[i] and c.from_name in after[i]]
            if rows:
                value = c.agreement([before[i][c.from_name] for i in rows], [after[i][c.from_name] for i in rows])
                if value is not None:
                    values.append(value)
        return float(np.mean(values)) if values else None

"""`<RectangleLabels>` over `<Image>`: object detection, any number of boxes (or none) per image.

Label Studio stores a rectangle as percentages of the image (``x``, ``y`` = top-left corner,
``width``, ``height``, optionally ``rotation``); the model works in normalised xyxy
(model.detection.boxes). This module is the only place that converts between the two. A target or a
prediction is a JSON-able list of boxes, ``[{"box": [x0, y0, x1, y1], "label": name, "score": s}]``
(no score for a human's box), so it is stored in the history and answered from a round's rows like a
class name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from backend.errors import BadInput, UnsupportedConfig
from backend.labelstudio.tasktypes.base import TaskType
from model.detection.boxes import Detections
from model.detection.metrics import OPERATING_SCORE, evaluate_detections, match

Box = dict[str, Any]

#: Boxes below this score are not shown to annotators (the model keeps weaker ones for uncertainty).
SHOWN_SCORE = 0.3


@dataclass(frozen=True)
class RectanglesTask(TaskType):
    """A bounding-box control. Targets are lists of boxes in normalised xyxy with their label."""

    tag: ClassVar[str] = "RectangleLabels"
    objects: ClassVar[tuple[str, ...]] = ("Image",)
    supported: ClassVar[str] = "<RectangleLabels> over an <Image>"
    region_control: ClassVar[bool] = True
    coverage_unit: ClassVar[str | None] = "box"

    labels: tuple[str, ...] = ()

    @classmethod
    def from_control(cls, control: Any, obj: Any) -> RectanglesTask:
        labels = tuple(control.labels)
        if not labels:
            raise UnsupportedConfig(f"<RectangleLabels name=\"{control.name}\"> has no <Label> values")
        return cls(from_name=control.name, to_name=obj.name, data_key=obj.value_name, modality="image",
                   labels=labels)

    def target(self, annotation: dict[str, Any], where: str = "annotation") -> list[Box]:
        """Every rectangle of this control in the annotation; an empty list means "no objects here".

        A submitted annotation without rectangles is an answer (the image holds none of the classes),
        unlike a Choices control, whose missing result means the annotator skipped it.
        """
        results = annotation.get("result") or []
        if not isinstance(results, list):
            raise BadInput(f"{where}.result must be a list", field=f"{where}.result")
        boxes: list[Box] = []
        for i, item in enumerate(results):
            if not isinstance(item, dict) or item.get("from_name") != self.from_name:
                continue
            boxes.append(self._box(item.get("value"), f"{where}.result[{i}].value"))
        return boxes

    def _box(self, value: Any, field: str) -> Box:
        if not isinstance(value, dict):
            raise BadInput(f"{field} must be an object", field=field)
        names = value.get("rectanglelabels")
        if not isinstance(names, list) or len(names) != 1 or not isinstance(names[0], str):
            raise BadInput(f"{field}.rectanglelabels must hold exactly one label", field=f"{field}.rectanglelabels")
        if names[0] not in self.labels:
            raise BadInput(f"{field}.rectanglelabels has label {names[0]!r} not in the label config's "
                           f"<RectangleLabels name=\"{self.from_name}\"> (known: {list(self.labels)})",
                           field=f"{field}.rectanglelabels")
        try:
            x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
            rotation = float(value.get("rotation") or 0.0)
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInput(f"{field} needs numeric x, y, width and height (percent)", field=field) from exc
        if not all(np.isfinite([x, y, w, h, rotation])) or w < 0 or h < 0:
            raise BadInput(f"{field} has a non-finite or negative coordinate", field=field)
        x0, y0, x1, y1 = _rotated_extent(x, y, w, h, rotation)
        return {"box": [x0, y0, x1, y1], "label": names[0]}

    def prediction(self, predicted: Sequence[Box], score: float, version: str,
                   confidence: float | None = None) -> dict[str, Any]:
        """Rectangle regions Label Studio draws (percent coordinates), each with its own box's score."""
        result = []
        for i, box in enumerate(predicted):
            if float(box.get("score", 1.0)) < SHOWN_SCORE:
                continue
            x0, y0, x1, y1 = (min(max(float(v), 0.0), 1.0) for v in box["box"])
            result.append({
                "id": f"{self.from_name}-{i}",
                "from_name": self.from_name, "to_name": self.to_name, "type": "rectanglelabels",
                "value": {"x": 100 * x0, "y": 100 * y0, "width": 100 * (x1 - x0), "height": 100 * (y1 - y0),
                          "rotation": 0, "rectanglelabels": [box["label"]]},
                "score": round(float(box.get("score", 1.0)), 6),
            })
        return {"result": result, "score": float(score), "model_version": version}

    def correct(self, predicted: Sequence[Box], truth: Sequence[Box]) -> bool:
        """The image is right when its confident boxes match its true boxes one to one (IoU >= 0.5)."""
        shown = self.detections([b for b in predicted if float(b.get("score", 1.0)) >= OPERATING_SCORE])
        true = self.detections(truth)
        return len(shown) == len(true) and bool(match(shown, true).all())

    def model_targets(self, targets: Sequence[Sequence[Box]]) -> list[Detections]:
        return [self.detections(t) for t in targets]

    def detections(self, boxes: Sequence[Box]) -> Detections:
        """JSON boxes -> model.detection's Detections (scores 1.0 where a box has none)."""
        if not boxes:
            return Detections.empty()
        return Detections(np.array([b["box"] for b in boxes], dtype=np.float64), [b["label"] for b in boxes],
                          np.array([float(b.get("score", 1.0)) for b in boxes]))

    def evaluate(self, truth: Sequence[Sequence[Box]], predicted: Sequence[Sequence[Box]],
                 probs: np.ndarray) -> dict[str, Any]:
        """mAP@0.5 (the headline ``accuracy``), mAP@0.5:0.95, per-class precision/recall at IoU 0.5."""
        report = evaluate_detections(self.model_targets(truth), self.model_targets(predicted), list(self.labels))
        report["ece"] = None  # box scores are not calibrated probabilities of an image-level answer
        return report

    def agreement(self, before: Sequence[Sequence[Box]], after: Sequence[Sequence[Box]]) -> float | None:
        """Box F1 between two rounds' confident boxes on the same images (1 = the same boxes)."""
        if not before:
            return None
        matched = total = 0
        for a, b in zip(before, after, strict=True):
            old = self.detections([x for x in a if float(x.get("score", 1.0)) >= OPERATING_SCORE])
            new = self.detections([x for x in b if float(x.get("score", 1.0)) >= OPERATING_SCORE])
            matched += 2 * int(match(new, old).sum())
            total += len(old) + len(new)
        return 1.0 if total == 0 else matched / total


    def threshold_rows(self, truth: Sequence[Sequence[Box]],
                       predicted: Sequence[Sequence[Box]]) -> dict[str, list[Any]]:
        """One row per predicted box at or above the shown score: score, matched a true box (IoU 0.5), image."""
        rows: dict[str, list[Any]] = {"image": [], "score": [], "correct": [], "n_truth": []}
        for i, (t, p) in enumerate(zip(truth, predicted, strict=True)):
            pred = self.detections([b for b in p if float(b.get("score", 1.0)) >= SHOWN_SCORE])
            hits = match(pred, self.detections(t))
            rows["image"].extend([i] * len(pred))
            rows["score"].extend(round(float(v), 6) for v in pred.scores)
            rows["correct"].extend(int(h) for h in hits)
            rows["n_truth"].append(len(t))
        return rows


    def unit_scores(self, predicted: Sequence[Box]) -> list[float]:
        """The scores of the boxes annotators are shown (at or above :data:`SHOWN_SCORE`)."""
        return [s for s in (float(b.get("score", 1.0)) for b in predicted) if s >= SHOWN_SCORE]

    def item_confidence(self, predicted: Sequence[Box], decision: float) -> float:
        """The weakest shown box: an image is auto-labelled only when every box on it clears the threshold."""
        return min(self.unit_scores(predicted), default=1.0)


def _rotated_extent(x: float, y: float, w: float, h: float, rotation: float) -> tuple[float, float, float, float]:
    """The axis-aligned extent (normalised xyxy, clipped to the image) of a Label Studio rectangle.

    Label Studio rotates a rectangle about its top-left corner; the model only knows upright boxes, so
    a rotated one trains as the upright box around it.
    """
    corners = np.array([[0.0, 0.0], [w, 0.0], [w, h], [0.0, h]])
    if rotation:
        angle = np.deg2rad(rotation)
        turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        corners = corners @ turn.T
    corners = (corners + [x, y]) / 100.0
    lo, hi = np.clip(corners.min(axis=0), 0, 1), np.clip(corners.max(axis=0), 0, 1)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])

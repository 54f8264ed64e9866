"""Label Studio task / annotation / prediction JSON <-> the plain values the model consumes.

This is the only module that knows where a task keeps its text or image and how a `choices` result
looks; everything past it sees lists of strings and arrays.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from backend.labelstudio.labelconfig import ChoiceSpec


class BadInput(ValueError):
    """Client data the backend cannot use. `field` names the offending JSON path (for the 4xx body)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


ImageLoader = Callable[[str], np.ndarray]


def task_input(task: dict[str, Any], spec: ChoiceSpec, load_image: ImageLoader | None,
               where: str = "task") -> str | np.ndarray:
    """The model input of one task: its text, or its decoded image."""
    data = task.get("data")
    field = f"{where}.data.{spec.data_key}"
    if not isinstance(data, dict):
        raise BadInput(f"{where} (id={task.get('id')}) has no 'data' object", field=f"{where}.data")
    if spec.data_key not in data:
        raise BadInput(
            f"{where} (id={task.get('id')}) has no data field '{spec.data_key}' "
            f"(the label config's <{'Text' if spec.modality == 'text' else 'Image'} value=\"${spec.data_key}\">)",
            field=field,
        )
    value = data[spec.data_key]
    if spec.modality == "text":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise BadInput(f"{field} must be a string, got {type(value).__name__}", field=field)
        return value
    if not isinstance(value, str) or not value:
        raise BadInput(f"{field} must be an image URL or data URI", field=field)
    if load_image is None:
        raise BadInput(f"{field}: no image loader configured", field=field)
    try:
        return load_image(value)
    except BadInput as exc:
        raise BadInput(str(exc), field=field) from exc


def task_inputs(tasks: Sequence[dict[str, Any]], spec: ChoiceSpec, load_image: ImageLoader | None,
                where: str = "tasks") -> list[str | np.ndarray]:
    return [task_input(t, spec, load_image, where=f"{where}[{i}]") for i, t in enumerate(tasks)]


def pick_annotation(annotations: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The annotation a task's label comes from: not cancelled, ground truth first, then the newest."""
    usable = [a for a in annotations if not a.get("was_cancelled")]
    if not usable:
        return None

    def key(a: dict[str, Any]) -> tuple[bool, str, int]:
        stamp = str(a.get("updated_at") or a.get("created_at") or "")
        return (bool(a.get("ground_truth")), stamp, int(a.get("id") or 0))

    return max(usable, key=key)


def annotation_labels(annotation: dict[str, Any], spec: ChoiceSpec, where: str = "annotation") -> list[str] | None:
    """The choices an annotation gives for our control; None when it has no result for it.

    A label that is not in the config raises BadInput naming the field: it is a config/data
    mismatch the user must see, never something to train on silently.
    """
    results = annotation.get("result") or []
    if not isinstance(results, list):
        raise BadInput(f"{where}.result must be a list", field=f"{where}.result")
    for i, item in enumerate(results):
        if not isinstance(item, dict) or item.get("from_name") != spec.from_name:
            continue
        value = item.get("value") or {}
        choices = value.get("choices") if isinstance(value, dict) else None
        field = f"{where}.result[{i}].value.choices"
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise BadInput(f"{field} must be a list of strings", field=field)
        unknown = [c for c in choices if c not in spec.labels]
        if unknown:
            raise BadInput(
                f"{field} has label(s) {unknown} not in the label config's <Choices name=\"{spec.from_name}\"> "
                f"(known: {list(spec.labels)})",
                field=field,
            )
        if not spec.multi_label and len(choices) != 1:
            raise BadInput(f"{field} must hold exactly one choice for a single-choice control", field=field)
        return list(choices)
    return None


def make_prediction(spec: ChoiceSpec, labels: Sequence[str], score: float, version: str) -> dict[str, Any]:
    """One Label Studio prediction. `score` is a confidence: lower is served first."""
    return {
        "result": [
            {
                "from_name": spec.from_name,
                "to_name": spec.to_name,
                "type": "choices",
                "value": {"choices": list(labels)},
            }
        ],
        "score": float(score),
        "model_version": version,
    }

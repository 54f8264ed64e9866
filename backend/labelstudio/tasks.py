"""Label Studio task / annotation / prediction JSON <-> the plain values the model consumes.

Where a task keeps its input (text, image) and which annotation counts; what a control's result means
is its task type's business (labelstudio/tasktypes/).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.errors import BadInput

if TYPE_CHECKING:
    from backend.labelstudio.tasktypes import TaskType

__all__ = ["BadInput", "ImageLoader", "pick_annotation", "task_input", "task_inputs"]


ImageLoader = Callable[[str], np.ndarray]


def task_input(task: dict[str, Any], spec: TaskType, load_image: ImageLoader | None,
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


def task_inputs(tasks: Sequence[dict[str, Any]], spec: TaskType, load_image: ImageLoader | None,
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

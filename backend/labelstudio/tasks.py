"""Label Studio task / annotation / prediction JSON <-> the plain values the model consumes.

Where a task keeps its input (text, image) and which annotation counts; what a control's result means
is its task type's business (labelstudio/tasktypes/).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np

from backend.errors import BadInput
from backend.labelstudio.families import controls_of

if TYPE_CHECKING:
    from backend.labelstudio.tasktypes import TaskType

__all__ = ["BadInput", "ImageLoader", "check_served", "pick_annotation", "task_input", "task_inputs"]


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


def check_served(asked: TaskType, served: TaskType, version: str, field: str = "label_config") -> None:
    """Refuse (BadInput naming ``field``) a label config whose tasks the serving model cannot score.

    Label Studio sends its current config with every /predict, and a user may edit it after a round: to
    read another object, data field or modality, or to add or change a control. The model knows only what
    it was trained on; fed other input, or its answers built as another control's, it fails inside scoring.
    A class added or renamed is no reason to refuse: the model predicts the classes it knows.
    """
    if asked != served and _model_shape(asked) != _model_shape(served):
        raise BadInput(f"'{field}' asks for {_described(asked)}, but the model serving this project ({version}) "
                       f"was trained for {_described(served)}; a round on the new config serves it "
                       "(Label Studio's Start Training, or the next round due)", field=field)


def _model_shape(spec: TaskType) -> tuple[Any, ...]:
    """Every control's tag and settings (names, object, data field, modality, single or multiple): all but
    its class names."""
    return tuple((c.tag, *((f.name, getattr(c, f.name)) for f in fields(c) if f.name != "labels"))
                 for c in controls_of(spec))


def _described(spec: TaskType) -> str:
    multiple = ' choice="multiple"'
    controls = ", ".join(f'<{c.tag} name="{c.from_name}"{multiple if getattr(c, "multi_label", False) else ""}>'
                         for c in controls_of(spec))
    return f"{controls} over the {spec.modality} in data field '{spec.data_key}'"


def pick_annotation(annotations: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The annotation a task's label comes from: not cancelled, ground truth first, then the newest."""
    usable = [a for a in annotations if not a.get("was_cancelled")]
    if not usable:
        return None

    def key(a: dict[str, Any]) -> tuple[bool, str, int]:
        stamp = str(a.get("updated_at") or a.get("created_at") or "")
        return (bool(a.get("ground_truth")), stamp, int(a.get("id") or 0))

    return max(usable, key=key)

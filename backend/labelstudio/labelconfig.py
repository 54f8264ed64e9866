"""Turn a Label Studio label config (XML) into the task type the model serves.

Each control tag with a registered label family (labelstudio/families.py: `Choices`, `RectangleLabels`) over
an object its task type labels is served; anything else is refused up front, at `/setup`, with the tag
named, so a user finds out when connecting the backend rather than after the first training round.
"""

from __future__ import annotations

import functools
from typing import Any

from label_studio_sdk.label_interface import LabelInterface

from backend.labelstudio.families import TASK_TYPES, supported_text
from backend.labelstudio.tasktypes import MultiControlTask, TaskType, UnsupportedConfig

SUPPORTED = supported_text()

__all__ = ["SUPPORTED", "TaskType", "UnsupportedConfig", "cached_spec", "parse_label_config"]


def parse_label_config(config_xml: str) -> TaskType:
    """Parse and validate; raises UnsupportedConfig (a ValueError) with a message naming the tag."""
    if not config_xml or not config_xml.strip():
        raise UnsupportedConfig("label config is empty; expected " + SUPPORTED)
    try:
        interface = LabelInterface(config_xml)
    except Exception as exc:  # the SDK raises its own XML/validation exception types
        raise UnsupportedConfig(f"label config is not valid XML: {exc}") from exc

    served = [c for c in interface.controls if c.tag in TASK_TYPES]
    others = [c for c in interface.controls if c.tag not in TASK_TYPES]
    if others:
        tags = ", ".join(f"<{c.tag} name=\"{c.name}\">" for c in others)
        raise UnsupportedConfig(f"unsupported control tag {tags}; labelloop serves {SUPPORTED}")
    if not served:
        raise UnsupportedConfig(f"expected at least one supported control, found none; labelloop serves {SUPPORTED}")
    specs = [_control_spec(interface, control) for control in served]
    if len(specs) == 1:
        return specs[0]
    objects = {(s.to_name, s.data_key) for s in specs}
    if len(objects) != 1:
        names = ", ".join(f"<{c.tag} name=\"{c.name}\"> on {c.to_name[0]!r}" for c in served)
        raise UnsupportedConfig(f"several controls must label the same object to get a model each; found {names}")
    return MultiControlTask.of(specs)


def _control_spec(interface: LabelInterface, control: Any) -> TaskType:
    """One control's task type, with the object it labels checked."""
    if len(control.to_name) != 1:
        raise UnsupportedConfig(
            f"<{control.tag} name=\"{control.name}\"> must point at one object (toName), got {control.to_name}"
        )
    obj = interface.get_object(control.to_name[0])
    if obj is None:
        raise UnsupportedConfig(f"<{control.tag} name=\"{control.name}\"> points at unknown object "
                                f"{control.to_name[0]!r}")
    objects = TASK_TYPES[control.tag].objects
    if obj.tag not in objects:
        raise UnsupportedConfig(
            f"unsupported object tag <{obj.tag} name=\"{obj.name}\"> under <{control.tag} name=\"{control.name}\">: "
            f"it must point at an {' or '.join(f'<{o}>' for o in objects)}; labelloop serves {SUPPORTED}"
        )
    if not obj.value_name:
        raise UnsupportedConfig(f"<{obj.tag} name=\"{obj.name}\"> needs value=\"$field\" naming a task data field")
    return TASK_TYPES[control.tag].from_control(control, obj)


@functools.lru_cache(maxsize=64)
def cached_spec(config_xml: str) -> TaskType:
    """Label configs repeat on every request; parse each distinct one once per process."""
    return parse_label_config(config_xml)

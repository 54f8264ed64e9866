"""Turn a Label Studio label config (XML) into the task type the model serves.

Each control tag with a registered label family (labelstudio/families.py: `Choices`, `RectangleLabels`) over
an object its task type labels is served. Other controls (a comment box, a rating, a control on a second
object) are ignored and listed with the reason, since Label Studio's own templates have them next to the
control a team wants predicted; only a config with nothing labelloop can serve is refused, at `/setup`,
with the tags named, so a user finds out when connecting the backend rather than after the first round.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from label_studio_sdk.label_interface import LabelInterface

from backend.labelstudio.families import TASK_TYPES, supported_text
from backend.labelstudio.tasktypes import MultiControlTask, TaskType, UnsupportedConfig

SUPPORTED = supported_text()

__all__ = ["SUPPORTED", "ParsedConfig", "TaskType", "UnsupportedConfig", "cached_spec", "ignored_controls",
           "parse_label_config", "read_label_config"]


@dataclass(frozen=True)
class ParsedConfig:
    """A label config as labelloop reads it: what it serves (``spec``) and every control it ignores, with why."""

    spec: TaskType
    ignored: tuple[str, ...] = ()
    text: str = ""


def parse_label_config(config_xml: str) -> TaskType:
    """Parse and validate; raises UnsupportedConfig (a ValueError) with a message naming the tag.

    Controls labelloop cannot predict (a comment box, a rating, a control over another object) are
    ignored, not refused (:func:`read_label_config` lists them); only a config with nothing to serve is.
    """
    return read_label_config(config_xml).spec


def read_label_config(config_xml: str) -> ParsedConfig:
    """The served controls and the ignored ones (see :func:`parse_label_config`)."""
    if not config_xml or not config_xml.strip():
        raise UnsupportedConfig("label config is empty; expected " + SUPPORTED)
    try:
        interface = LabelInterface(config_xml)
    except Exception as exc:  # the SDK raises its own XML/validation exception types
        raise UnsupportedConfig(f"label config is not valid XML: {exc}") from exc
    ignored: list[str] = []
    specs: list[TaskType] = []
    for control in interface.controls:
        name = f"<{control.tag} name=\"{control.name}\">"
        if control.tag not in TASK_TYPES:
            ignored.append(f"{name}: labelloop does not predict <{control.tag}>")
            continue
        try:
            specs.append(_control_spec(interface, control))
        except UnsupportedConfig as exc:
            ignored.append(f"{name}: {exc}")
    if not specs:
        why = f" ({'; '.join(ignored)})" if ignored else ""
        raise UnsupportedConfig(f"expected at least one supported control, found none{why}; "
                                f"labelloop serves {SUPPORTED}")
    first = (specs[0].to_name, specs[0].data_key)
    served = [s for s in specs if (s.to_name, s.data_key) == first]
    ignored.extend(f"<{s.tag} name=\"{s.from_name}\">: labels {s.to_name!r}, and labelloop serves the controls "
                   f"of one object ({first[0]!r}, the first one labelled)" for s in specs if (s.to_name, s.data_key)
                   != first)
    spec = served[0] if len(served) == 1 else MultiControlTask.of(served)
    return ParsedConfig(spec, tuple(ignored), config_xml)


def ignored_controls(config_xml: str) -> tuple[str, ...]:
    """The controls of a config labelloop ignores, each with why (the status page and the history list them)."""
    return _cached_read(config_xml).ignored


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
def _cached_read(config_xml: str) -> ParsedConfig:
    return read_label_config(config_xml)


def cached_spec(config_xml: str) -> TaskType:
    """Label configs repeat on every request; parse each distinct one once per process."""
    return _cached_read(config_xml).spec

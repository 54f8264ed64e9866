"""Turn a Label Studio label config (XML) into the one thing the model needs: a `ChoiceSpec`.

labelloop serves classification: exactly one `Choices` control (single or `choice="multiple"`) over
one `Text` or `Image` object. Anything else is refused up front, at `/setup`, with the tag named, so
a user finds out when connecting the backend rather than after the first training round.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from label_studio_sdk.label_interface import LabelInterface

SUPPORTED = "one <Choices> control (single or choice=\"multiple\") over a <Text> or <Image> object"


class UnsupportedConfig(ValueError):
    """The label config has a shape labelloop does not serve; the message names the tag."""


@dataclass(frozen=True)
class ChoiceSpec:
    """What a prediction must look like and where a task keeps its input."""

    from_name: str
    to_name: str
    data_key: str
    modality: str  # "text" or "image"
    labels: tuple[str, ...]
    multi_label: bool


def parse_label_config(config_xml: str) -> ChoiceSpec:
    """Parse and validate; raises UnsupportedConfig (a ValueError) with a message naming the tag."""
    if not config_xml or not config_xml.strip():
        raise UnsupportedConfig("label config is empty; expected " + SUPPORTED)
    try:
        interface = LabelInterface(config_xml)
    except Exception as exc:  # the SDK raises its own XML/validation exception types
        raise UnsupportedConfig(f"label config is not valid XML: {exc}") from exc

    choices = [c for c in interface.controls if c.tag == "Choices"]
    others = [c for c in interface.controls if c.tag != "Choices"]
    if others:
        tags = ", ".join(f"<{c.tag} name=\"{c.name}\">" for c in others)
        raise UnsupportedConfig(f"unsupported control tag {tags}; labelloop serves {SUPPORTED}")
    if len(choices) != 1:
        found = ", ".join(f"<Choices name=\"{c.name}\">" for c in choices) or "none"
        raise UnsupportedConfig(f"expected exactly one <Choices> control, found {found}; labelloop serves {SUPPORTED}")
    control = choices[0]
    if len(control.to_name) != 1:
        raise UnsupportedConfig(
            f"<Choices name=\"{control.name}\"> must point at one object (toName), got {control.to_name}"
        )
    obj = interface.get_object(control.to_name[0])
    if obj is None:
        raise UnsupportedConfig(f"<Choices name=\"{control.name}\"> points at unknown object {control.to_name[0]!r}")
    if obj.tag not in ("Text", "Image"):
        raise UnsupportedConfig(
            f"unsupported object tag <{obj.tag} name=\"{obj.name}\"> under <Choices name=\"{control.name}\">; "
            f"labelloop serves {SUPPORTED}"
        )
    data_key = obj.value_name
    if not data_key:
        raise UnsupportedConfig(f"<{obj.tag} name=\"{obj.name}\"> needs value=\"$field\" naming a task data field")
    labels = tuple(control.labels)
    if len(labels) < 2 and not control.is_multiple_choice:
        raise UnsupportedConfig(f"<Choices name=\"{control.name}\"> needs at least 2 <Choice> values")
    if not labels:
        raise UnsupportedConfig(f"<Choices name=\"{control.name}\"> has no <Choice> values")
    return ChoiceSpec(
        from_name=control.name,
        to_name=obj.name,
        data_key=data_key,
        modality="text" if obj.tag == "Text" else "image",
        labels=labels,
        multi_label=bool(control.is_multiple_choice),
    )


@functools.lru_cache(maxsize=64)
def cached_spec(config_xml: str) -> ChoiceSpec:
    """Label configs repeat on every request; parse each distinct one once per process."""
    return parse_label_config(config_xml)

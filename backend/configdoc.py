"""Write docs/configuration.md from the settings models, so the reference cannot drift from the code.

Run ``python -m backend.configdoc --write`` after changing a field of :class:`backend.config.ProjectPolicy`
or :class:`backend.config.Settings`; ``tests/unit/test_docs.py`` fails while the file is out of date.

Names, defaults and meanings come from the models: a field's ``description``, its default, its bounds.
Policy variables come from :meth:`ProjectPolicy.env_names`. The process settings' variables are mapped by
hand in :meth:`Settings.from_env`, so they are found by asking ``from_env`` itself: each upper-case name
``backend/config.py`` spells (and each field's conventional name) is set alone to a probe value, and the one
field it changes is that variable's field. The map documented is therefore the one the code reads.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import typing
from pathlib import Path

from pydantic import ValidationError
from pydantic.fields import FieldInfo

import backend.config as config
from backend.config import BUILTIN_MODELS, ProjectPolicy, Settings
from model.device import DEVICE_ENV_VAR, THREADS_ENV_VAR

TARGET = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
COMMAND = "python -m backend.configdoc --write"
#: Values tried for a candidate variable, until one is accepted: a word for enumerations, then a number
#: (every numeric bound allows it), then an address (lists of hosts).
PROBES = ("serve", "7777", "10.9.8.7")
#: Variables read by ``model.device`` at call time rather than through Settings (torch is imported only
#: to train, so they are not validated at start-up).
DEVICE_KNOBS = (
    (DEVICE_ENV_VAR, "auto", "Where the MLP and the detector train: `auto` (CUDA when torch sees it), `cpu`, "
     "`cuda`, `cuda:N`. Scoring runs in numpy on the CPU (a serving worker never imports torch, ~180 MB) "
     "unless this names CUDA. Asking for CUDA on a machine without it is an error, not a silent fallback."),
    (THREADS_ENV_VAR, "1", "torch's intra-op threads while labelloop's CPU computations run."),
)


def settings_env_names() -> dict[str, str]:
    """Settings field -> the environment variable :meth:`Settings.from_env` reads it from."""
    policy_names = set(ProjectPolicy.env_names().values())
    spelled = set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', inspect.getsource(config)))
    conventional = {n for f in Settings.model_fields for n in (f.upper(), f"LABELLOOP_{f.upper()}")}
    base = Settings.from_env({}).model_dump()
    names: dict[str, str] = {}
    for env in sorted((spelled | conventional) - policy_names):
        for probe in PROBES:
            try:
                got = Settings.from_env({env: probe}).model_dump()
            except (ValueError, ValidationError):
                continue
            changed = [k for k in base if k != "policy" and got[k] != base[k]]
            if len(changed) == 1:
                names.setdefault(changed[0], env)
                break
    return names


def _default(info: FieldInfo) -> str:
    factory = info.default_factory
    if factory is not None and factory not in (list, dict):
        return "computed at start-up"  # e.g. a per-user directory: the page must not depend on who built it
    value = info.get_default(call_default_factory=True)
    if value is None or value == []:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int) and value >= 1024 and value % 1024 == 0:
        for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
            if value % size == 0:
                return f"`{value}` ({value // size} {unit})"
    if isinstance(value, dict):
        return f"`{value}`" if value else "`{}`"
    return f"`{value}`"


def _values(name: str, info: FieldInfo, policy: bool) -> str:
    """What the field accepts, as the validators and bounds say."""
    annotation = info.annotation
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(f"`{v}`" for v in typing.get_args(annotation))
    if name in ("strategy", "queue", "calibration"):
        return "one of " + ", ".join(f"`{v}`" for v in config._choices(name))
    if name == "model":
        return "one of " + ", ".join(f"`{v}`" for v in BUILTIN_MODELS) + ", or a factory `file.py:function`"
    kinds = {int: "an integer", float: "a number", bool: "`true` or `false`", Path: "a path"}
    text = kinds.get(annotation, "")  # type: ignore[arg-type]
    origin = typing.get_origin(annotation)
    if origin is list:
        text = "a list: comma-separated in the environment" + (", a JSON list in extra params" if policy else "")
    elif origin is dict:
        text = "a JSON object"
    elif not text:
        text = "text"
    bounds = []
    for meta in info.metadata:
        for attr, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                bounds.append(f"{sign} {getattr(meta, attr)}")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _entry(env: str, where: str, info: FieldInfo, values: str) -> list[str]:
    return [f"### `{env}`", "", f"{where} · default {_default(info)} · {values}", "",
            info.description or "", ""]


def _table(rows: list[tuple[str, str]]) -> list[str]:
    lines = ["| variable | default |", "|---|---|"]
    lines += [f"| [`{env}`](#{env.lower()}) | {default} |" for env, default in rows]
    return [*lines, ""]


def render() -> str:
    """The whole of docs/configuration.md."""
    policy_env = ProjectPolicy.env_names()
    settings_env = settings_env_names()
    settings_fields = [(n, i) for n, i in Settings.model_fields.items() if n != "policy"]
    out = [
        "# Configuration reference",
        "",
        f"<!-- Generated from backend/config.py by `{COMMAND}`; do not edit by hand. -->",
        "",
        "Everything is read from the environment when a process starts. A process refuses to start on a",
        "malformed value and names the setting. `serve`, `worker` and every command read the same variables,",
        "so give them the same environment (and the same working directory when `MODEL_DIR` is relative).",
        "",
        "## Per-project policy",
        "",
        "These variables are every project's defaults. A project overrides them in Label Studio's *Extra",
        "params* of the model connection (*Settings -> Model*), a JSON object keyed by the field names below,",
        'e.g. `{"strategy": "bald", "queue": "cluster", "retrain_every": 25}`. `/setup` refuses an unknown key',
        "or a bad value with a 400 naming it (`extra_params.<field>`), so a typo is reported, never ignored.",
        "The policy is stored with the project in SQL, so every worker sees the same one.",
        "",
        *_table([(policy_env[n], _default(i)) for n, i in ProjectPolicy.model_fields.items()]),
    ]
    for name, info in ProjectPolicy.model_fields.items():
        out += _entry(policy_env[name], f"extra params `{name}`", info, _values(name, info, True))
    out += ["## Process settings", "",
            "These hold for the whole process (every project it serves); they cannot be set per project.", "",
            *_table([(settings_env.get(n, n), _default(i)) for n, i in settings_fields])]
    for name, info in settings_fields:
        out += _entry(settings_env.get(name, f"(no variable) {name}"), f"setting `{name}`", info,
                      _values(name, info, False))
    out += ["## Read by the model at run time", "",
            "These two are read by `model/device.py` when torch runs, not at start-up.", ""]
    for env, default, meaning in DEVICE_KNOBS:
        out += [f"### `{env}`", "", f"default `{default}`", "", meaning, ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {TARGET.name} instead of printing it")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        TARGET.write_text(text)
        print(f"wrote {TARGET}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


"""The registry of label families: every caller asks it, detection strategies are reachable, and no other
module chooses by family."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backend.config import ProjectPolicy
from backend.errors import UnsupportedConfig
from backend.labelstudio.families import (
    FAMILIES,
    TASK_TYPES,
    EstimatorRequest,
    all_strategies,
    controls_of,
    family_of,
    import_model_modules,
)
from backend.labelstudio.labelconfig import SUPPORTED, parse_label_config
from backend.service.models import build_estimator, resolve_strategy
from model.detection.detector import BoxDetector
from model.estimators import ChoiceClassifier
from model.percontrol import PerControl
from tests.unit.test_app import setup_project
from tests.unit.test_detection_round import CONFIG as BOX_CONFIG
from tests.unit.test_detection_round import detection_app  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
TEXT = ('<View><Text name="t" value="$text"/><Choices name="c" toName="t"><Choice value="a"/><Choice value="b"/>'
        "</Choices></View>")
SCENE_AND_BOXES = ('<View><Image name="img" value="$image"/><Choices name="scene" toName="img"><Choice value="in"/>'
                   '<Choice value="out"/></Choices><RectangleLabels name="box" toName="img"><Label value="cat"/>'
                   "</RectangleLabels></View>")


def test_every_registered_tag_parses_to_its_family() -> None:
    assert set(TASK_TYPES) == {f.task_type.tag for f in FAMILIES.values()}
    for config, name in ((TEXT, "classification"), (BOX_CONFIG, "detection"), (SCENE_AND_BOXES, "multi")):
        assert family_of(parse_label_config(config)).name == name
    multi = parse_label_config(SCENE_AND_BOXES)
    assert [family_of(c).name for c in controls_of(multi)] == ["classification", "detection"]
    for family in FAMILIES.values():  # the refusal message lists what every family serves
        assert family.task_type.supported in SUPPORTED


def test_each_family_builds_its_estimator_and_says_its_default() -> None:
    policy = ProjectPolicy(detector={"image_size": 48})
    text, boxes, multi = (parse_label_config(c) for c in (TEXT, BOX_CONFIG, SCENE_AND_BOXES))
    assert isinstance(build_estimator(policy, text), ChoiceClassifier)
    detector = build_estimator(policy, boxes)
    assert isinstance(detector, BoxDetector) and detector.image_size == 48
    joined = build_estimator(policy, multi)
    assert isinstance(joined, PerControl) and set(joined.estimators) == {"scene", "box"}
    assert [resolve_strategy("auto", "auto", s) for s in (text, boxes, multi)] == ["bald", "margin", "margin"]
    assert resolve_strategy("auto", "logreg", text) == "margin"
    request = EstimatorRequest(strategy="margin", params={"detection": {"epochs": 3}})
    assert FAMILIES["detection"].build_estimator(boxes, request).epochs == 3


@pytest.mark.parametrize("name", ["localization", "missed", "mc_dropout", "random", "entropy"])
def test_detection_strategies_are_valid_policy_names(name: str) -> None:
    assert name in all_strategies()
    assert ProjectPolicy(strategy=name).strategy == name
    FAMILIES["detection"].check_strategy(parse_label_config(BOX_CONFIG), name)


def test_a_strategy_the_config_cannot_use_is_refused_with_the_valid_names() -> None:
    with pytest.raises(UnsupportedConfig, match=r"'localization' cannot score <Choices name=\"c\">.*'margin'"):
        family_of(parse_label_config(TEXT)).check_strategy(parse_label_config(TEXT), "localization")
    multi = parse_label_config(SCENE_AND_BOXES)  # every control must take it
    with pytest.raises(UnsupportedConfig, match="<Choices name=\"scene\">"):
        family_of(multi).check_strategy(multi, "missed")
    family_of(multi).check_strategy(multi, "entropy")


def test_setup_takes_a_detection_strategy_for_boxes_and_refuses_it_for_classes(app_env) -> None:
    client, services, _ = app_env
    resp = setup_project(client, extra_params={"strategy": "localization"})  # the app's config is <Choices>
    assert resp.status_code == 400 and resp.get_json()["field"] == "extra_params.strategy"
    assert "least_confidence" in resp.get_json()["error"]
    resp = client.post("/setup", json={"project": "2.1", "schema": BOX_CONFIG,
                                       "extra_params": {"strategy": "mc_dropout"}})
    assert resp.status_code == 200, resp.get_json()
    assert services.store.get_project(2).rules.strategy == "mc_dropout"


def test_a_detection_round_runs_a_sampled_box_strategy(detection_app) -> None:  # noqa: F811
    client, services, gateway = detection_app
    resp = client.post("/setup", json={"project": "1.1", "schema": BOX_CONFIG, "extra_params": {"strategy": "missed"}})
    assert resp.status_code == 200, resp.get_json()
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (it,) = services.store.iterations(1)
    assert it.status == "succeeded", it.error
    assert it.strategy == "missed" and len(gateway.pushed) == it.n_pool > 0


def test_model_modules_of_every_family_import_without_torch() -> None:
    """A serving worker imports them all to resolve model files: none may pull torch in (~180 MB)."""
    import subprocess
    import sys

    script = ("import sys; from backend.labelstudio.families import import_model_modules; import_model_modules(); "
              "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.split()[-1] == "False", done.stderr
    import_model_modules()


#: Choosing by label family outside the registry: a task type's or estimator's class, or a "kind" string.
DISPATCH = re.compile(r"isinstance\([^)]*\b(ChoicesTask|RectanglesTask|MultiControlTask|BoxDetector|PerControl)\b"
                      r"|\b(spec|task_type|c)\.kind\b|kind\s*==\s*\"(detection|classification|multi)\"")


def test_no_family_dispatch_outside_the_registry() -> None:
    offenders = []
    for path in [*(ROOT / "backend").rglob("*.py"), *(ROOT / "model").rglob("*.py")]:
        if path.name == "families.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if DISPATCH.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)

"""`<RectangleLabels>`: Label Studio's percent rectangles <-> normalised boxes, predictions, evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import BadInput, UnsupportedConfig
from backend.labelstudio.families import family_of
from backend.labelstudio.labelconfig import parse_label_config
from backend.labelstudio.tasktypes import RectanglesTask

CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          '<Label value="cat"/><Label value="dog"/></RectangleLabels></View>')


def region(x: float, y: float, w: float, h: float, label: str = "cat", rotation: float = 0.0) -> dict:
    return {"from_name": "box", "to_name": "image", "type": "rectanglelabels",
            "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation, "rectanglelabels": [label]}}


@pytest.fixture
def spec() -> RectanglesTask:
    parsed = parse_label_config(CONFIG)
    assert isinstance(parsed, RectanglesTask)
    return parsed


def test_config_parses_to_a_detection_task(spec: RectanglesTask) -> None:
    assert (family_of(spec).name, spec.modality, spec.data_key, spec.labels) == ("detection", "image", "image",
                                                                                ("cat", "dog"))
    with pytest.raises(UnsupportedConfig, match="must point at an <Image>"):
        parse_label_config('<View><Text name="t" value="$t"/><RectangleLabels name="b" toName="t">'
                           '<Label value="x"/></RectangleLabels></View>')


def test_targets_are_normalised_boxes_and_no_boxes_is_an_answer(spec: RectanglesTask) -> None:
    boxes = spec.target({"result": [region(10, 20, 30, 40), region(50, 50, 10, 10, "dog")]})
    assert boxes == [{"box": pytest.approx([0.1, 0.2, 0.4, 0.6]), "label": "cat"},
                     {"box": pytest.approx([0.5, 0.5, 0.6, 0.6]), "label": "dog"}]
    assert spec.target({"result": []}) == []  # submitted without boxes: the image shows none of the classes
    rotated = spec.target({"result": [region(50, 50, 20, 10, rotation=90)]})[0]["box"]
    assert rotated == pytest.approx([0.4, 0.5, 0.5, 0.7])  # rotated about its top-left corner: the upright extent


@pytest.mark.parametrize(("value", "needle"), [
    ({"x": 1, "y": 1, "width": 2, "height": 2, "rectanglelabels": ["bird"]}, "not in the label config"),
    ({"x": 1, "y": 1, "width": 2, "height": 2, "rectanglelabels": []}, "exactly one label"),
    ({"x": "a", "y": 1, "width": 2, "height": 2, "rectanglelabels": ["cat"]}, "numeric"),
    ({"x": 1, "y": 1, "width": -2, "height": 2, "rectanglelabels": ["cat"]}, "negative"),
])
def test_malformed_rectangles_name_their_field(spec: RectanglesTask, value: dict, needle: str) -> None:
    with pytest.raises(BadInput, match=needle) as info:
        spec.target({"result": [{"from_name": "box", "value": value}]}, where="annotation 7")
    assert info.value.field.startswith("annotation 7.result[0].value")


def test_predictions_are_regions_label_studio_draws(spec: RectanglesTask) -> None:
    predicted = [{"box": [0.1, 0.2, 0.4, 0.6], "label": "cat", "score": 0.9},
                 {"box": [-0.1, 0.5, 1.2, 0.9], "label": "dog", "score": 0.6},
                 {"box": [0.3, 0.3, 0.4, 0.4], "label": "dog", "score": 0.05}]  # too weak to show
    out = spec.prediction(predicted, 0.25, "it-3")
    assert out["score"] == 0.25 and out["model_version"] == "it-3"
    assert [r["value"]["rectanglelabels"] for r in out["result"]] == [["cat"], ["dog"]]
    first, second = (r["value"] for r in out["result"])
    assert (first["x"], first["y"], first["width"], first["height"]) == pytest.approx((10, 20, 30, 40))
    assert (second["x"], second["width"]) == pytest.approx((0, 100))  # clipped to the image
    assert all(r["type"] == "rectanglelabels" and r["from_name"] == "box" and r["to_name"] == "image"
               for r in out["result"])
    assert [r["score"] for r in out["result"]] == [0.9, 0.6]
    # what a human drew comes back unchanged through target()
    assert spec.target({"result": out["result"][:1]})[0]["box"] == pytest.approx([0.1, 0.2, 0.4, 0.6])


def test_correct_evaluate_and_threshold_rows(spec: RectanglesTask) -> None:
    truth = [[{"box": [0.1, 0.1, 0.5, 0.5], "label": "cat"}], []]
    right = [[{"box": [0.12, 0.1, 0.5, 0.52], "label": "cat", "score": 0.9}], []]
    wrong = [[{"box": [0.12, 0.1, 0.5, 0.52], "label": "dog", "score": 0.9}],
             [{"box": [0.6, 0.6, 0.9, 0.9], "label": "cat", "score": 0.8}]]
    assert [spec.correct(p, t) for p, t in zip(right, truth, strict=True)] == [True, True]
    assert [spec.correct(p, t) for p, t in zip(wrong, truth, strict=True)] == [False, False]
    assert spec.evaluate(truth, right, np.zeros((2, 2)))["map50"] == pytest.approx(1.0)
    report = spec.evaluate(truth, wrong, np.zeros((2, 2)))
    assert report["accuracy"] == report["map50"] == 0.0 and report["per_class"]["cat"]["support"] == 1
    rows = spec.threshold_rows(truth, wrong)
    assert rows == {"image": [0, 1], "score": [0.9, 0.8], "correct": [0, 0], "n_truth": [1, 0]}
    assert spec.agreement(right, right) == 1.0 and spec.agreement(right, wrong) == 0.0

"""Task/annotation adapters: inputs out of task JSON; the Choices task type: labels out of annotations,
predictions back, correctness, evaluation."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from backend.labelstudio.images import ImageFetcher
from backend.labelstudio.labelconfig import parse_label_config
from backend.labelstudio.tasks import (
    BadInput,
    pick_annotation,
    task_input,
    task_inputs,
)

TEXT = parse_label_config(
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
    '<Choice value="pos"/><Choice value="neg"/></Choices></View>'
)
MULTI = parse_label_config(
    '<View><Image name="img" value="$image"/><Choices name="tags" toName="img" choice="multiple">'
    '<Choice value="cat"/><Choice value="dog"/></Choices></View>'
)


def choices(labels, from_name="sentiment", to_name="text"):
    return {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": labels}}


def test_text_input_and_missing_field_named() -> None:
    assert task_input({"id": 1, "data": {"text": "hello"}}, TEXT, None) == "hello"
    with pytest.raises(BadInput) as info:
        task_inputs([{"id": 1, "data": {"text": "ok"}}, {"id": 2, "data": {"body": "x"}}], TEXT, None)
    assert info.value.field == "tasks[1].data.text"
    assert "'text'" in str(info.value)


def test_pick_annotation_prefers_ground_truth_then_newest_and_skips_cancelled() -> None:
    anns = [
        {"id": 1, "updated_at": "2026-01-01T00:00:00Z", "result": [choices(["pos"])]},
        {"id": 2, "updated_at": "2026-02-01T00:00:00Z", "result": [choices(["neg"])]},
        {"id": 3, "updated_at": "2026-03-01T00:00:00Z", "was_cancelled": True, "result": []},
    ]
    assert pick_annotation(anns)["id"] == 2
    anns[0]["ground_truth"] = True
    assert pick_annotation(anns)["id"] == 1
    assert pick_annotation([anns[2]]) is None


def test_choices_target_from_annotation() -> None:
    assert TEXT.target({"result": [choices(["neg"])]}) == ["neg"]
    assert TEXT.target({"result": [choices(["x"], from_name="other")]}) is None
    with pytest.raises(BadInput) as info:
        TEXT.target({"result": [choices(["meh"])]})
    assert info.value.field == "annotation.result[0].value.choices" and "meh" in str(info.value)
    with pytest.raises(BadInput):
        TEXT.target({"result": [choices(["pos", "neg"])]})
    assert MULTI.target({"result": [choices(["cat", "dog"], "tags", "img")]}) == ["cat", "dog"]


def test_choices_prediction_shape() -> None:
    pred = TEXT.prediction(["pos"], 0.25, "it-3")
    assert pred == {
        "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}],
        "score": 0.25,
        "model_version": "it-3",
    }


def test_choices_correctness_evaluation_and_agreement() -> None:
    assert TEXT.correct(["pos"], ["pos"]) and not TEXT.correct(["neg"], ["pos"])
    assert MULTI.correct(["dog", "cat"], ["cat", "dog"]) and not MULTI.correct(["cat"], ["cat", "dog"])
    assert TEXT.model_targets([["pos"], ["neg"]]) == ["pos", "neg"]
    assert MULTI.model_targets([["cat"], []]) == [["cat"], []]
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    report = TEXT.evaluate([["pos"], ["neg"], ["neg"]], [["pos"], ["neg"], ["pos"]], probs)
    assert report["accuracy"] == pytest.approx(2 / 3) and 0.0 <= report["ece"] <= 1.0
    assert report["per_class"].keys() == {"pos", "neg"}
    assert TEXT.agreement([["pos"], ["neg"], ["pos"]], [["pos"], ["neg"], ["pos"]]) == pytest.approx(1.0)


def _png(color=(255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 4), color).save(buf, format="PNG")
    return buf.getvalue()


def test_image_from_data_uri() -> None:
    uri = "data:image/png;base64," + base64.b64encode(_png()).decode()
    arr = task_input({"id": 1, "data": {"image": uri}}, MULTI, ImageFetcher(None))
    assert arr.shape == (4, 5, 3) and arr.dtype == np.uint8 and tuple(arr[0, 0]) == (255, 0, 0)


def test_image_errors_name_the_field() -> None:
    fetch = ImageFetcher(None)
    with pytest.raises(BadInput) as info:
        task_input({"id": 1, "data": {"image": "data:image/png;base64,AAAA"}}, MULTI, fetch)
    assert info.value.field == "task.data.image"
    with pytest.raises(BadInput, match="LABEL_STUDIO_URL"):
        task_input({"id": 1, "data": {"image": "/data/upload/1/x.png"}}, MULTI, fetch)

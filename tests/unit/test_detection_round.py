"""A RectangleLabels project through the app (fake Label Studio): round, history, /predict, auto-labelling."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image

from backend.config import ProjectPolicy, Settings
from backend.service.autolabel import AutolabelRequest, run_autolabel
from backend.web.app import create_app
from model.detection.synthetic import make_scenes
from tests.unit.test_app import FakeGateway

CLASSES = ("circle", "square")
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          + "".join(f'<Label value="{c}"/>' for c in CLASSES) + "</RectangleLabels></View>")


def data_uri(image) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def scene_tasks(n_labelled: int, n_pool: int) -> list[dict[str, Any]]:
    images, truths = make_scenes(n_labelled + n_pool, seed=1, classes=CLASSES, min_size=48, max_size=64,
                                 max_objects=2, clutter=1)
    tasks = []
    for i, (image, truth) in enumerate(zip(images, truths, strict=True)):
        task: dict[str, Any] = {"id": 200 + i, "data": {"image": data_uri(image)}, "annotations": []}
        if i < n_labelled:
            task["annotations"] = [{"id": 2000 + i, "result": [
                {"from_name": "box", "to_name": "image", "type": "rectanglelabels",
                 "value": {"x": 100 * x0, "y": 100 * y0, "width": 100 * (x1 - x0), "height": 100 * (y1 - y0),
                           "rectanglelabels": [label]}}
                for (x0, y0, x1, y1), label in zip(truth.boxes, truth.labels, strict=True)]}]
        tasks.append(task)
    return tasks


@pytest.fixture
def detection_app(tmp_path):
    settings = Settings(
        model_dir=tmp_path / "models", database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        policy=ProjectPolicy(retrain_every=1000, validation_fraction=0.3,
                             detector={"image_size": 48, "epochs": 8, "mc_samples": 3}),
        label_studio_url="http://label-studio.invalid", label_studio_api_key="x" * 40,
    )
    app = create_app(settings, start_jobs=False, migrate=True)
    services = app.extensions["labelloop"]
    gateway = FakeGateway(scene_tasks(16, 6))
    services.gateway_for = lambda project: gateway
    yield app.test_client(), services, gateway
    services.stop()
    services.store.dispose()


def test_a_detection_round_pushes_boxes_and_records_map(detection_app) -> None:
    client, services, gateway = detection_app
    assert client.post("/setup", json={"project": "1.1", "schema": CONFIG}).status_code == 200
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (it,) = services.store.iterations(1)
    assert it.status == "succeeded", it.error
    assert it.n_pool == 6 and it.labels_used == 16 and it.n_validation > 0
    evaluation = it.metrics["evaluation"]
    assert 0.0 <= evaluation["map50_95"] <= evaluation["map50"] <= 1.0 and it.accuracy == evaluation["map50"]
    rows = it.metrics["validation"]["rows"]
    assert set(rows) == {"image", "score", "correct", "n_truth"} and len(rows["n_truth"]) == it.n_validation
    assert sorted(p["task"] for p in gateway.pushed) == list(range(216, 222))
    for p in gateway.pushed:
        assert 0.0 <= p["score"] <= 1.0 and all(r["type"] == "rectanglelabels" for r in p["result"])
    # /predict: a pool task is answered from its round's row, a new image is computed.
    pool_task = gateway.tasks[-1]
    new_task = {"id": 999, "data": {"image": gateway.tasks[0]["data"]["image"]}}
    body = client.post("/predict", json={"project": "1.1", "tasks": [pool_task, new_task]}).get_json()
    assert body["model_version"] == "it-1" and len(body["results"]) == 2
    pushed = next(p for p in gateway.pushed if p["task"] == pool_task["id"])
    assert body["results"][0]["result"] == pushed["result"] and body["results"][0]["score"] == pushed["score"]
    # Auto-labelling: a box threshold, coverage per box and per image.
    outcome = run_autolabel(AutolabelRequest(project_id=1, target_precision=0.8, create_view=False),
                            store=services.store, models=services.models, gateway_for=services.gateway_for)
    assert outcome["threshold_unit"] == "box" and outcome["n_threshold_rows"] == len(rows["score"])
    assert outcome["n_crossfit_rows"] == 0 and 0.0 <= outcome["box_coverage"] <= 1.0
    assert outcome["reached"] == (outcome["threshold"] is not None)


MULTI = ('<View><Image name="image" value="$image"/><Choices name="count" toName="image"><Choice value="none"/>'
         '<Choice value="some"/></Choices><RectangleLabels name="box" toName="image">'
         + "".join(f'<Label value="{c}"/>' for c in CLASSES) + "</RectangleLabels></View>")


def test_choices_and_rectangles_on_one_image_get_a_model_each(detection_app) -> None:
    client, services, gateway = detection_app
    for task in gateway.tasks:  # every labelled scene also answers the Choices question
        for annotation in task["annotations"]:
            boxes = [r for r in annotation["result"] if r["from_name"] == "box"]
            annotation["result"].append({"from_name": "count", "to_name": "image", "type": "choices",
                                         "value": {"choices": ["some" if boxes else "none"]}})
    gateway.tasks[0]["annotations"][0]["result"] = [  # one annotator only answered the question
        r for r in gateway.tasks[0]["annotations"][0]["result"] if r["from_name"] == "count"]
    assert client.post("/setup", json={"project": "1.1", "schema": MULTI}).status_code == 200
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (it,) = services.store.iterations(1)
    assert it.status == "succeeded", it.error
    estimator = services.models.load(1, it.version, it.id, [])
    assert estimator.controls_ == ["count", "box"]
    assert estimator.n_trained_["count"] == it.n_train and estimator.n_trained_["box"] <= it.n_train
    evaluation = it.metrics["evaluation"]
    assert {"count.accuracy", "box.map50", "box.map50_95"} <= set(evaluation)
    assert it.accuracy == pytest.approx((evaluation["count.accuracy"] + evaluation["box.map50"]) / 2)
    assert any(k.startswith("count:") for k in it.metrics["per_class"])
    for p in gateway.pushed:  # one prediction per task holds both controls' regions
        types = {r["type"] for r in p["result"]}
        assert "choices" in types and types <= {"choices", "rectanglelabels"}
    body = client.post("/predict", json={"project": "1.1", "tasks": [
        {"id": 999, "data": {"image": gateway.tasks[0]["data"]["image"]}}]}).get_json()
    assert body["results"][0]["result"][0]["from_name"] == "count"


def test_labelloop_simulate_detection_prints_active_against_random(capsys, tmp_path) -> None:
    from backend.cli.main import main

    out = tmp_path / "curves.json"
    code = main(["simulate-detection", "--seeds", "1", "--budget", "14", "--initial", "8", "--batch", "6",
                 "--images", "30", "--test-size", "10", "--classes", "2", "--strategies", "entropy",
                 "--image-size", "32", "--epochs", "2", "--warm-steps", "5", "--targets", "0.5",
                 "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "random" in printed and "entropy" in printed and "images to reach" in printed
    assert out.exists()

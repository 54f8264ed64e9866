"""Object detection against a real Label Studio: a RectangleLabels project, end to end.

Synthetic scenes (model.detection.synthetic: shapes with clutter, noise, occlusion) uploaded to Label
Studio as files (hosted under /data/upload, fetched with the API key); annotators' boxes arrive by
webhook and start a round; the round pushes box regions ordered by image uncertainty, records mAP in
the history, and auto-labelling runs over a test view.
"""

from __future__ import annotations

import io
import time
import uuid

import requests
from PIL import Image

from model.detection.synthetic import make_scenes
from tests.integration.test_images_and_faults import wait_finished

CLASSES = ("circle", "square")
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image">'
          + "".join(f'<Label value="{c}"/>' for c in CLASSES) + "</RectangleLabels></View>")
#: A detector small enough to train in about half a minute on CI's cores.
DETECTOR = '{"image_size": 64, "mc_samples": 4}'


def png(image) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def regions(truth) -> list[dict]:
    """A scene's true boxes as the rectangles an annotator draws (percent of the image)."""
    return [{"from_name": "box", "to_name": "image", "type": "rectanglelabels",
             "value": {"x": 100 * x0, "y": 100 * y0, "width": 100 * (x1 - x0), "height": 100 * (y1 - y0),
                       "rotation": 0, "rectanglelabels": [label]}}
            for (x0, y0, x1, y1), label in zip(truth.boxes, truth.labels, strict=True)]


def wait_for(condition, what: str, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def upload_scenes(label_studio, config: str):
    """A project of 36 clear scenes (large shapes, little noise: the test is about the loop, the benchmark
    about accuracy) uploaded as files; returns the project, its tasks by id order, and each task's truth."""
    ls = label_studio.client()
    images, truths = make_scenes(36, seed=3, classes=CLASSES, min_size=64, max_size=80, max_objects=2, clutter=0,
                                 noise=3, blur=0, object_sizes=(0.3, 0.6))
    project = ls.projects.create(title=f"det-{uuid.uuid4().hex[:6]}", label_config=config)
    files = [(f"file{i}", (f"scene-{i:03d}.png", png(img), "image/png")) for i, img in enumerate(images)]
    resp = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                         headers=label_studio.headers, timeout=120)
    assert resp.status_code == 201, resp.text
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    assert len(tasks) == 36 and all(t.data["image"].startswith("/data/upload/") for t in tasks)
    return project, tasks, {t.id: truths[int(t.data["image"].rsplit("scene-", 1)[1][:3])] for t in tasks}


def test_rectangle_labels_project_end_to_end(label_studio, backend_server_factory) -> None:
    ls = label_studio.client()
    project, tasks, truth_of = upload_scenes(label_studio, CONFIG)

    server = backend_server_factory({"LABELLOOP_DETECTOR": DETECTOR, "LABELLOOP_RETRAIN_EVERY": "24",
                                     "LABELLOOP_VALIDATION_FRACTION": "0.25"})
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    labelled, pool = tasks[:24], tasks[24:]
    for t in labelled:  # each submit is a webhook; the 24th starts the round
        ls.annotations.create(id=t.id, result=regions(truth_of[t.id]))
    it = wait_finished(server, project.id, 1, timeout=300)
    assert it["status"] == "succeeded", it["error"]
    assert it["labels_used"] == 24 and it["n_pool"] == 12 and it["n_skipped"] == 0

    # History: mAP on the validation split, per-class precision/recall at IoU 0.5.
    assert it["metrics"]["validation_source"] == "ground_truth" or it["n_validation"] > 0
    evaluation = it["metrics"]["evaluation"]
    assert 0.0 <= evaluation["map50_95"] <= evaluation["map50"] <= 1.0 and it["accuracy"] == evaluation["map50"]
    assert set(it["metrics"]["per_class"]) == set(CLASSES)

    # Label Studio shows box regions with valid percent coordinates and the config's names, per pool image.
    preds = {p.task: p for p in ls.predictions.list(project=project.id) if p.model_version == "it-1"}
    assert set(preds) == {t.id for t in pool}
    boxes = [r for p in preds.values() for r in p.result]
    assert boxes, "the detector found nothing to pre-label on 12 images"
    for r in boxes:
        v = r["value"]
        assert r["type"] == "rectanglelabels" and r["from_name"] == "box" and r["to_name"] == "image"
        assert v["rectanglelabels"][0] in CLASSES and 0 < r["score"] <= 1
        assert 0 <= v["x"] <= v["x"] + v["width"] <= 100.0001 and 0 <= v["y"] <= v["y"] + v["height"] <= 100.0001

    # The queue: Label Studio serves the image labelloop ranked first (lowest score = most uncertain).
    scores = requests.get(f"{server.url}/projects/{project.id}/iterations/1/scores", timeout=10).json()["scores"]
    first = min(scores, key=lambda s: s["rank"])
    nxt = requests.get(f"{label_studio.url}/api/projects/{project.id}/next", headers=label_studio.headers, timeout=30)
    assert nxt.status_code == 200 and nxt.json()["id"] == first["task_id"]

    # /predict fetches a hosted image and answers boxes for it (the pool task's answer is its round's row).
    body = {"project": f"{project.id}.1", "label_config": CONFIG,
            "tasks": [{"id": pool[0].id, "data": {"image": pool[0].data["image"]}}]}
    out = requests.post(f"{server.url}/predict", json=body, timeout=60).json()
    assert out["model_version"] == "it-1" and out["results"][0] == {
        "result": preds[pool[0].id].result, "score": preds[pool[0].id].score, "model_version": "it-1"}

    # Auto-labelling a test view: a box threshold certified on the validation boxes, coverage per box and image.
    view = ls.views.create(project=project.id, data={"title": "test", "filters": {"conjunction": "or", "items": [
        {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": t.id} for t in pool[:6]]}})
    job = requests.post(f"{server.url}/projects/{project.id}/autolabel",
                        json={"target_precision": 0.9, "view": view.id}, timeout=30).json()
    done = wait_for(lambda: (lambda j: j if j["status"] in ("succeeded", "failed") else None)(
        requests.get(f"{server.url}/jobs/{job['job_id']}", timeout=10).json()), "the auto-labelling job")
    assert done["status"] == "succeeded", done["error"]
    outcome = done["result"]
    assert outcome["threshold_unit"] == "box" and outcome["n_predicted"] == 6
    assert 0.0 <= outcome["box_coverage"] <= 1.0 and 0.0 <= outcome["coverage"] <= 1.0
    assert outcome["reached"] == (outcome["threshold"] is not None)
    assert len(outcome["needs_review"]) + round(outcome["coverage"] * 6) == 6


MULTI = ('<View><Image name="image" value="$image"/><Choices name="count" toName="image"><Choice value="one"/>'
         '<Choice value="more"/></Choices><RectangleLabels name="box" toName="image">'
         + "".join(f'<Label value="{c}"/>' for c in CLASSES) + "</RectangleLabels></View>")


def test_choices_and_rectangle_labels_project_gets_a_model_per_control(label_studio, backend_server_factory) -> None:
    ls = label_studio.client()
    project, tasks, truth_of = upload_scenes(label_studio, MULTI)
    server = backend_server_factory({"LABELLOOP_DETECTOR": DETECTOR, "LABELLOOP_RETRAIN_EVERY": "24"})
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    for t in tasks[:24]:
        truth = truth_of[t.id]
        count = {"from_name": "count", "to_name": "image", "type": "choices",
                 "value": {"choices": ["one" if len(truth) <= 1 else "more"]}}
        ls.annotations.create(id=t.id, result=[count, *regions(truth)])
    it = wait_finished(server, project.id, 1, timeout=300)
    assert it["status"] == "succeeded", it["error"]
    evaluation = it["metrics"]["evaluation"]
    assert {"count.accuracy", "box.map50", "box.map50_95"} <= set(evaluation)
    assert {k.split(":")[0] for k in it["metrics"]["per_class"]} == {"count", "box"}
    preds = [p for p in ls.predictions.list(project=project.id) if p.model_version == "it-1"]
    assert len(preds) == 12
    for p in preds:  # every pool image gets the question answered, plus whatever boxes the detector is sure of
        assert [r["from_name"] for r in p.result if r["type"] == "choices"] == ["count"]
        assert all(r["from_name"] == "box" for r in p.result if r["type"] == "rectanglelabels")

"""Image projects with files hosted by Label Studio, and training when Label Studio is unreachable."""

from __future__ import annotations

import io
import time
import uuid

import numpy as np
import requests
from PIL import Image

from tests.support.proc import free_port

CONFIG = ('<View><Image name="image" value="$image"/><Choices name="colour" toName="image">'
          '<Choice value="red"/><Choice value="blue"/></Choices></View>')


def png(colour: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 80, size=(20, 24, 3), dtype=np.uint8)
    arr[..., 0 if colour == "red" else 2] += 170
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def wait_finished(server, project_id: int, number: int, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        its = requests.get(f"{server.url}/projects/{project_id}/iterations", timeout=10).json()["iterations"]
        done = [i for i in its if i["number"] == number and i["status"] in ("succeeded", "failed")]
        if done:
            return done[0]
        time.sleep(0.5)
    raise AssertionError(f"iteration {number} of project {project_id} did not finish")


def test_image_project_with_uploaded_files(label_studio, backend_server_factory) -> None:
    ls = label_studio.client()
    project = ls.projects.create(title=f"img-{uuid.uuid4().hex[:6]}", label_config=CONFIG)
    colours = ["red", "blue"] * 8
    # One form field per file: Label Studio keeps only one file per field name.
    files = [(f"file{i}", (f"{c}-{i}.png", png(c, i), "image/png")) for i, c in enumerate(colours)]
    resp = requests.post(f"{label_studio.url}/api/projects/{project.id}/import", files=files,
                         headers=label_studio.headers, timeout=60)
    assert resp.status_code == 201, resp.text
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    # Hosted by Label Studio: fetching them needs the API key.
    assert len(tasks) == 16 and all(t.data["image"].startswith("/data/upload/") for t in tasks)
    colour_of = {t.id: t.data["image"].rsplit("/", 1)[-1].split("-")[1] for t in tasks}

    server = backend_server_factory({"LABELLOOP_VALIDATION_FRACTION": "0"})
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    for t in tasks[:10]:
        ls.annotations.create(id=t.id, result=[{"from_name": "colour", "to_name": "image", "type": "choices",
                                                "value": {"choices": [colour_of[t.id]]}}])
    it = wait_finished(server, project.id, 1)
    assert it["status"] == "succeeded", it["error"]
    assert it["n_train"] == 10 and it["n_pool"] == 6 and it["n_skipped"] == 0
    preds = {p.task: p for p in ls.predictions.list(project=project.id) if p.model_version == "it-1"}
    assert set(preds) == {t.id for t in tasks[10:]}
    # Red vs. blue is learnable from 10 images: every pooled image gets its colour.
    assert all(preds[tid].result[0]["value"]["choices"] == [colour_of[tid]] for tid in preds)

    # /predict through gunicorn fetches the hosted file with the API key, and rejects what it cannot read.
    body = {"project": f"{project.id}.1", "label_config": CONFIG,
            "tasks": [{"id": tasks[0].id, "data": {"image": tasks[0].data["image"]}}]}
    out = requests.post(f"{server.url}/predict", json=body, timeout=30).json()
    assert out["results"][0]["result"][0]["value"]["choices"] == [colour_of[tasks[0].id]]
    body["tasks"][0]["data"]["image"] = "/data/upload/999/missing.png"
    bad = requests.post(f"{server.url}/predict", json=body, timeout=30)
    assert bad.status_code == 400 and bad.json()["field"] == "tasks[0].data.image"


def test_unreachable_label_studio_fails_the_iteration_with_the_reason(backend_server_factory, tmp_path) -> None:
    server = backend_server_factory({
        "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens here
        "LABEL_STUDIO_API_KEY": "0" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    })
    config = ('<View><Text name="text" value="$text"/><Choices name="c" toName="text"><Choice value="a"/>'
              '<Choice value="b"/></Choices></View>')
    # /setup tells Label Studio (its dialog shows the reason phrase) that labelloop cannot reach it, and why.
    setup = requests.post(f"{server.url}/setup", json={"project": "5.1", "schema": config}, timeout=10)
    assert setup.status_code == 424 and setup.json()["field"] == "label_studio_url"
    assert "cannot reach Label Studio" in setup.reason and "LABEL_STUDIO_URL" in setup.reason
    resp = requests.post(f"{server.url}/webhook", json={"action": "START_TRAINING", "project": {"id": 5}}, timeout=10)
    assert resp.status_code == 200
    it = wait_finished(server, 5, 1, timeout=120)
    # The round's first call to Label Studio is the export of the labelled tasks: its step and the cause are named.
    assert it["status"] == "failed" and "LabelStudioError" in it["error"]
    assert "reading the labelled tasks of project 5" in it["error"] and "Connection refused" in it["error"]
    assert "Fix: set LABEL_STUDIO_URL" in it["error"] and it["metrics"]["failure"]["kind"] == "unreachable"
    # Serving goes on: no model yet, so no predictions, and no error.
    out = requests.post(f"{server.url}/predict", json={"project": "5.1", "tasks": [{"id": 1, "data": {"text": "x"}}]},
                        timeout=10)
    assert out.status_code == 200 and out.json()["results"] == []

"""A project whose every task is labelled still gets a model (default policy: margin + cluster queue).

Real Label Studio and labelloop under gunicorn: tasks imported with their annotations (a fully
pre-labelled import), then *Start training*. There is nothing to push, and Label Studio refuses a
model_version no prediction carries: the round publishes anyway, serves through /predict, and says
in its history whether Label Studio took the version.
"""

from __future__ import annotations

import uuid

import requests

from tests.integration.test_loop import CONFIG, choice, iterations, review, wait_for


def test_a_fully_labelled_project_publishes_a_model(label_studio, backend_server_factory, tmp_path) -> None:
    ls = label_studio.client()
    project = ls.projects.create(title=f"all-labelled-{uuid.uuid4().hex[:6]}", label_config=CONFIG)
    texts = [review(i) for i in range(16)]
    ls.projects.import_tasks(id=project.id, request=[{"data": {"text": t}, "annotations": [{"result": choice(y)}]}
                                                     for t, y in texts])
    server = backend_server_factory({"LABELLOOP_RETRAIN_EVERY": "1000",
                                     "DATABASE_URL": f"sqlite:///{tmp_path / 'labelloop.sqlite3'}"})
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    requests.post(f"{server.url}/webhook", json={"action": "START_TRAINING", "project": {"id": project.id}},
                  timeout=10).raise_for_status()
    done = wait_for(lambda: [i for i in iterations(server, project.id) if i["status"] in ("succeeded", "failed")],
                    180, "the round")[0]
    assert done["status"] == "succeeded", done["error"]
    assert done["n_pool"] == 0 and done["labels_used"] == 16 and done["queue"] == "cluster"
    pushed = done["metrics"]["label_studio"]
    assert pushed["pushed"] == 0
    assert pushed["version_set"] is (ls.projects.get(id=project.id).model_version == "it-1")
    if not pushed["version_set"]:
        assert "no unlabelled task" in pushed["reason"]
    new = requests.post(f"{server.url}/predict", json={"project": f"{project.id}.1", "tasks": [
        {"id": 10**6, "data": {"text": "a superb and delightful film"}}]}, timeout=30).json()
    assert new["model_version"] == "it-1" and new["results"][0]["result"][0]["value"]["choices"] == ["pos"]

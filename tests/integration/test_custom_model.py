"""Bring your own model, against a real Label Studio and labelloop under gunicorn.

A scikit-learn pipeline the user wrote in their own `model.py` (the name of our own package, on
purpose), allowed by the operator and chosen in the model connection's extra params: pre-labels for
the pool, the queue served by /next, the history, auto-labelling, and `labelloop simulate`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import requests

from tests.integration.test_loop import CONFIG, REPO, choice, iterations, review, wait_for

USER_MODEL = """
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


def make(random_state=None):
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression(C=5.0, random_state=random_state))


def broken():
    raise ImportError("this model needs a GPU library that is not installed")
"""


def test_a_user_model_from_a_file_gets_every_feature(label_studio, backend_server_factory, tmp_path) -> None:
    model_file = tmp_path / "model.py"
    model_file.write_text(USER_MODEL)
    spec = f"{model_file}:make"
    ls = label_studio.client()
    project = ls.projects.create(title=f"byo-{uuid.uuid4().hex[:6]}", label_config=CONFIG)
    texts = [review(i) for i in range(60)]
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in texts])
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    server = backend_server_factory({"LABELLOOP_RETRAIN_EVERY": "20", "LABELLOOP_CUSTOM_MODELS": spec,
                                     "DATABASE_URL": f"sqlite:///{tmp_path / 'labelloop.sqlite3'}"})

    # A factory that fails is refused when the model is connected, with its reason.
    refused = requests.post(f"{server.url}/setup", timeout=10, json={
        "project": f"{project.id}.1", "schema": CONFIG, "extra_params": {"model": f"{model_file}:broken"}})
    assert refused.status_code == 403 and refused.json()["field"] == "extra_params.model"  # not allowed
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False,
                 extra_params=json.dumps({"model": spec}))
    assert requests.get(f"{server.url}/projects/{project.id}/iterations", timeout=10).json()["policy"]["model"] == spec

    for task in tasks[:20]:
        ls.annotations.create(id=task.id, result=choice(dict(texts)[task.data["text"]]))
    first = wait_for(lambda: [i for i in iterations(server, project.id) if i["status"] in ("succeeded", "failed")],
                     180, "the first round")[0]
    assert first["status"] == "succeeded", first["error"]
    preds = [p for p in ls.predictions.list(project=project.id) if p.model_version == "it-1"]
    assert {p.task for p in preds} == {t.id for t in tasks[20:]}  # every unlabelled task pre-labelled
    nxt = requests.get(f"{label_studio.url}/api/projects/{project.id}/next", headers=label_studio.headers, timeout=30)
    assert nxt.json()["id"] == min(preds, key=lambda p: p.score).task  # the queue is the model's
    assert first["accuracy"] is not None and first["n_validation"] + first["n_train"] == 20

    started = requests.post(f"{server.url}/projects/{project.id}/autolabel", json={"target_precision": 0.6},
                            timeout=10)
    job = wait_for(lambda: (j := requests.get(f"{server.url}/jobs/{started.json()['job_id']}", timeout=10).json())
                   ["status"] in ("succeeded", "failed") and j, 180, "auto-labelling")
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["model_version"] == "it-1" and job["result"]["n_crossfit_rows"] > 0

    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in texts))
    out = subprocess.run([sys.executable, "-m", "backend.cli", "simulate", "--data", str(data), "--initial", "10",
                          "--batch-size", "10", "--budget", "30", "--seeds", "2", "--model-param", f"model={spec}"],
                         env={**os.environ}, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "random" in out.stdout

"""The whole loop against a real Label Studio 1.23.2 and labelloop under gunicorn with 2 workers.

connect (health + setup) -> label through the SDK -> webhooks -> a training iteration in SQL ->
Label Studio holds predictions of the new version for every unlabelled task -> /next serves the
lowest score -> "Retrieve predictions" stores predictions made by /predict -> cron-style `train`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
          '<Choice value="pos"/><Choice value="neg"/></Choices></View>')
POS = ["great", "lovely", "excellent", "wonderful", "superb", "delightful", "fantastic", "brilliant"]
NEG = ["awful", "terrible", "horrible", "dreadful", "dull", "tedious", "boring", "broken"]
REPO = Path(__file__).resolve().parents[2]


def review(i: int) -> tuple[str, str]:
    label = "pos" if i % 2 == 0 else "neg"
    words = POS if label == "pos" else NEG
    return f"review {i}: a {words[i % 8]} and {words[(i * 3 + 1) % 8]} film", label


def choice(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def text_project(ls, title: str, texts: list[tuple[str, str]], config: str = CONFIG):
    """A Label Studio project with one task per (text, label): the project, its tasks by id, each task's label."""
    project = ls.projects.create(title=f"{title}-{uuid.uuid4().hex[:6]}", label_config=config)
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in texts])
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    truth = dict(texts)
    return project, tasks, {t.id: truth[t.data["text"]] for t in tasks}


def iterations(server, project_id: int) -> list[dict]:
    resp = requests.get(f"{server.url}/projects/{project_id}/iterations", timeout=10)
    return resp.json()["iterations"] if resp.status_code == 200 else []


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
def test_active_learning_loop(label_studio, backend_server_factory, tmp_path, database) -> None:
    ls = label_studio.client()
    project, tasks, label_of = text_project(ls, "loop", [review(i) for i in range(40)])

    # Batches of 10: the 32-task pool goes in as the queue's head, then the version is set, then the rest.
    env = {"LABELLOOP_RETRAIN_EVERY": "8", "LABELLOOP_TICK_SECONDS": "1", "LABELLOOP_PUSH_BATCH_SIZE": "10"}
    if database == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'labelloop.sqlite3'}"
    server = backend_server_factory(env)

    # Connect: Label Studio calls /health and /setup; the project is now known to the backend.
    ml = ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    assert ls.ml.get(id=ml.id).state == "CO"
    known = requests.get(f"{server.url}/projects/{project.id}/iterations", timeout=10).json()
    assert known["iterations"] == [] and known["current_version"] is None

    # No model yet: "Retrieve predictions" asks /predict, which answers with no predictions.
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id,
                      selected_items={"all": True, "excluded": []})
    assert list(ls.predictions.list(project=project.id)) == []

    # Label 8 tasks through the SDK: the webhooks reach the backend and the 8th queues it-1.
    labelled = [t.id for t in tasks[:8]]
    for tid in labelled:
        ls.annotations.create(id=tid, result=choice(label_of[tid]))
    done = wait_for(lambda: [i for i in iterations(server, project.id) if i["status"] in ("succeeded", "failed")],
                    180, "the first iteration")
    first = done[0]
    assert first["status"] == "succeeded", first["error"]
    assert first["version"] == "it-1" and first["labels_used"] == 8
    assert first["n_train"] + first["n_validation"] == 8 and first["n_pool"] == 32
    if first["n_validation"]:
        assert first["metrics"]["per_class"].keys() == {"pos", "neg"}

    # Label Studio now holds an it-1 prediction for every unlabelled task and serves by its score.
    proj = ls.projects.get(id=project.id)
    assert proj.model_version == "it-1" and proj.sampling == "Uncertainty sampling"
    preds = [p for p in ls.predictions.list(project=project.id) if p.model_version == "it-1"]
    unlabelled = {t.id for t in tasks} - set(labelled)
    assert {p.task for p in preds} == unlabelled
    assert all(0.0 <= p.score <= 1.0 for p in preds)
    lowest = min(preds, key=lambda p: p.score)
    assert sum(1 for p in preds if p.score == lowest.score) == 1, "tie at the lowest score: test data too regular"
    nxt = requests.get(f"{label_studio.url}/api/projects/{project.id}/next", headers=label_studio.headers,
                       timeout=30)
    assert nxt.status_code == 200 and nxt.json()["id"] == lowest.task
    top = requests.get(f"{server.url}/projects/{project.id}/iterations/1/scores?limit=1", timeout=10).json()
    assert top["scores"][0]["task_id"] == lowest.task and top["scores"][0]["rank"] == 1

    # New tasks arrive after training: "Retrieve predictions" goes through gunicorn's /predict.
    new = ls.projects.import_tasks(id=project.id, request=[{"text": "a superb and delightful film"},
                                                            {"text": "a dull, tedious and broken film"}])
    new_ids = sorted(t.id for t in ls.tasks.list(project=project.id) if t.id not in label_of)
    assert len(new_ids) == 2, new
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id,
                      selected_items={"all": False, "included": new_ids})
    for tid in new_ids:
        stored = [p for p in ls.predictions.list(task=tid) if p.model_version == "it-1"]
        assert len(stored) == 1, f"task {tid}: {stored}"
        assert stored[0].result[0]["value"]["choices"] in (["pos"], ["neg"])
        assert stored[0].result[0]["from_name"] == "sentiment" and 0.0 <= stored[0].score <= 1.0

    # Bad input through gunicorn: a clear 400 naming the field, and the server keeps serving.
    bad = requests.post(f"{server.url}/predict", json={"project": f"{project.id}.1", "tasks": [{"data": {}}]},
                        timeout=10)
    assert bad.status_code == 400 and bad.json()["field"] == "tasks[0].data.text"
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200

    # Cron path: `labelloop train --project` runs one iteration in the foreground.
    out = subprocess.run(
        [sys.executable, "-m", "backend.cli", "train", "--project", str(project.id)],
        env={**os.environ, **server.env}, cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr + out.stdout
    assert "it-2 succeeded" in out.stdout
    assert [i["version"] for i in iterations(server, project.id)] == ["it-1", "it-2"]
    assert ls.projects.get(id=project.id).model_version == "it-2"


def test_mc_dropout_strategy_cluster_queue_behind_basic_auth(label_studio, backend_server_factory) -> None:
    """Policy from the model connection's extra_params: BALD over MC dropout, cluster-aware queue."""
    import base64

    ls = label_studio.client()
    project = ls.projects.create(title=f"bald-{uuid.uuid4().hex[:6]}", label_config=CONFIG)
    texts = [review(i) for i in range(60)]
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in texts])
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    label_of = {t.id: dict(texts)[t.data["text"]] for t in tasks}

    server = backend_server_factory({"BASIC_AUTH_USER": "ml", "BASIC_AUTH_PASS": "pw-123"})
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 401
    ml = ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False,
                      auth_method="BASIC_AUTH", basic_auth_user="ml", basic_auth_pass="pw-123",
                      extra_params={"strategy": "bald", "queue": "cluster"})
    assert ls.ml.get(id=ml.id).state == "CO"
    # The auto-created webhook sends no credentials (its calls get 401): add one that does, as the README says.
    token = base64.b64encode(b"ml:pw-123").decode()
    ls.webhooks.create(project=project.id, url=f"{server.url}/webhook", send_payload=True,
                       send_for_all_actions=True, headers={"Authorization": f"Basic {token}"})

    for t in tasks[:10]:
        ls.annotations.create(id=t.id, result=choice(label_of[t.id]))
    auth = ("ml", "pw-123")

    def finished():
        its = requests.get(f"{server.url}/projects/{project.id}/iterations", auth=auth, timeout=10).json()
        return [i for i in its["iterations"] if i["status"] in ("succeeded", "failed")]

    first = wait_for(finished, 240, "the BALD iteration")[0]
    assert first["status"] == "succeeded", first["error"]
    assert (first["strategy"], first["queue"]) == ("bald", "cluster")
    difficulty = first["metrics"]["difficulty"]
    assert sum(difficulty["counts"].values()) == first["n_pool"] == 50
    assert 0.0 <= difficulty["easy_below"] <= difficulty["hard_above"] <= 1.0

    preds = [p for p in ls.predictions.list(project=project.id) if p.model_version == "it-1"]
    assert len(preds) == 50
    scores = requests.get(f"{server.url}/projects/{project.id}/iterations/1/scores?limit=1000", auth=auth,
                          timeout=10).json()["scores"]
    by_task = {p.task: p.score for p in preds}
    # Label Studio's ascending score order is exactly the queue the backend chose.
    assert [s["task_id"] for s in scores] == sorted(by_task, key=by_task.get)

    # /predict through Label Studio with basic auth, served by the MC-dropout model.
    ls.projects.import_tasks(id=project.id, request=[{"text": "a superb and delightful film"}])
    new_id = max(t.id for t in ls.tasks.list(project=project.id))
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id,
                      selected_items={"all": False, "included": [new_id]})
    stored = [p for p in ls.predictions.list(task=new_id) if p.model_version == "it-1"]
    assert len(stored) == 1 and 0.0 <= stored[0].score <= 1.0


MULTI_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="topics" toName="text" choice="multiple">'
                '<Choice value="plot"/><Choice value="acting"/><Choice value="music"/></Choices></View>')


def test_multi_label_choices_round_trip(label_studio, backend_server_factory) -> None:
    """choice="multiple": label sets in, one binary model per choice, label sets out (pushed and /predict)."""
    words = {"plot": "story twist", "acting": "cast performance", "music": "score soundtrack"}
    combos = [["plot"], ["acting"], ["music"], ["plot", "acting"], ["acting", "music"], ["plot", "music"]]
    ls = label_studio.client()
    project = ls.projects.create(title=f"multi-{uuid.uuid4().hex[:6]}", label_config=MULTI_CONFIG)
    texts = {f"film {i}: " + " ".join(words[w] for w in combos[i % 6]): combos[i % 6] for i in range(36)}
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in texts])
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    server = backend_server_factory({"LABELLOOP_RETRAIN_EVERY": "24", "LABELLOOP_VALIDATION_FRACTION": "0"})
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    for t in tasks[:24]:
        ls.annotations.create(id=t.id, result=[{"from_name": "topics", "to_name": "text", "type": "choices",
                                                 "value": {"choices": texts[t.data["text"]]}}])
    first = wait_for(lambda: [i for i in iterations(server, project.id) if i["status"] in ("succeeded", "failed")],
                     180, "the multi-label iteration")[0]
    assert first["status"] == "succeeded", first["error"]
    preds = {p.task: p for p in ls.predictions.list(project=project.id) if p.model_version == "it-1"}
    unlabelled = {t.id: texts[t.data["text"]] for t in tasks[24:]}
    assert set(preds) == set(unlabelled)
    right = sum(sorted(preds[t].result[0]["value"]["choices"]) == sorted(labels) for t, labels in unlabelled.items())
    assert right >= 9, f"only {right}/12 label sets right"
    # "Retrieve predictions" for a new task goes through /predict and may answer two choices.
    ls.projects.import_tasks(id=project.id, request=[{"text": "film 99: story twist score soundtrack"}])
    new_id = max(t.id for t in ls.tasks.list(project=project.id))
    ls.actions.create(id="retrieve_tasks_predictions", project=project.id,
                      selected_items={"all": False, "included": [new_id]})
    stored = [p for p in ls.predictions.list(task=new_id) if p.model_version == "it-1"]
    assert len(stored) == 1 and sorted(stored[0].result[0]["value"]["choices"]) == ["music", "plot"]


def test_the_last_labels_before_a_break_are_trained_on(label_studio, backend_server_factory, tmp_path) -> None:
    """7 labels with a round every 5: the last ones start no round by count; a quiet spell trains on them."""
    ls = label_studio.client()
    project, tasks, label_of = text_project(ls, "idle", [review(i) for i in range(24)])
    server = backend_server_factory({"DATABASE_URL": f"sqlite:///{tmp_path / 'labelloop.sqlite3'}",
                                     "LABELLOOP_RETRAIN_EVERY": "5", "LABELLOOP_IDLE_TRAIN": "3",
                                     "LABELLOOP_TICK_SECONDS": "1"})
    ml = ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    assert ls.ml.get(id=ml.id).state == "CO"
    for task in tasks[:5]:
        ls.annotations.create(id=task.id, result=choice(label_of[task.id]))
    wait_for(lambda: any(i["status"] == "succeeded" for i in iterations(server, project.id)), 180, "it-1")
    for task in tasks[5:7]:  # two more: short of a round by count
        ls.annotations.create(id=task.id, result=choice(label_of[task.id]))

    def holding_all() -> dict | None:
        its = iterations(server, project.id)
        done = [i for i in its if i["status"] == "succeeded" and i["labels_used"] == 7]
        return done[0] if done and not any(i["status"] in ("queued", "running") for i in its) else None

    final = wait_for(holding_all, 180, "a round holding all 7 labels")
    assert final["trigger"] == "idle", iterations(server, project.id)
    assert ls.projects.get(id=project.id).model_version == final["version"]
    served = requests.post(f"{server.url}/predict", json={"project": f"{project.id}.1", "tasks": [
        {"id": tasks[10].id, "data": {"text": tasks[10].data["text"]}}]}, timeout=30).json()
    assert served["model_version"] == final["version"]

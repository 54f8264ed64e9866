"""The Flask app in-process, with a fake Label Studio gateway (fast). The real thing is in integration/."""

from __future__ import annotations

import time
from typing import Any

import pytest

from backend.config import Settings
from backend.labelstudio.gateway import LabelStudioError
from backend.web.app import create_app

CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
          '<Choice value="pos"/><Choice value="neg"/></Choices></View>')
POS = ["great", "lovely", "excellent", "wonderful", "superb", "happy", "fantastic", "brilliant"]
NEG = ["awful", "terrible", "horrible", "dreadful", "bad", "sad", "boring", "broken"]


def make_tasks(n_labelled: int, n_pool: int) -> list[dict[str, Any]]:
    tasks = []
    for i in range(n_labelled + n_pool):
        label = "pos" if i % 2 == 0 else "neg"
        word = (POS if label == "pos" else NEG)[i % 8]
        task: dict[str, Any] = {"id": 100 + i, "data": {"text": f"a {word} film, really {word}"}, "annotations": []}
        if i < n_labelled:
            task["annotations"] = [{"id": 1000 + i, "result": [
                {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}]
        tasks.append(task)
    return tasks


class FakeGateway:
    url = "http://label-studio.invalid"
    key_source = "LABEL_STUDIO_API_KEY"

    def __init__(self, tasks: list[dict[str, Any]]) -> None:
        self.tasks = tasks
        self.pushed: list[dict[str, Any]] = []
        self.published: list[tuple[int, str, bool]] = []
        self.fail_push = False
        self.views: list[tuple[str, list[int]]] = []
        self.deleted: list[str] = []

    def auth_headers(self) -> dict[str, str]:
        return {}

    def iter_tasks(self, project_id: int, view: int | None = None):
        yield from self.tasks

    # The round's reads, as Label Studio answers them: the export holds every task with an annotation
    # (cancelled ones too); the task list holds no annotations and filters on the update stamp.
    def labelled_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return [t for t in self.tasks if t.get("annotations")]

    def task_count(self, project_id: int) -> int:
        return len(self.tasks)

    def list_tasks(self, project_id: int, updated_after: str | None = None):
        for t in self.tasks:
            if updated_after is None or str(t.get("updated_at") or "") > updated_after:
                yield {k: v for k, v in t.items() if k not in ("annotations", "predictions")}

    def create_task_view(self, project_id: int, title: str, task_ids) -> int:
        self.views.append((title, list(task_ids)))
        return len(self.views)

    def label_config(self, project_id: int, timeout: float | None = None) -> str:
        return CONFIG

    def import_predictions(self, project_id: int, predictions, batch_size: int, pace=None) -> int:
        if pace is not None and predictions:
            pace()  # the real gateway asks before each pause between batches
        if self.fail_push:
            raise LabelStudioError("pushing predictions failed: connection refused")
        self.pushed.extend(predictions)
        by_id = {t["id"]: t for t in self.tasks}
        for p in predictions:  # Label Studio lists a task's predictions with the task
            by_id[p["task"]].setdefault("predictions", []).append({"model_version": p["model_version"]})
        return len(predictions)

    def delete_version(self, project_id: int, version: str) -> int:
        if version in self.deleted:  # like Label Studio: nothing left to delete the second time
            return 0
        self.deleted.append(version)
        return 1

    # What Label Studio holds: the predictions pushed, less the versions deleted.
    def model_versions(self, project_id: int) -> dict[str, int]:
        held: dict[str, int] = {}
        for p in self.pushed:
            if p["model_version"] not in self.deleted:
                held[p["model_version"]] = held.get(p["model_version"], 0) + 1
        return held

    def project_model_version(self, project_id: int) -> str | None:
        return self.published[-1][1] if self.published else None

    def unlabelled_without(self, project_id: int, version: str) -> set[int]:
        holding = {p["task"] for p in self.pushed if p["model_version"] == version and version not in self.deleted}
        return {t["id"] for t in self.tasks if not t.get("annotations")} - holding

    def publish_version(self, project_id: int, version: str, uncertainty_sampling: bool) -> None:
        self.published.append((project_id, version, uncertainty_sampling))


def setup_project(client, project: str = "1.1700000000", **extra) -> Any:
    body: dict[str, Any] = {"project": project, "schema": CONFIG, "hostname": "http://x", "access_token": "t"}
    body.update(extra)
    return client.post("/setup", json=body)


def wait_for_iteration(services, project_id: int, number: int, timeout: float = 180.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        its = [it for it in services.store.iterations(project_id) if it.number == number]
        if its and its[0].status in ("succeeded", "failed"):
            return its[0]
        time.sleep(0.05)
    raise AssertionError(f"iteration {number} did not finish: {services.store.iterations(project_id)}")


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    """Wait for the condition a test asserts (not for a state that merely precedes it)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def annotation_event(task_id: int, label: str, action: str = "ANNOTATION_CREATED") -> dict[str, Any]:
    return {
        "action": action,
        "project": {"id": 1, "label_config": CONFIG},
        "task": {"id": task_id, "data": {"text": "x"}},
        "annotation": {"id": task_id * 10, "task": task_id, "was_cancelled": False, "result": [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]},
    }


def test_health(app_env) -> None:
    client, _, _ = app_env
    assert client.get("/health").get_json()["status"] == "UP"


def test_setup_accepts_supported_and_names_unsupported_tags(app_env) -> None:
    client, services, _ = app_env
    resp = setup_project(client)
    assert resp.status_code == 200 and resp.get_json() == {"model_version": "untrained"}
    assert services.store.get_project(1).label_config == CONFIG
    bad = client.post("/setup", json={"project": "2.1", "schema": '<View><Image name="i" value="$i"/>'
                                      '<PolygonLabels name="poly" toName="i"><Label value="P"/></PolygonLabels>'
                                      '</View>'})
    assert bad.status_code == 422 and '<PolygonLabels name="poly">' in bad.get_json()["error"]


def test_setup_extra_params_set_policy_and_bad_ones_are_named(app_env) -> None:
    client, services, _ = app_env
    assert setup_project(client, extra_params='{"strategy": "entropy", "retrain_every": 5}').status_code == 200
    project = services.store.get_project(1)
    assert (project.rules.strategy, project.rules.retrain_every) == ("entropy", 5)
    resp = setup_project(client, extra_params={"strategy": "vibes"})
    assert resp.status_code == 400 and resp.get_json()["field"] == "extra_params.strategy"
    resp = setup_project(client, extra_params={"retrain_evry": 5})
    assert resp.status_code == 400 and resp.get_json()["field"] == "extra_params.retrain_evry"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b'{"project": "1.1"}', "tasks"),
        (b'{"project": "1.1", "tasks": "nope"}', "tasks"),
        (b'{"project": "1.1", "tasks": [{"id": 5, "data": {"body": "hi"}}]}', "tasks[0].data.text"),
    ],
)
def test_predict_bad_input_is_400_naming_the_field(app_env, body: bytes, field: str) -> None:
    client, _, _ = app_env
    setup_project(client)
    resp = client.post("/predict", data=body, content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json()["field"] == field


def test_predict_before_first_model_returns_no_predictions(app_env) -> None:
    client, _, _ = app_env
    setup_project(client)
    resp = client.post("/predict", json={"project": "1.1", "tasks": [{"id": 1, "data": {"text": "hello"}}]})
    assert resp.status_code == 200 and resp.get_json()["results"] == []


def test_webhooks_train_after_n_labels_then_predict_serves_the_new_version(app_env) -> None:
    client, services, gateway = app_env
    setup_project(client)
    for i, label in enumerate(["pos", "neg"]):
        resp = client.post("/webhook", json=annotation_event(100 + i, label))
        assert resp.status_code == 200 and resp.get_json()["labels"] == 1
    services.wait_settled()
    assert services.store.iterations(1) == [] and services.store.labels_since(1) == 2
    resp = client.post("/webhook", json=annotation_event(102, "pos"))
    assert resp.status_code == 200
    it = wait_for_iteration(services, 1, 1)
    assert it.status == "succeeded", it.error
    assert it.labels_used == 24 and it.n_pool == 10 and it.n_train + it.n_validation == 24
    assert it.accuracy is not None and "pos" in it.metrics["per_class"]
    # The whole pool went to Label Studio with the new version, and the project was switched to it.
    assert sorted(p["task"] for p in gateway.pushed) == list(range(124, 134))
    assert {p["model_version"] for p in gateway.pushed} == {"it-1"}
    assert all(0.0 <= p["score"] <= 1.0 for p in gateway.pushed)
    assert gateway.published == [(1, "it-1", True)]
    scores = client.get("/projects/1/iterations/1/scores").get_json()["scores"]
    assert [s["rank"] for s in scores] == list(range(1, 11))
    assert scores == sorted(scores, key=lambda s: s["score"])
    # Serving: every worker now answers with it-1.
    resp = client.post("/predict", json={"project": "1.1", "tasks": [
        {"id": 1, "data": {"text": "a superb and wonderful film"}}, {"id": 2, "data": {"text": "awful, terrible"}}]})
    body = resp.get_json()
    assert body["model_version"] == "it-1" and len(body["results"]) == 2
    assert body["results"][0]["result"][0]["value"]["choices"] == ["pos"]
    assert body["results"][1]["result"][0]["value"]["choices"] == ["neg"]
    assert client.post("/setup", json={"project": "1.1", "schema": CONFIG}).get_json()["model_version"] == "it-1"
    assert client.get("/versions").get_json()["versions"] == ["it-1"]
    history = client.get("/projects/1/iterations").get_json()
    assert [i["version"] for i in history["iterations"]] == ["it-1"]
    assert [e.action for e in services.store.events(1)] == ["ANNOTATION_CREATED"] * 3


def test_start_training_always_trains(app_env) -> None:
    client, services, _ = app_env
    setup_project(client)
    resp = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert resp.status_code == 200 and resp.get_json()["labels"] == 0
    assert wait_for_iteration(services, 1, 1).status == "succeeded"


def test_label_not_in_config_is_400_and_the_event_is_kept(app_env) -> None:
    client, services, _ = app_env
    setup_project(client)
    resp = client.post("/webhook", json=annotation_event(100, "meh"))
    assert resp.status_code == 400
    assert resp.get_json()["field"] == "annotation.result[0].value.choices"
    events = services.store.events(1)
    assert len(events) == 1 and "meh" in events[0].error and events[0].n_labels == 0


def test_other_events_are_recorded_and_acknowledged(app_env) -> None:
    client, services, _ = app_env
    resp = client.post("/webhook", json={"action": "TASKS_CREATED", "project": {"id": 9, "label_config": CONFIG},
                                         "tasks": [{"id": 1}]})
    assert resp.status_code == 200
    assert [e.action for e in services.store.events(9)] == ["TASKS_CREATED"]
    assert client.post("/webhook", json={"project": {"id": 9}}).status_code == 400


def test_label_studio_failure_marks_the_iteration_failed_and_keeps_serving(app_env) -> None:
    client, services, gateway = app_env
    setup_project(client)
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert wait_for_iteration(services, 1, 1).status == "succeeded"
    gateway.fail_push = True
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    failed = wait_for_iteration(services, 1, 2)
    assert failed.status == "failed" and "connection refused" in failed.error
    resp = client.post("/predict", json={"project": "1.1", "tasks": [{"id": 1, "data": {"text": "superb"}}]})
    assert resp.get_json()["model_version"] == "it-1" and len(resp.get_json()["results"]) == 1


def test_basic_auth_guards_every_route(tmp_path) -> None:
    settings = Settings(model_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                        basic_auth_user="ml", basic_auth_pass="s3cret")
    app = create_app(settings, start_jobs=False, migrate=True)
    client = app.test_client()
    assert client.get("/health").status_code == 401
    assert client.post("/predict", json={}).status_code == 401
    assert client.get("/health", auth=("ml", "wrong")).status_code == 401
    assert client.get("/health", auth=("ml", "s3cret")).status_code == 200
    app.extensions["labelloop"].store.dispose()


def test_timer_trains_when_labels_arrived_and_interval_passed(app_env) -> None:
    client, services, _ = app_env
    setup_project(client, extra_params={"retrain_interval_s": 1, "retrain_every": 1000})
    services.jobs.tick()
    assert services.store.iterations(1) == []  # no new labels: the timer has nothing to do
    client.post("/webhook", json=annotation_event(100, "pos"))
    services.jobs.tick()
    it = wait_for_iteration(services, 1, 1)
    assert it.status == "succeeded" and it.trigger == "timer"


def test_crash_while_saving_the_model_keeps_the_last_good_version(app_env, monkeypatch) -> None:
    client, services, gateway = app_env
    setup_project(client)
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert wait_for_iteration(services, 1, 1).status == "succeeded"
    files_before = sorted(p.name for p in services.models.path(1, "it-1").parent.iterdir())

    def disk_full(data: bytes) -> bytes:
        raise OSError(28, "No space left on device")

    import backend.store.artifacts as model_store

    real_dumps = model_store.persistence.dumps
    monkeypatch.setattr(model_store.persistence, "dumps", lambda est: disk_full(real_dumps(est)))
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    failed = wait_for_iteration(services, 1, 2)
    assert failed.status == "failed" and "No space left" in failed.error
    assert sorted(p.name for p in services.models.path(1, "it-1").parent.iterdir()) == files_before
    assert services.store.serving_state(1).version == "it-1"
    assert len(gateway.published) == 1


def test_write_atomic_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    import os

    from backend.store.artifacts import write_atomic

    target = tmp_path / "m" / "it-1.skops"
    write_atomic(target, b"old")

    def boom(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, b"new-but-never-visible")
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["it-1.skops"]


def wait_for_job(client, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").get_json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def test_autolabel_job_pushes_once_and_lists_what_needs_review(app_env) -> None:
    client, services, gateway = app_env
    setup_project(client)
    before = client.post("/projects/1/autolabel", json={})
    assert before.status_code == 409 and "no trained model yet" in before.get_json()["error"]

    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    it = wait_for_iteration(services, 1, 1)
    assert it.status == "succeeded", it.error
    assert it.metrics["validation"]["task_ids"] and it.ece is not None and it.calibration
    # The listing leaves the per-task validation arrays out unless asked for.
    assert "validation" not in client.get("/projects/1/iterations").get_json()["iterations"][0]["metrics"]
    full = client.get("/projects/1/iterations?full=1").get_json()["iterations"][0]["metrics"]
    assert full["validation"]["task_ids"] == it.metrics["validation"]["task_ids"]
    n_pushed_by_training = len(gateway.pushed)

    resp = client.post("/projects/1/autolabel", json={"target_precision": 0.5})
    assert resp.status_code == 202
    job = wait_for_job(client, resp.get_json()["job_id"])
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    # Training already pushed it-1 for the 10 unlabelled tasks; only the 24 labelled ones were missing.
    assert (result["n_tasks"], result["n_pushed"], result["n_already_predicted"]) == (34, 24, 10)
    assert len(gateway.pushed) == n_pushed_by_training + 24
    assert result["n_human_labelled"] == 24 and set(result["needs_review"]) <= set(range(124, 134))
    assert 0.0 <= result["coverage"] <= 1.0 and result["model_version"] == "it-1"
    assert job["stale"] is False
    again = wait_for_job(client, client.post("/projects/1/autolabel", json={"tasks": [124, 125]}).get_json()["job_id"])
    assert again["result"]["n_pushed"] == 0 and again["result"]["n_tasks"] == 2


def test_autolabel_threshold_uses_validation_and_cross_fitted_rows_and_says_what_is_missing(app_env) -> None:
    client, services, _ = app_env
    setup_project(client)
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    it = wait_for_iteration(services, 1, 1)
    n_val = len(it.metrics["validation"]["task_ids"])

    def run(body: dict) -> dict:
        job = wait_for_job(client, client.post("/projects/1/autolabel", json=body).get_json()["job_id"])
        assert job["status"] == "succeeded", job["error"]
        return job["result"]

    both = run({"target_precision": 0.5})
    assert both["rule"] == "guaranteed" and both["confidence_level"] == 0.95
    assert both["n_crossfit_rows"] == it.n_train and both["n_validation"] == n_val  # every label stands behind it
    assert both["n_threshold_rows"] == it.n_train + n_val
    only_val = run({"target_precision": 0.5, "crossfit": False})
    assert only_val["n_crossfit_rows"] == 0 and only_val["n_threshold_rows"] == n_val
    # 99.9 % cannot be certified on a few dozen rows: nothing is auto-labelled, and the outcome says so.
    strict = run({"target_precision": 0.999})
    assert strict["reached"] is False and strict["threshold"] is None and strict["coverage"] == 0.0
    assert strict["more_labels_estimate"] > 0  # the rows measure above 99.9 %, but are too few to certify it
    point = run({"target_precision": 0.5, "rule": "point"})
    assert point["rule"] == "point"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"target_precision": 0}, "target_precision"),
        ({"target_precision": "high"}, "target_precision"),
        ({"tasks": "1,2"}, "tasks"),
        ({"view": "mine"}, "view"),
        ({"view": 3, "tasks": [1]}, "tasks"),
        ({"colour": "red"}, "colour"),
        ({"confidence_level": 1}, "confidence_level"),
        ({"rule": "vibes"}, "rule"),
        ({"crossfit": "yes"}, "crossfit"),
    ],
)
def test_autolabel_bad_input_is_400_naming_the_field(app_env, body: dict[str, Any], field: str) -> None:
    client, _, _ = app_env
    setup_project(client)
    resp = client.post("/projects/1/autolabel", json=body)
    assert resp.status_code == 400 and resp.get_json()["field"] == field


def test_autolabel_unknown_project_and_job_are_404(app_env) -> None:
    client, _, _ = app_env
    assert client.post("/projects/99/autolabel", json={}).status_code == 404
    assert client.get("/jobs/nope").status_code == 404


MULTI = ('<View><Text name="text" value="$text"/><Choices name="topics" toName="text" choice="multiple">'
         '<Choice value="plot"/><Choice value="acting"/><Choice value="music"/></Choices></View>')
TOPIC_WORDS = {"plot": "story twist", "acting": "cast performance", "music": "score soundtrack"}


def multi_tasks(n_labelled: int, n_pool: int) -> list[dict[str, Any]]:
    combos = [["plot"], ["acting"], ["music"], ["plot", "acting"], ["acting", "music"], ["plot", "music"]]
    tasks = []
    for i in range(n_labelled + n_pool):
        labels = combos[i % len(combos)]
        text = f"film {i}: " + " ".join(TOPIC_WORDS[x] for x in labels)
        task: dict[str, Any] = {"id": 500 + i, "data": {"text": text}, "annotations": []}
        if i < n_labelled:
            task["annotations"] = [{"id": 5000 + i, "ground_truth": i % 4 == 0, "result": [
                {"from_name": "topics", "to_name": "text", "type": "choices", "value": {"choices": labels}}]}]
        tasks.append(task)
    return tasks


def test_multi_label_project_trains_evaluates_signals_stopping_and_autolabels(app_env) -> None:
    client, services, gateway = app_env
    gateway.tasks = multi_tasks(80, 20)
    gateway.label_config = lambda project_id: MULTI
    assert setup_project(client, schema=MULTI, extra_params={"stop_window": 2}).status_code == 200
    for number in (1, 2, 3):
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
        it = wait_for_iteration(services, 1, number)
        assert it.status == "succeeded", it.error
    first, second, third = services.store.iterations(1)
    # Ground-truth annotations (every fourth labelled task) form the validation split.
    assert first.metrics["validation_source"] == "ground_truth" and (first.n_train, first.n_validation) == (60, 20)
    assert first.ece is not None and 0.0 <= first.ece <= 1.0
    # Text gets BALD, scored by the raw samples' mean: "auto" fits no calibrator for it (logistic models get
    # sigmoid for multi-label from 50 training rows on: test_model_calibration).
    assert first.calibration == "none"
    confusion = first.metrics["confusion"]
    assert confusion["labels"] == ["plot", "acting", "music"]
    assert sum(sum(c.values()) for c in confusion["per_class"].values()) == 20 * 3
    # Same labels every round: predictions do not move. Window 2 needs two kappas, the first round has none.
    assert first.kappa is None and second.kappa == 1.0 and second.stop_suggested is False
    assert third.kappa == 1.0 and third.stop_suggested is True
    pushed = [p for p in gateway.pushed if p["model_version"] == "it-3"]
    assert len(pushed) == 20 and any(len(p["result"][0]["value"]["choices"]) == 2 for p in pushed)

    started = client.post("/projects/1/autolabel", json={"target_precision": 0.9})
    job = wait_for_job(client, started.get_json()["job_id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["n_tasks"] == 100 and job["result"]["n_already_predicted"] == 20
    assert job["result"]["n_pushed"] == 80
    assert set(job["result"]["needs_review"]) <= {t["id"] for t in gateway.tasks[80:]}


def test_old_versions_predictions_are_pruned_but_not_those_autolabelling_used(app_env) -> None:
    client, services, gateway = app_env
    setup_project(client, extra_params={"keep_versions": 1})
    for number in (1, 2, 3):
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
        assert wait_for_iteration(services, 1, number).status == "succeeded"
    # Pruning runs after a round is recorded as succeeded: wait for the deletions themselves.
    wait_until(lambda: gateway.deleted == ["it-1", "it-2"], "it-1 and it-2 pruned")  # each round drops one
    job = wait_for_job(client, client.post("/projects/1/autolabel", json={}).get_json()["job_id"])
    assert job["status"] == "succeeded" and job["result"]["model_version"] == "it-3"
    for number in (4, 5):
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
        assert wait_for_iteration(services, 1, number).status == "succeeded"
    wait_until(lambda: gateway.deleted == ["it-1", "it-2", "it-4"], "it-4 pruned")  # it-3 labelled a test set
    wait_until(lambda: not services.store.get_project(1).lease_owner, "round 5 released its lease")
    assert gateway.deleted == ["it-1", "it-2", "it-4"]  # and nothing after it: it-3 is kept


def test_failed_pruning_never_fails_the_round(app_env) -> None:
    client, services, gateway = app_env
    setup_project(client, extra_params={"keep_versions": 1})

    def refuse(project_id: int, version: str) -> int:
        raise LabelStudioError("deleting predictions failed: 500")

    gateway.delete_version = refuse
    for number in (1, 2):
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
        assert wait_for_iteration(services, 1, number).status == "succeeded"
    assert services.store.serving_state(1).version == "it-2"


def test_a_job_that_stopped_reporting_is_shown_stale(app_env) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from backend.store.schema import Job, utcnow

    client, services, _ = app_env
    setup_project(client)
    services.store.create_job("job-x", 1, "autolabel", {}, "gone-worker", stale_seconds=60)
    assert client.get("/jobs/job-x").get_json()["stale"] is False
    services.store.update_job("job-x", status="running")
    with services.store.session() as s:
        s.execute(update(Job).where(Job.id == "job-x").values(updated_at=utcnow() - timedelta(minutes=5)))
    body = client.get("/jobs/job-x").get_json()
    assert body["status"] == "running" and body["stale"] is True


def test_a_cold_start_round_serves_representative_tasks_first(app_env) -> None:
    """warmup=50 labels per class: the 24 labels are far below it, so most of the queue's head is the
    representative order (the kernel's cold start), not the uncertainty order a plain round gives.
    Margin, not the text default BALD: on these 10 pool tasks BALD's uncertainties are all near 0 and its
    representative order (clusters by uncertainty mass, one task each) coincides with its uncertainty order."""
    client, services, gateway = app_env
    params = {"warmup": 50, "queue": "greedy", "strategy": "margin"}
    assert setup_project(client, extra_params=params).status_code == 200
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (it,) = services.store.iterations(1)
    assert it.status == "succeeded", it.error
    assert services.store.get_project(1).rules.warmup == 50
    rows = sorted(client.get("/projects/1/iterations/1/scores").get_json()["scores"], key=lambda r: r["rank"])
    active = [r for r in rows if r["stream"] == "active"]
    by_uncertainty = sorted(active, key=lambda r: -r["uncertainty"])
    assert [r["task_id"] for r in active] != [r["task_id"] for r in by_uncertainty]


def test_the_model_serving_after_the_last_label_learnt_from_every_label(app_env) -> None:
    """Labels short of retrain_every (here 2 of 3) are trained on once no new label came for idle_train_s."""
    client, services, gateway = app_env
    setup_project(client, extra_params={"retrain_every": 3, "idle_train_s": 3})
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    first = wait_for_iteration(services, 1, 1)
    assert first.status == "succeeded" and first.labels_used == 24
    for task in gateway.tasks[24:26]:  # two more labels: one short of a round
        task["annotations"] = [{"id": task["id"] * 10, "result": [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]}]
        client.post("/webhook", json=annotation_event(task["id"], "pos"))
        sent = time.monotonic()
    services.wait_settled()
    services.jobs.tick()
    if time.monotonic() - sent < 2.5:  # checked only while the last label is surely younger than 3 s
        assert len(services.store.iterations(1)) == 1  # not yet quiet: no round
    wait_until(lambda: services.jobs.tick() or len(services.store.iterations(1)) == 2, "a round after the quiet spell")
    final = wait_for_iteration(services, 1, 2)
    assert final.status == "succeeded" and final.trigger == "idle" and final.labels_used == 26
    assert services.store.serving_state(1).version == final.version
    services.jobs.tick()
    assert len(services.store.iterations(1)) == 2  # the labels are in: no further round


def test_old_versions_are_pruned_between_rounds_never_during_one(app_env) -> None:
    """Each DELETE holds Label Studio's write lock: it is sent once no round runs or waits, not after each round."""
    import threading

    client, services, gateway = app_env
    setup_project(client, extra_params={"keep_versions": 1})
    seen: list[list[str]] = []
    real_delete, real_push = gateway.delete_version, gateway.import_predictions
    in_push, release = threading.Event(), threading.Event()

    def delete(project_id: int, version: str) -> int:
        seen.append([it.status for it in services.store.iterations(project_id)])
        return real_delete(project_id, version)

    def push(project_id: int, predictions, batch_size: int, pace=None) -> int:
        if predictions[0]["model_version"] == "it-2":  # hold round 2 while round 3 is queued behind it
            in_push.set()
            assert release.wait(30)
        return real_push(project_id, predictions, batch_size, pace)

    gateway.delete_version, gateway.import_predictions = delete, push
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert wait_for_iteration(services, 1, 1).status == "succeeded"
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert in_push.wait(60)
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    services.wait_settled()
    release.set()
    assert wait_for_iteration(services, 1, 3).status == "succeeded"
    wait_until(lambda: gateway.deleted == ["it-1", "it-2"], "it-1 and it-2 pruned after round 3")
    assert seen and all(status in ("succeeded", "failed") for statuses in seen for status in statuses), seen


def test_webhooks_waiting_to_be_settled_share_one_count(app_env) -> None:
    """While a project's settle waits its turn, later webhooks join it (START_TRAINING kept)."""
    import threading

    _, services, _ = app_env
    calls: list[tuple[int, bool, int]] = []
    services.settle_webhook = lambda p, start: calls.append((p, start))
    busy = threading.Event()
    services._after_webhooks.submit(busy.wait, 30)  # the settling thread is busy elsewhere
    for event in range(1, 51):
        services.after_webhook(1, start_training=event == 7)
    services.after_webhook(2, start_training=False)
    busy.set()
    services.wait_settled()
    assert calls == [(1, True), (2, False)]
    services.after_webhook(1, start_training=False)  # settled: the next one is settled anew
    services.wait_settled()
    assert calls == [(1, True), (2, False), (1, False)]


def test_label_studio_serves_the_new_order_once_the_queue_head_is_in(app_env) -> None:
    """The version is set after the first batch (the head); a failure later keeps the round, recorded."""
    client, services, gateway = app_env
    setup_project(client)
    services.jobs.runner.push_batch_size = 4  # the 10-task pool goes in as the head (4) and the rest (6)
    calls: list[tuple[str, int]] = []
    fail_rest = [False]
    real_push, real_publish = gateway.import_predictions, gateway.publish_version

    def push(project_id: int, predictions, batch_size: int, pace=None) -> int:
        calls.append(("push", len(predictions)))
        if fail_rest[0] and len(calls) > 1:
            raise LabelStudioError("pushing predictions failed: database is locked")
        return real_push(project_id, predictions, batch_size, pace)

    def publish(project_id: int, version: str, uncertainty_sampling: bool) -> None:
        calls.append(("publish", 0))
        real_publish(project_id, version, uncertainty_sampling)

    gateway.import_predictions, gateway.publish_version = push, publish
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    first = wait_for_iteration(services, 1, 1)
    assert first.status == "succeeded" and calls == [("push", 4), ("publish", 0), ("push", 6)]
    assert 0 <= first.metrics["label_studio"]["order_live_after_s"] <= first.metrics["timings"]["push"]
    ranks = {s["task_id"]: s["rank"] for s in client.get("/projects/1/iterations/1/scores").get_json()["scores"]}
    assert sorted(ranks[p["task"]] for p in gateway.pushed[:4]) == [1, 2, 3, 4]  # the head went first
    calls.clear()
    fail_rest[0] = True  # the rest of the push fails: the round stands, with the head live
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    second = wait_for_iteration(services, 1, 2)
    assert second.status == "succeeded" and calls[:2] == [("push", 4), ("publish", 0)]
    assert second.metrics["label_studio"]["pushed"] == 4 and "locked" in second.metrics["label_studio"]["push_error"]
    assert services.store.serving_state(1).version == "it-2"


def test_autolabelling_a_view_cross_fits_on_the_exported_labels_without_listing_the_project(app_env) -> None:
    """A view (a test set) is listed; the cross-fitting labels come from the export, not a whole-project list."""
    client, services, gateway = app_env
    setup_project(client)
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    it = wait_for_iteration(services, 1, 1)
    listed: list[int | None] = []

    def iter_tasks(project_id: int, view: int | None = None):
        listed.append(view)
        yield from (gateway.tasks[24:] if view == 7 else gateway.tasks)  # view 7: the 10 unlabelled tasks

    gateway.iter_tasks = iter_tasks
    job = wait_for_job(client, client.post("/projects/1/autolabel", json={"view": 7}).get_json()["job_id"])
    assert job["status"] == "succeeded", job["error"]
    assert listed == [7]
    n_train = 24 - len(it.metrics["validation"]["task_ids"])
    assert job["result"]["n_tasks"] == 10 and job["result"]["n_crossfit_rows"] == n_train


def test_a_round_pushes_what_annotators_can_reach_before_the_next(app_env) -> None:
    """The first round pushes up to push_limit; later ones 4x the labels of a round's cycle, at least 100."""
    client, services, gateway = app_env
    gateway.tasks[:] = make_tasks(24, 400)
    setup_project(client, extra_params={"retrain_every": 3})
    services.jobs.runner.push_limit = 300
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    first = wait_for_iteration(services, 1, 1)
    assert first.status == "succeeded" and first.metrics["label_studio"]["pushed"] == 300  # no pace known yet
    assert first.metrics["label_studio"]["paced"] is False  # nobody labelling: no pauses between batches
    for task in gateway.tasks[24:27]:  # the crowd labels 3 tasks: the next round reaches the head's floor
        task["annotations"] = [{"id": task["id"] * 10, "result": [
            {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]}]
        client.post("/webhook", json=annotation_event(task["id"], "pos"))
    second = wait_for_iteration(services, 1, 2)
    assert second.status == "succeeded" and second.metrics["label_studio"]["pushed"] == 100
    assert second.metrics["label_studio"]["paced"] is True  # the crowd at work gets its pauses
    for _ in range(30):  # a fast crowd: 30 labels in the cycle -> 4 x 30 (recorded as the route would, no trigger)
        services.store.record_event(1, "ANNOTATION_CREATED", n_labels=1)
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    third = wait_for_iteration(services, 1, 3)
    assert third.status == "succeeded" and third.metrics["label_studio"]["head"] == 120


def test_old_versions_wait_for_a_quiet_moment_while_the_crowd_labels(app_env, monkeypatch) -> None:
    """Each DELETE holds Label Studio's write lock under annotators: none while labels keep arriving."""
    import backend.service.scheduling as scheduling

    client, services, gateway = app_env
    setup_project(client, extra_params={"keep_versions": 1, "retrain_every": 1000})
    monkeypatch.setattr(scheduling, "PRUNE_QUIET_S", 3600.0)  # every label counts as recent
    for number in (1, 2, 3):
        services.store.record_event(1, "ANNOTATION_CREATED", n_labels=1)  # the crowd is at work
        client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
        assert wait_for_iteration(services, 1, number).status == "succeeded"
        wait_until(lambda: not services.jobs._active[1].is_alive(), f"round {number}'s drain (and its pause) ended")
    assert gateway.deleted == []  # it-1 and it-2 wait: fewer than PRUNE_BACKLOG
    monkeypatch.setattr(scheduling, "PRUNE_QUIET_S", 0.0)  # the crowd paused
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    assert wait_for_iteration(services, 1, 4).status == "succeeded"
    wait_until(lambda: gateway.deleted == ["it-1", "it-2", "it-3"], "the backlog pruned in the quiet moment")


def test_a_retrain_on_unchanged_labels_gives_the_same_model(app_env) -> None:
    """The text default (BALD) trains a network: seeded per project, not per round, a second round on the same
    labels scores every pool task exactly as the first, so predictions do not churn and kappa can reach 1."""
    client, services, gateway = app_env
    assert setup_project(client).status_code == 200
    for number in (1, 2):
        services.jobs.trigger(1, "START_TRAINING", background=False)
        services.jobs.drain(1)
        assert services.store.iterations(1)[number - 1].status == "succeeded"
    first, second = services.store.iterations(1)
    assert first.strategy == second.strategy == "bald"

    def uncertainty(number: int) -> dict[int, float]:
        rows = client.get(f"/projects/1/iterations/{number}/scores").get_json()["scores"]
        return {r["task_id"]: r["uncertainty"] for r in rows}

    assert uncertainty(1) == uncertainty(2) and len(uncertainty(1)) > 0
    assert second.kappa == 1.0


def test_a_config_with_a_comment_box_and_a_rating_connects_and_the_round_lists_them(app_env) -> None:
    """Label Studio's templates put a <TextArea> or a <Rating> next to the <Choices>: never a reason to refuse."""
    client, services, gateway = app_env
    config = CONFIG.replace("</View>", '<TextArea name="comment" toName="text"/><Rating name="stars" '
                                       'toName="text"/></View>')
    resp = client.post("/setup", json={"project": "1.1", "schema": config})
    assert resp.status_code == 200, resp.get_json()
    for task in gateway.tasks[:4]:  # annotations hold the extra controls' results too
        for annotation in task["annotations"]:
            annotation["result"] = [*annotation["result"], {"from_name": "comment", "to_name": "text",
                                    "type": "textarea", "value": {"text": ["unsure"]}},
                                    {"from_name": "stars", "to_name": "text", "type": "rating",
                                     "value": {"rating": 4}}]
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (it,) = services.store.iterations(1)
    assert it.status == "succeeded", it.error
    assert it.n_skipped == 0 and len(it.metrics["ignored_controls"]) == 2
    assert it.metrics["ignored_controls"][0].startswith('<TextArea name="comment">')
    assert {r["from_name"] for p in gateway.pushed for r in p["result"]} == {"sentiment"}

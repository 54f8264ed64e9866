"""Smoke tests for the test infrastructure, and the Label Studio facts the backend relies on.

A throwaway Flask app in a thread plays the ML backend (it answers like one and records every
request), so these tests pin down what a real Label Studio 1.23.2 sends, independent of the
labelloop code. Observations are printed as ``FACT name: value`` lines (run with ``-s`` to see
them) and appended as JSON lines to ``$LABELLOOP_FACTS_FILE`` when that is set.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from flask import Flask, jsonify, request
from sqlalchemy import create_engine, text
from werkzeug.serving import make_server

from tests.support import postgres as pg

LABEL_CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="sentiment" toName="text"><Choice value="pos"/><Choice value="neg"/></Choices></View>'
)
FAKE_MODEL_VERSION = "fake-0"


def record_fact(name: str, value) -> None:
    line = json.dumps(value, default=str, sort_keys=True)
    print(f"FACT {name}: {line}")
    path = os.environ.get("LABELLOOP_FACTS_FILE")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"fact": name, "value": value}, default=str, sort_keys=True) + "\n")


def choice(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


# --------------------------------------------------------------------------- fake ML backend
class FakeMLBackend:
    """A minimal ML backend speaking Label Studio's protocol; records every request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        app = Flask("fake-ml-backend")

        @app.before_request
        def _record():
            with self._lock:
                self.requests.append(
                    {
                        "t": time.monotonic(),
                        "method": request.method,
                        "path": request.path,
                        "json": request.get_json(silent=True),
                        "headers": {k: v for k, v in request.headers.items() if k.lower() != "cookie"},
                    }
                )

        @app.get("/health")
        def health():
            return jsonify(status="UP", model_class="FakeMLBackend")

        @app.post("/setup")
        def setup():
            return jsonify(model_version=FAKE_MODEL_VERSION)

        @app.post("/predict")
        def predict():
            tasks = (request.get_json(silent=True) or {}).get("tasks", [])
            results = [
                {"result": choice("pos"), "score": 0.5, "model_version": FAKE_MODEL_VERSION} for _ in tasks
            ]
            return jsonify(results=results, model_version=FAKE_MODEL_VERSION)

        @app.post("/webhook")
        def webhook():
            return jsonify(status="ok")

        @app.post("/train")
        def train():
            return jsonify(status="ok")

        @app.get("/versions")
        def versions():
            return jsonify(versions=[FAKE_MODEL_VERSION])

        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeMLBackend:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.requests)

    def calls(self, method: str | None = None, path: str | None = None, since: int = 0) -> list[dict]:
        return [
            r
            for r in self.snapshot()[since:]
            if (method is None or r["method"] == method) and (path is None or r["path"] == path)
        ]

    def webhook_actions(self, since: int = 0) -> list[str]:
        return [(r["json"] or {}).get("action") for r in self.calls("POST", "/webhook", since)]

    def wait_for(self, predicate, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(0.05)
        return predicate()


@pytest.fixture
def fake_backend():
    backend = FakeMLBackend().start()
    yield backend
    backend.stop()


@pytest.fixture
def ls_client(label_studio):
    return label_studio.client()


def make_project(ls, n_tasks: int) -> tuple[int, list[int]]:
    project = ls.projects.create(title=f"smoke-{uuid.uuid4().hex[:8]}", label_config=LABEL_CONFIG)
    ls.projects.import_tasks(id=project.id, request=[{"text": f"task number {i}"} for i in range(n_tasks)])
    task_ids = sorted(t.id for t in ls.tasks.list(project=project.id))
    assert len(task_ids) == n_tasks
    return project.id, task_ids


def connect_backend(ls, project_id: int, fake: FakeMLBackend) -> int:
    ml = ls.ml.create(url=fake.url, project=project_id, title="fake backend", is_interactive=False)
    return ml.id


# --------------------------------------------------------------------------- tests
def test_label_studio_is_up_and_token_works(label_studio):
    assert len(label_studio.token) == 40
    assert label_studio.url.startswith("http://127.0.0.1:")
    assert requests.get(f"{label_studio.url}/health", timeout=5).status_code == 200
    me = label_studio.client().users.whoami()
    assert me.email == label_studio.username
    # The data dir is a private copy: the SQLite database lives there, not in ~/.local/share.
    assert (label_studio.data_dir / "label_studio.sqlite3").exists()
    record_fact("ls_startup_seconds", round(label_studio.startup_seconds, 2))
    record_fact("ls_template_build_seconds", round(label_studio.template_seconds, 2))


def test_connect_calls_health_and_setup(label_studio, ls_client, fake_backend):
    project_id, _ = make_project(ls_client, 2)
    ml_id = connect_backend(ls_client, project_id, fake_backend)

    paths = [(r["method"], r["path"]) for r in fake_backend.snapshot()]
    record_fact("connect_requests", paths)
    assert ("GET", "/health") in paths
    assert ("POST", "/setup") in paths
    assert paths.index(("GET", "/health")) < paths.index(("POST", "/setup"))

    setup = fake_backend.calls("POST", "/setup")[0]["json"]
    record_fact("setup_keys", sorted(setup))
    record_fact(
        "setup_example",
        {k: (v if k != "access_token" else f"<{len(v or '')} chars>") for k, v in setup.items()},
    )
    assert {"project", "schema", "hostname", "access_token"} <= set(setup)
    assert str(setup["project"]).startswith(f"{project_id}.")
    assert setup["schema"] == LABEL_CONFIG
    assert setup["access_token"] == label_studio.token

    ml = ls_client.ml.get(id=ml_id)
    record_fact("ml_backend_after_connect", {"state": ml.state, "model_version": ml.model_version})
    webhooks = requests.get(
        f"{label_studio.url}/api/webhooks",
        params={"project": project_id},
        headers=label_studio.headers,
        timeout=10,
    ).json()
    record_fact(
        "auto_webhooks",
        [{k: w.get(k) for k in ("url", "send_payload", "actions", "headers")} for w in webhooks],
    )


def test_annotation_and_train_webhooks(label_studio, ls_client, fake_backend):
    project_id, task_ids = make_project(ls_client, 3)
    ml_id = connect_backend(ls_client, project_id, fake_backend)

    mark = len(fake_backend.snapshot())
    annotation = ls_client.annotations.create(id=task_ids[0], result=choice("pos"))
    synchronous = fake_backend.webhook_actions(mark)  # before any waiting
    record_fact("webhooks_present_when_annotations_create_returned", synchronous)
    fake_backend.wait_for(lambda: "ANNOTATION_CREATED" in fake_backend.webhook_actions(mark), 10)
    after_annotation = fake_backend.calls(since=mark)
    record_fact(
        "requests_after_sdk_annotation",
        [(r["method"], r["path"], (r["json"] or {}).get("action")) for r in after_annotation],
    )
    created = [
        r["json"]
        for r in fake_backend.calls("POST", "/webhook", mark)
        if r["json"]["action"] == "ANNOTATION_CREATED"
    ]
    assert created, f"no ANNOTATION_CREATED webhook; got {fake_backend.webhook_actions(mark)}"
    payload = created[0]
    record_fact("annotation_created_keys", sorted(payload))
    record_fact("annotation_created_annotation_keys", sorted(payload["annotation"]))
    record_fact("annotation_created_task_keys", sorted(payload["task"]))
    record_fact("annotation_created_project_keys", sorted(payload["project"]))
    assert payload["annotation"]["id"] == annotation.id
    assert payload["annotation"]["result"][0]["value"] == {"choices": ["pos"]}
    assert payload["task"]["id"] == task_ids[0]
    assert payload["project"]["id"] == project_id
    assert "ANNOTATION_CREATED" in synchronous, "webhook did not arrive before the SDK call returned"

    mark = len(fake_backend.snapshot())
    train_response = ls_client.ml.train(id=ml_id)
    synchronous_train = [(r["method"], r["path"]) for r in fake_backend.calls(since=mark)]
    record_fact("requests_present_when_ml_train_returned", synchronous_train)
    record_fact("ml_train_return_value", repr(train_response))
    fake_backend.wait_for(lambda: "START_TRAINING" in fake_backend.webhook_actions(mark), 10)
    after_train = fake_backend.calls(since=mark)
    record_fact(
        "requests_after_ml_train",
        [(r["method"], r["path"], (r["json"] or {}).get("action")) for r in after_train],
    )
    start = [
        r["json"]
        for r in fake_backend.calls("POST", "/webhook", mark)
        if r["json"]["action"] == "START_TRAINING"
    ]
    assert start, f"ls.ml.train sent no START_TRAINING webhook; got {after_train}"
    record_fact("start_training_keys", sorted(start[0]))
    assert "annotation" not in start[0]
    assert start[0]["project"]["id"] == project_id

    # Updating an annotation (what the labelling UI does on "Update").
    mark = len(fake_backend.snapshot())
    ls_client.annotations.update(id=annotation.id, result=choice("neg"))
    fake_backend.wait_for(lambda: "ANNOTATION_UPDATED" in fake_backend.webhook_actions(mark), 10)
    record_fact("webhooks_after_annotation_update", fake_backend.webhook_actions(mark))

    # With min_annotations_to_start_training >= 1, every annotation also triggers START_TRAINING.
    record_fact(
        "default_min_annotations_to_start_training",
        ls_client.projects.get(id=project_id).min_annotations_to_start_training,
    )
    ls_client.projects.update(id=project_id, min_annotations_to_start_training=1)
    mark = len(fake_backend.snapshot())
    ls_client.annotations.create(id=task_ids[1], result=choice("pos"))
    present = fake_backend.webhook_actions(mark)
    fake_backend.wait_for(lambda: "START_TRAINING" in fake_backend.webhook_actions(mark), 5)
    record_fact(
        "webhooks_for_annotation_with_min_annotations_1",
        {"when_call_returned": present, "after_wait": fake_backend.webhook_actions(mark)},
    )


def test_uncertainty_sampling_next_task(label_studio, ls_client, fake_backend):
    project_id, task_ids = make_project(ls_client, 5)
    connect_backend(ls_client, project_id, fake_backend)
    # The lowest score overall goes to a task that is then labelled: /next must skip it.
    scores = dict(zip(task_ids, [0.9, 0.35, 0.6, 0.05, 0.8], strict=True))
    labelled = task_ids[3]
    expected = task_ids[1]

    resp = ls_client.projects.import_predictions(
        id=project_id,
        request=[
            {"task": tid, "result": choice("pos"), "score": s, "model_version": "it-1"}
            for tid, s in scores.items()
        ],
    )
    record_fact("import_predictions_response", repr(resp))
    ls_client.annotations.create(id=labelled, result=choice("neg"))
    ls_client.projects.update(id=project_id, model_version="it-1", sampling="Uncertainty sampling")
    project = ls_client.projects.get(id=project_id)
    record_fact(
        "project_after_update", {"model_version": project.model_version, "sampling": project.sampling}
    )
    assert project.model_version == "it-1"

    mark = len(fake_backend.snapshot())
    nxt = requests.get(
        f"{label_studio.url}/api/projects/{project_id}/next", headers=label_studio.headers, timeout=30
    )
    assert nxt.status_code == 200, nxt.text
    body = nxt.json()
    record_fact("next_keys", sorted(body))
    record_fact("next_task", {"id": body["id"], "expected": expected, "scores": scores, "labelled": labelled})
    record_fact(
        "backend_requests_during_next", [(r["method"], r["path"]) for r in fake_backend.calls(since=mark)]
    )
    assert body["id"] == expected

    again = requests.get(
        f"{label_studio.url}/api/projects/{project_id}/next", headers=label_studio.headers, timeout=30
    )
    record_fact("next_called_twice_same_user", {"first": body["id"], "second": again.json().get("id")})

    # Data Manager ordering by the project's prediction score (SDK: tasks.list(query=...)).
    query = json.dumps({"ordering": ["tasks:predictions_score"]})
    order = [t.id for t in ls_client.tasks.list(project=project_id, query=query)]
    record_fact("dm_ordering_predictions_score", {"order": order, "by_score": sorted(scores, key=scores.get)})
    assert order == sorted(scores, key=scores.get)
    plain = requests.get(
        f"{label_studio.url}/api/tasks",
        params={"project": project_id, "ordering": "tasks:predictions_score"},
        headers=label_studio.headers,
        timeout=30,
    )
    record_fact("dm_ordering_as_plain_param_is_ignored", [t["id"] for t in plain.json().get("tasks", [])])

    # Retrieve predictions for tasks that already have "it-1" predictions (the backend's version is fake-0).
    mark = len(fake_backend.snapshot())
    ls_client.actions.create(
        id="retrieve_tasks_predictions", project=project_id, selected_items={"all": True, "excluded": []}
    )
    predict = fake_backend.calls("POST", "/predict", mark)
    record_fact(
        "retrieve_after_import_predict_task_ids",
        [[t["id"] for t in r["json"]["tasks"]] for r in predict],
    )


def test_retrieve_predictions_action_calls_predict(label_studio, ls_client, fake_backend):
    project_id, task_ids = make_project(ls_client, 3)
    connect_backend(ls_client, project_id, fake_backend)

    mark = len(fake_backend.snapshot())
    ls_client.actions.create(
        id="retrieve_tasks_predictions", project=project_id, selected_items={"all": True, "excluded": []}
    )
    calls = fake_backend.calls(since=mark)
    record_fact("requests_during_retrieve_predictions", [(r["method"], r["path"]) for r in calls])
    predict = fake_backend.calls("POST", "/predict", mark)
    assert predict, f"no POST /predict; got {[(r['method'], r['path']) for r in calls]}"
    body = predict[0]["json"]
    record_fact("predict_keys", sorted(body))
    record_fact("predict_tasks_per_call", [len(r["json"]["tasks"]) for r in predict])
    record_fact("predict_task_keys", sorted(body["tasks"][0]))
    record_fact("predict_params", body.get("params"))
    record_fact("predict_project", body.get("project"))
    record_fact("predict_example_task", body["tasks"][0])
    assert {"tasks", "project", "label_config", "params"} <= set(body)
    assert body["label_config"] == LABEL_CONFIG
    assert str(body["project"]).startswith(f"{project_id}.")
    seen = sorted(t["id"] for r in predict for t in r["json"]["tasks"])
    assert seen == task_ids
    assert body["tasks"][0]["data"]["text"].startswith("task number")

    # What Label Studio stored from our answer.
    preds = ls_client.predictions.list(task=task_ids[0])
    record_fact(
        "stored_predictions_from_backend",
        [{"model_version": p.model_version, "score": p.score} for p in preds],
    )
    assert any(p.model_version == FAKE_MODEL_VERSION for p in preds)

    # Selecting explicit task ids works too.
    mark = len(fake_backend.snapshot())
    ls_client.actions.create(
        id="retrieve_tasks_predictions",
        project=project_id,
        selected_items={"all": False, "included": task_ids[:1]},
    )
    record_fact(
        "retrieve_again_same_model_version_predict_calls",
        [[t["id"] for t in r["json"]["tasks"]] for r in fake_backend.calls("POST", "/predict", mark)],
    )


def test_postgres_fresh_database(postgres_url):
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar() == 1
            assert conn.execute(text("select current_database()")).scalar() == engine.url.database
            assert (
                conn.execute(text("select count(*) from pg_tables where schemaname = 'public'")).scalar() == 0
            )
            version = conn.execute(text("show server_version")).scalar()
    finally:
        engine.dispose()
    record_fact("postgres_server_version", version)
    assert engine.url.database.startswith("labelloop_test_")


def test_postgres_database_is_dropped_even_with_open_connections(postgres_url):
    base = pg.base_url_from_env()
    with pg.fresh_database(base) as url:
        name = create_engine(url).url.database
        engine = create_engine(url)
        conn = engine.connect()  # left open on purpose: the drop must terminate it
        conn.execute(text("select 1"))
    conn.invalidate()  # its server side is gone; don't let the pool try a ROLLBACK on it
    engine.dispose()
    admin = create_engine(base)
    try:
        with admin.connect() as c:
            exists = c.execute(
                text("select count(*) from pg_database where datname = :n"), {"n": name}
            ).scalar()
    finally:
        admin.dispose()
    assert exists == 0


FAKE_CLI = textwrap.dedent(
    '''
    """Stand-in for backend.cli.main, to test BackendServer's process handling without the real app."""
    import argparse, json, os, subprocess, sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    parser = argparse.ArgumentParser()
    parser.add_argument("command")
    parser.add_argument("--host"); parser.add_argument("--port", type=int)
    parser.add_argument("--workers", type=int); parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    names = ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "DATABASE_URL", "MODEL_DIR", "EXTRA")
    record = {"argv": sys.argv[1:], "child": child.pid, "cwd": os.getcwd(),
              "env": {k: os.environ.get(k) for k in names}}
    with open(os.environ["FAKE_CLI_RECORD"], "w") as fh:
        json.dump(record, fh)

    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json"); self.end_headers()
            self.wfile.write(b'{"status": "UP"}')

    print("fake backend listening", args.host, args.port, flush=True)
    ThreadingHTTPServer((args.host, args.port), H).serve_forever()
    '''
)


def test_backend_server_factory_process_handling(backend_server_factory, tmp_path: Path):
    """BackendServer against a stand-in ``backend/cli.py`` (the real one is tested elsewhere)."""
    root = tmp_path / "fake_root"
    (root / "backend").mkdir(parents=True)
    (root / "backend" / "__init__.py").write_text("")
    (root / "backend" / "cli.py").write_text(FAKE_CLI)
    record = tmp_path / "record.json"
    env = {
        "LABEL_STUDIO_URL": "http://127.0.0.1:9",
        "LABEL_STUDIO_API_KEY": "x" * 40,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "MODEL_DIR": str(tmp_path / "models"),
        "EXTRA": "yes",
        "FAKE_CLI_RECORD": str(record),
    }
    server = backend_server_factory(env, cwd=root)
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    info = json.loads(record.read_text())
    assert info["argv"] == [
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(server.port),
        "--workers",
        "2",
        "--threads",
        "4",
    ]
    assert info["env"] == {k: env[k] for k in info["env"]}
    assert Path(info["cwd"]).resolve() == root.resolve()
    assert "fake backend listening" in server.log_text()

    server.stop()
    time.sleep(0.2)
    assert not _pid_alive(info["child"]), "a child of the server survived stop()"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/health", timeout=2)


def test_backend_server_start_failure_reports_log(backend_server_factory, tmp_path: Path):
    root = tmp_path / "broken_root"
    (root / "backend").mkdir(parents=True)
    (root / "backend" / "__init__.py").write_text("")
    (root / "backend" / "cli.py").write_text(
        "import sys\nprint('boom: cannot start', flush=True)\nsys.exit(3)\n"
    )
    from tests.support.backend import BackendStartError

    env = {
        "LABEL_STUDIO_URL": "http://127.0.0.1:9",
        "LABEL_STUDIO_API_KEY": "k",
        "DATABASE_URL": "sqlite://",
        "MODEL_DIR": "/tmp",
    }
    with pytest.raises(BackendStartError, match="boom: cannot start"):
        backend_server_factory(env, cwd=root, startup_timeout=20)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s", "-v"]))

"""Trainers apart from servers: serve-only replicas queue, workers train and run jobs; dead rounds recover."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from backend.config import ProjectPolicy, Settings
from backend.service.container import Services
from backend.store import Store
from backend.store.schema import Iteration, Project, utcnow
from backend.web.app import create_app
from tests.unit.test_app import FakeGateway, make_tasks, setup_project


@pytest.fixture
def shared(tmp_path):
    """A serve-only app and a worker's services on one database, reaching one (fake) Label Studio."""
    base = dict(model_dir=tmp_path / "models", database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                policy=ProjectPolicy(retrain_every=3, validation_fraction=0.25),
                label_studio_url="http://label-studio.invalid", label_studio_api_key="x" * 40)
    app = create_app(Settings(**base, role="serve"), start_jobs=False, migrate=True)
    server = app.extensions["labelloop"]
    worker_store = Store(base["database_url"])
    worker = Services(Settings(**base, role="worker"), worker_store)
    gateway = FakeGateway(make_tasks(24, 10))
    server.gateway_for = worker.gateway_for = lambda project: gateway
    yield app.test_client(), server, worker, gateway
    for services in (server, worker):
        services.stop()
        services.store.dispose()


def start_training(client, server: Services) -> None:
    """A START_TRAINING webhook, answered and then settled (its round queued) by the server."""
    assert client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}}).status_code == 200
    server.wait_settled()


def test_a_round_queued_by_a_server_is_trained_by_the_worker(shared) -> None:
    client, server, worker, gateway = shared
    setup_project(client)
    start_training(client, server)
    assert [it.version for it in server.store.iterations(1)] == ["it-1"]
    assert server.jobs._active == {}  # the server started no training thread
    assert [it.status for it in server.store.iterations(1)] == ["queued"]
    server.tick()  # a serve-only replica's tick does nothing
    assert [it.status for it in server.store.iterations(1)] == ["queued"]

    worker.tick(background=False)
    (it,) = worker.store.iterations(1)
    assert it.status == "succeeded", it.error
    assert it.worker.startswith(worker.jobs.owner.rsplit(":", 1)[0])  # this worker's host:pid
    assert len(gateway.pushed) == 10
    predicted = client.post("/predict", json={"project": "1.1", "tasks": [{"id": 1, "data": {"text": "superb"}}]})
    assert predicted.get_json()["model_version"] == "it-1"


def test_an_autolabel_job_started_on_a_server_is_run_by_the_worker(shared) -> None:
    client, server, worker, _ = shared
    setup_project(client)
    start_training(client, server)
    worker.tick(background=False)
    job_id = client.post("/projects/1/autolabel", json={"target_precision": 0.5}).get_json()["job_id"]
    assert client.get(f"/jobs/{job_id}").get_json()["status"] == "queued"
    worker.tick(background=False)
    job = client.get(f"/jobs/{job_id}").get_json()
    assert job["status"] == "succeeded", job["error"]
    assert job["worker"] == worker.background.owner


def test_a_job_is_claimed_once(shared) -> None:
    client, server, worker, _ = shared
    setup_project(client)
    server.store.create_job("j1", 1, "autolabel", {}, "w", stale_seconds=60)
    assert server.store.claim_job("j1", "a") is True
    assert worker.store.claim_job("j1", "b") is False
    assert server.store.get_job("j1").worker == "a"


def test_a_round_whose_trainer_died_is_failed_retried_once_and_cleaned_up(shared) -> None:
    client, server, worker, gateway = shared
    setup_project(client)
    start_training(client, server)
    worker.tick(background=False)  # it-1 succeeds
    # A second round starts on a trainer that then dies (kill -9): running, its lease left to expire.
    start_training(client, server)
    assert server.store.acquire_lease(1, "dead-trainer", 60)
    running = server.store.start_next_queued(1, "dead-trainer")
    gateway.import_predictions(1, [{"task": 124, "result": [], "score": 0.5, "model_version": running.version}], 500)
    stale_file = worker.models.path(1, running.version)
    stale_file.parent.mkdir(parents=True, exist_ok=True)
    stale_file.write_bytes(b"half-written")
    worker.tick(background=False)  # the lease is still live: nothing to recover yet
    assert server.store.get_iteration(running.id).status == "running"

    with server.store.session() as s:  # the lease runs out
        s.execute(update(Project).where(Project.id == 1).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    worker.tick(background=False)
    its = {it.version: it for it in server.store.iterations(1)}
    assert its["it-2"].status == "failed" and its["it-2"].error.startswith("worker lost")
    assert its["it-3"].trigger == "retry" and its["it-3"].status == "succeeded", its["it-3"].error
    assert "it-2" in gateway.deleted and not stale_file.exists()
    assert server.store.serving_state(1).version == "it-3"

    # A retry that dies too is not retried again.
    start_training(client, server)
    with server.store.session() as s:
        s.execute(update(Iteration).where(Iteration.version == "it-4").values(trigger="retry"))
    assert server.store.acquire_lease(1, "dead-again", 60)
    server.store.start_next_queued(1, "dead-again")
    with server.store.session() as s:
        s.execute(update(Project).where(Project.id == 1).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    worker.tick(background=False)
    assert [it.status for it in server.store.iterations(1)][-1] == "failed"
    assert not server.store.has_queued(1)


def test_pool_scores_are_looked_up_by_the_serving_iteration_only(shared) -> None:
    client, server, worker, _ = shared
    setup_project(client)
    for _ in (1, 2):
        start_training(client, server)
        worker.tick(background=False)
    first, second = server.store.iterations(1)
    one = server.store.scored_tasks(first.id, [124, 125, 999])
    two = server.store.scored_tasks(second.id, [124, 125, 999])
    assert set(one) == set(two) == {124, 125}  # 999 was never scored
    by_task = {row.task_id: row for row in server.store.task_scores(second.id)}
    assert two[124] == (by_task[124].predicted, by_task[124].score, by_task[124].confidence)
    assert 0.0 < two[124][2] <= 1.0




def test_the_random_validation_stream_is_fixed_and_never_trained_on(shared) -> None:
    from backend.service.training import in_validation

    client, server, worker, gateway = shared
    gateway.tasks[:] = make_tasks(24, 60)
    setup_project(client)
    for _ in (1, 2):
        start_training(client, server)
        worker.tick(background=False)
    first, second = server.store.iterations(1)
    pool_ids = [t["id"] for t in gateway.tasks if not t["annotations"]]
    expected = {t for t in pool_ids if in_validation(t, 0.25)}
    assert expected  # the fixture's pool holds some stream tasks
    for it in (first, second):  # the same tasks in every round, and (another process) the same for the server
        rows = server.store.task_scores(it.id)
        assert {r.task_id for r in rows if r.stream == "validation"} == expected
        assert it.metrics["validation_stream"]["pool_tasks"] == len(expected)
        assert it.metrics["validation_source"] == "random_stream"
    labelled = [t["id"] for t in gateway.tasks if t["annotations"]]
    held_out = {t for t in labelled if in_validation(t, 0.25)}
    assert second.n_validation == len(held_out) and second.n_train == len(labelled) - len(held_out)


def test_predict_answers_pool_tasks_from_the_serving_round_and_computes_the_rest(shared) -> None:
    client, server, worker, gateway = shared
    gateway.tasks[:] = make_tasks(24, 40)
    setup_project(client)
    start_training(client, server)
    worker.tick(background=False)
    # The server answers from it-1's rows now (and holds them in memory: backend/service/poolcache.py) ...
    (first,) = server.store.iterations(1)
    pool = [t for t in gateway.tasks if not t["annotations"]]
    body = client.post("/predict", json={"project": "1.1", "tasks": pool}).get_json()
    assert body["model_version"] == "it-1"
    assert [r["score"] for r in body["results"]] == [r.score for r in sorted(
        server.store.task_scores(first.id), key=lambda r: [t["id"] for t in pool].index(r.task_id))]
    # ... and after the next round it must answer with it-2's, never the it-1 rows it holds.
    for task in gateway.tasks[24:34]:  # ten more labels: the second round's model and queue differ
        task["annotations"] = [{"id": task["id"] * 10, "result": [{"from_name": "sentiment", "to_name": "text",
                                "type": "choices", "value": {"choices": ["pos" if task["id"] % 2 == 0 else "neg"]}}]}]
    start_training(client, server)
    worker.tick(background=False)
    first, second = server.store.iterations(1)
    rows = {r.task_id: r for r in server.store.task_scores(second.id)}
    old = {r.task_id: r for r in server.store.task_scores(first.id)}
    pool = [t for t in gateway.tasks if not t["annotations"]]
    fresh = {"id": 99_999, "data": {"text": "a superb and lovely film"}}
    body = client.post("/predict", json={"project": "1.1", "tasks": [*pool, fresh]}).get_json()
    assert body["model_version"] == "it-2" and len(body["results"]) == len(pool) + 1
    for task, result in zip(pool, body["results"], strict=False):
        row = rows[task["id"]]
        assert result["score"] == row.score and result["result"][0]["value"]["choices"] == row.predicted
        assert result["model_version"] == "it-2"
    changed = [t["id"] for t in pool if t["id"] in old and old[t["id"]].score != rows[t["id"]].score]
    assert changed  # the two rounds pushed different scores: the answers above are it-2's, not it-1's
    assert body["results"][-1]["model_version"] == "it-2"  # an unseen task is computed
    assert body["results"][-1]["result"][0]["value"]["choices"] == ["pos"]


def test_only_the_head_of_the_queue_is_pushed_and_predict_serves_the_rest(shared) -> None:
    client, server, worker, gateway = shared
    worker.jobs.runner.push_limit = 4
    setup_project(client)
    start_training(client, server)
    worker.tick(background=False)
    (it,) = server.store.iterations(1)
    assert it.status == "succeeded", it.error
    rows = sorted(server.store.task_scores(it.id), key=lambda r: r.rank)
    assert [p["task"] for p in gateway.pushed[:4]] == [r.task_id for r in rows[:4]]  # served first = pushed
    # The rest reached Label Studio after the round, between rounds (the backfill), in queue order.
    assert [p["task"] for p in gateway.pushed[4:]] == [r.task_id for r in rows[4:]]
    assert it.metrics["backfill"]["status"] == "done" and it.metrics["backfill"]["pushed"] == 6
    pushed = it.metrics["label_studio"]
    assert pushed.pop("order_live_after_s") >= 0
    assert pushed == {"pushed": 4, "version_set": True, "served_by_predict": 6, "head": 4,
                      "paced": False}
    rest = [t for t in gateway.tasks if t["id"] in {r.task_id for r in rows[4:]}]
    body = client.post("/predict", json={"project": "1.1", "tasks": rest}).get_json()
    assert [r["score"] for r in body["results"]] == [next(x.score for x in rows if x.task_id == t["id"]) for t in rest]


def test_two_drains_in_one_process_never_run_a_round_twice(shared) -> None:
    client, server, worker, _ = shared
    setup_project(client)
    start_training(client, server)
    guard = worker.jobs._drain_guard(1)
    with guard:  # another thread of this process is draining project 1 (it shares the lease owner name)
        assert worker.jobs.drain(1) == []
    assert [it.status for it in server.store.iterations(1)] == ["queued"]
    # Even two holders of the lease cannot both start the queued round: queued -> running is a swap.
    assert server.store.acquire_lease(1, "same-owner", 60)
    first = server.store.start_next_queued(1, "same-owner")
    assert first is not None and server.store.start_next_queued(1, "same-owner") is None

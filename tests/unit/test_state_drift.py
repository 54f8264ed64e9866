"""Label Studio's state does not drift from labelloop's (the fast half; the real Label Studio is in
tests/integration/test_label_studio_state.py).

- pruning follows what Label Studio holds, not what this process remembers having sent;
- between rounds the rest of the pool gets the serving version's predictions (the backfill);
- a webhook delivered twice counts its labels once;
- a due-ness read without the queueing's lock never queues a round the labels were already taken by.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from label_studio_sdk import LabelStudio

import backend.service.scheduling as scheduling
from backend.config import ProjectPolicy
from backend.labelstudio import gateway as gw
from backend.labelstudio.gateway import LabelStudioError, LabelStudioGateway
from backend.store import Store
from backend.store.iterations import RETRAIN_EVERY
from backend.store.schema import Event
from backend.web.protocol import delivery_key
from tests.unit.test_app import CONFIG, annotation_event, make_tasks, setup_project


def train(services) -> Any:
    """One round in the foreground, with what the drain does after it (pruning, backfill); the round."""
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    return services.store.iterations(1)[-1]


def held_by_task(gateway, version: str) -> dict[int, int]:
    """How many predictions of ``version`` each task holds in the fake Label Studio."""
    out: dict[int, int] = {}
    for p in gateway.pushed:
        if p["model_version"] == version and version not in gateway.deleted:
            out[p["task"]] = out.get(p["task"], 0) + 1
    return out


def pool_ids(gateway) -> set[int]:
    return {t["id"] for t in gateway.tasks if not t.get("annotations")}


def label(gateway, task_ids) -> None:
    for task in gateway.tasks:
        if task["id"] in task_ids:
            task["annotations"] = [{"id": task["id"] * 10, "result": [
                {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]}]


# ---------------------------------------------------------------------------------------------- the gateway
def test_delete_version_sends_the_body_label_studio_reads_and_reads_its_answer() -> None:
    """Label Studio 1.23's ProjectModelVersions.delete reads model_version from the JSON body and answers
    {"deleted_predictions": n}; the gateway read a "count" key, so every DELETE looked like 0."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"deleted_predictions": 7})

    gateway = LabelStudioGateway("http://ls.invalid", "t" * 40)
    gateway.client = LabelStudio(base_url="http://ls.invalid", api_key="t" * 40,
                                 httpx_client=httpx.Client(transport=httpx.MockTransport(answer)))
    assert gateway.delete_version(3, "it-2") == 7
    (request,) = seen
    assert request.method == "DELETE" and request.url.path == "/api/projects/3/model-versions/"
    assert request.content == b'{"model_version":"it-2"}'


@pytest.mark.parametrize(("listed", "version", "holds"), [
    ("it-1,it-10", "it-1", True),  # SQLite's Label Studio
    ("it-10,it-11", "it-1", False),  # its filter matched "it-1" inside "it-10": not the version
    ("it-10, it-2", "it-2", True),  # PostgreSQL's
    (["it-3", "it-30"], "it-3", True),
    ("", "it-1", False),
    (None, "it-1", False),
    (",".join(f"it-{i}" for i in range(100, 160)), "it-9", True),  # maybe cut short: counted as holding
])
def test_a_listed_task_holds_the_version_only_when_named_exactly(listed, version, holds) -> None:
    assert gw._holds(listed, version) is holds  # noqa: SLF001


# ---------------------------------------------------------------------------------------------- pruning
def test_pruning_follows_what_label_studio_holds_and_failed_rounds_take_no_turn(app_env) -> None:
    client, services, gateway = app_env
    setup_project(client, extra_params={"keep_versions": 1})
    assert train(services).status == "succeeded"  # it-1
    gateway.fail_push = True
    assert train(services).status == "failed"  # it-2 failed before Label Studio got anything
    gateway.fail_push = False
    real_publish = gateway.publish_version

    def publish(project_id: int, version: str, uncertainty_sampling: bool) -> None:
        if version == "it-3":
            raise LabelStudioError("setting model_version failed: 500")
        real_publish(project_id, version, uncertainty_sampling)

    gateway.publish_version = publish
    assert train(services).status == "failed"  # it-3 failed after pushing its head
    assert train(services).status == "succeeded"  # it-4
    assert set(gateway.model_versions(1)) == {"it-4"}  # keep_versions (1), and nothing else
    assert sorted(gateway.deleted) == ["it-1", "it-3"]  # no DELETE for it-2, which Label Studio never held


def test_label_studio_left_on_a_failed_version_is_set_back_before_it_goes(app_env) -> None:
    """A round set in Label Studio that then failed (its history write, its trainer) leaves Label Studio
    ordering the queue by a version labelloop does not serve; deleting it would clear Label Studio's
    model_version. Pruning points Label Studio back at the serving version first."""
    client, services, gateway = app_env
    setup_project(client)
    first = train(services)
    store = services.store
    lost = store.request_training(1, "START_TRAINING")
    assert store.acquire_lease(1, "gone", 60) and store.start_next_queued(1, "gone").version == "it-2"
    gateway.import_predictions(1, [{"task": t, "result": [], "score": 0.5, "model_version": "it-2"}
                                   for t in sorted(pool_ids(gateway))[:3]], 100)
    gateway.publish_version(1, "it-2", True)
    store.fail_iteration(lost.id, "worker lost: its training lease expired")
    store.release_lease(1, "gone")
    assert services.jobs.runner.prune_versions(1) == {"it-2": 1}
    assert gateway.published[-1] == (1, first.version, True) and set(gateway.model_versions(1)) == {"it-1"}


# ---------------------------------------------------------------------------------------------- backfill
def test_between_rounds_every_unlabelled_pool_task_gets_the_serving_version(app_env) -> None:
    client, services, gateway = app_env
    gateway.tasks[:] = make_tasks(24, 200)
    setup_project(client)
    runner = services.jobs.runner
    runner.push_limit, runner.push_batch_size = 20, 50
    first = train(services)
    assert first.status == "succeeded" and first.metrics["label_studio"]["pushed"] == 20  # the queue's head
    held = held_by_task(gateway, "it-1")
    assert set(held) == pool_ids(gateway) and set(held.values()) == {1}  # every pool task, once
    record = first.metrics["backfill"]
    assert record["status"] == "done" and record["pushed"] == 180 and record["pool"] == 200
    ranks = {s.task_id: s.rank for s in services.store.task_scores(first.id)}
    backfilled = [p["task"] for p in gateway.pushed[20:]]
    assert [ranks[t] for t in backfilled] == sorted(ranks[t] for t in backfilled)  # in queue order

    label(gateway, sorted(pool_ids(gateway))[:30])  # labels since; the next round pushes its head again
    second = train(services)
    held = held_by_task(gateway, "it-2")
    assert set(held) == pool_ids(gateway) and set(held.values()) == {1}
    assert second.metrics["backfill"]["pushed"] == 170 - 20


def test_the_backfill_resumes_where_it_stopped_and_never_pushes_a_task_twice(app_env) -> None:
    client, services, gateway = app_env
    gateway.tasks[:] = make_tasks(24, 200)
    setup_project(client)
    runner = services.jobs.runner
    runner.push_limit, runner.push_batch_size = 20, 50
    services.store.record_event(1, "ANNOTATION_CREATED", n_labels=1)  # annotators at work: no backfill yet
    first = train(services)
    assert "backfill" not in first.metrics and len(held_by_task(gateway, "it-1")) == 20
    # A task Label Studio already holds it-1 for (stored from /predict, say) is not pushed again.
    extra = next(t for t in sorted(pool_ids(gateway)) if t not in held_by_task(gateway, "it-1"))
    gateway.pushed.append({"task": extra, "result": [], "score": 0.5, "model_version": "it-1"})
    calls = []
    record = runner.backfill(1, should_stop=lambda: calls.append(1) or len(calls) > 1)  # stops after one batch
    assert record["status"] == "stopped" and record["pushed"] == 50
    record = runner.backfill(1)
    assert record["status"] == "done" and record["pushed"] == 179 and record["runs"] == 2
    held = held_by_task(gateway, "it-1")
    assert set(held) == pool_ids(gateway) and set(held.values()) == {1}
    before = len(gateway.pushed)
    assert runner.backfill(1)["status"] == "done" and len(gateway.pushed) == before  # done: nothing asked
    assert services.store.get_iteration(first.id).metrics["backfill"]["pushed"] == 179


def test_the_backfill_waits_for_a_pause_and_stops_when_a_round_is_queued(app_env, monkeypatch) -> None:
    client, services, gateway = app_env
    gateway.tasks[:] = make_tasks(24, 200)
    setup_project(client, extra_params={"idle_train_s": 0})
    runner = services.jobs.runner
    runner.push_limit, runner.push_batch_size = 20, 50
    monkeypatch.setattr(scheduling, "PRUNE_QUIET_S", 3600.0)  # every label counts as recent
    services.store.record_event(1, "ANNOTATION_CREATED", n_labels=1)
    first = train(services)
    services.jobs.tick(background=False)
    assert "backfill" not in services.store.get_iteration(first.id).metrics  # the crowd has not paused
    real_push = gateway.import_predictions

    def push(project_id: int, predictions, batch_size: int, pace=None) -> int:
        if predictions[0]["model_version"] == "it-1" and not services.store.has_queued(1):
            services.store.request_training(1, "START_TRAINING")  # a round is asked for mid-backfill
        return real_push(project_id, predictions, batch_size, pace)

    gateway.import_predictions = push
    monkeypatch.setattr(scheduling, "PRUNE_QUIET_S", 0.0)  # annotators paused: the ticker starts the backfill
    services.jobs.tick(background=False)
    record = services.store.get_iteration(first.id).metrics["backfill"]
    assert record["status"] == "stopped" and record["pushed"] == 50  # one batch, then the round went first
    second = services.store.iterations(1)[-1]
    assert second.number == 2 and second.status == "succeeded"
    assert second.metrics["backfill"]["status"] == "done"
    assert set(held_by_task(gateway, "it-2")) == pool_ids(gateway)


# ---------------------------------------------------------------------------------------------- webhooks
def delivered(task_id: int, stamp: str | None, action: str = "ANNOTATION_CREATED") -> dict[str, Any]:
    body = annotation_event(task_id, "pos", action)
    if stamp is not None:
        body["annotation"]["updated_at"] = stamp
    return body


def test_the_delivery_key_tells_a_repeat_from_an_edit() -> None:
    created = delivered(5, "2026-01-01T10:00:00.000001Z")
    key = delivery_key("ANNOTATION_CREATED", created, created["annotation"])
    assert key == "ANNOTATION_CREATED:50:2026-01-01T10:00:00.000001Z"
    edit = delivered(5, "2026-01-01T10:05:00.000001Z", "ANNOTATION_UPDATED")
    assert delivery_key("ANNOTATION_UPDATED", edit, edit["annotation"]) != delivery_key(
        "ANNOTATION_UPDATED", delivered(5, "2026-01-01T10:00:00.000001Z"), created["annotation"])
    unstamped = delivered(5, None, "ANNOTATION_UPDATED")
    assert delivery_key("ANNOTATION_UPDATED", unstamped, unstamped["annotation"]) is None  # cannot tell
    assert delivery_key("START_TRAINING", {}, {}) is None
    bulk = {"annotation": [{"id": i} for i in (3, 1, 2)]}
    assert delivery_key("ANNOTATIONS_CREATED", bulk, {}) == "ANNOTATIONS_CREATED:3:1,2,3"
    many = {"annotation": [{"id": i} for i in range(1000)]}
    assert len(delivery_key("ANNOTATIONS_CREATED", many, {})) <= Event.__table__.c.delivery.type.length
    hostile = delivered(5, "x" * 5000)
    assert len(delivery_key("ANNOTATION_CREATED", hostile, hostile["annotation"])) <= 200


def test_a_second_webhook_to_the_same_backend_counts_each_label_once(app_env) -> None:
    """Two webhooks in Label Studio send the same payload one after the other: recorded twice, counted once."""
    client, services, _ = app_env
    setup_project(client, extra_params={"retrain_every": 3})
    for task_id in (101, 102):  # 2 labels, each delivered twice: short of retrain_every (3)
        body = delivered(task_id, f"2026-01-01T10:00:0{task_id - 100}.000001Z")
        assert client.post("/webhook", json=body).get_json()["labels"] == 1
        repeat = client.post("/webhook", json=body).get_json()
        assert repeat["labels"] == 0 and repeat["repeat"] is True
    services.wait_settled()
    assert services.store.labels_since(1) == 2 and services.store.iterations(1) == []
    assert [e.n_labels for e in services.store.events(1) if e.action == "ANNOTATION_CREATED"] == [1, 0, 1, 0]
    edit = delivered(101, "2026-01-01T11:00:00.000001Z", "ANNOTATION_UPDATED")  # a real edit: counted
    assert client.post("/webhook", json=edit).get_json()["labels"] == 1
    assert client.post("/webhook", json=edit).get_json()["labels"] == 0
    services.wait_settled()
    assert services.store.labels_since(1) == 3 and len(services.store.iterations(1)) == 1  # one round, as for 3


def test_a_bulk_creation_is_read_where_label_studio_puts_it_and_counted_once(app_env) -> None:
    """Label Studio 1.23 sends ANNOTATIONS_CREATED ("predictions to annotations") with lists under the
    singular keys "annotation" and "task"."""
    client, services, _ = app_env
    setup_project(client, extra_params={"retrain_every": 100})
    body = {"action": "ANNOTATIONS_CREATED", "project": {"id": 1, "label_config": CONFIG},
            "annotation": [{"id": i, "task": i, "result": []} for i in (7, 8, 9)],
            "task": [{"id": i} for i in (7, 8, 9)]}
    assert client.post("/webhook", json=body).get_json()["labels"] == 3
    assert client.post("/webhook", json=body).get_json()["labels"] == 0
    assert services.store.labels_since(1) == 3


@pytest.fixture
def store(database_url):
    s = Store(database_url)
    s.upgrade()
    s.ensure_project(1, ProjectPolicy(retrain_every=3))
    yield s
    s.dispose()


def at_once(n: int, work) -> list[Any]:
    """``work()`` in ``n`` threads released together; their results."""
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_deliveries_at_the_same_moment_on_two_workers_count_once(store) -> None:
    """Eight deliveries of one event released together, twenty times over. On PostgreSQL some of those
    INSERTs miss each other (about one trial in eight records two rows with a label): the count still
    takes each event once."""
    for trial in range(20):
        key = f"ANNOTATION_CREATED:{trial}:2026-01-01T10:00:00Z"
        results = at_once(8, lambda k=key: store.record_delivery(1, "ANNOTATION_CREATED", n_labels=1, delivery=k))
        assert len({event_id for event_id, _ in results}) == 8  # every delivery is recorded
    assert store.labels_since(1) == 20


def test_a_repeat_both_inserts_counted_is_counted_once(store) -> None:
    """What PostgreSQL can leave when two INSERTs commit at the same moment (neither saw the other): the
    later of the two counts nothing wherever labels are summed."""
    for _ in range(2):
        with store.session() as s:
            s.add(Event(project_id=1, action="ANNOTATION_CREATED", n_labels=1, delivery="ANNOTATION_CREATED:5:t"))
    store.record_event(1, "ANNOTATION_CREATED", n_labels=1, delivery="ANNOTATION_CREATED:6:t")
    assert store.labels_since(1) == 2


# ---------------------------------------------------------------------------------------------- queueing
def test_two_settles_at_once_queue_one_round(store) -> None:
    for i in range(3):
        store.record_event(1, "ANNOTATION_CREATED", n_labels=1, delivery=f"ANNOTATION_CREATED:{i}:t")
    queued = at_once(6, lambda: store.request_training(1, "labels", min_labels=RETRAIN_EVERY))
    assert len({it.id for it in queued}) == 1 and len(store.iterations(1)) == 1


def test_a_count_read_before_a_round_took_the_labels_queues_nothing(store) -> None:
    for _ in range(3):
        store.record_event(1, "ANNOTATION_CREATED", n_labels=1)
    assert store.labels_since(1) >= 3  # a settle (or the ticker) sees the round due ...
    first = store.request_training(1, "labels", min_labels=RETRAIN_EVERY)  # ... and so does another one,
    assert store.acquire_lease(1, "w", 60) and store.start_next_queued(1, "w").id == first.id  # which ran
    assert store.request_training(1, "labels", min_labels=RETRAIN_EVERY) is None  # nothing left for a second
    assert [it.status for it in store.iterations(1)] == ["running"]


def test_the_ticker_never_queues_a_round_after_a_settle_took_its_labels(app_env) -> None:
    """The ticker's safety net reads the projects due without the queueing's lock; a webhook's settle can queue
    and start the round in between (on another worker). Its trigger must then queue nothing."""
    client, services, _ = app_env
    setup_project(client, extra_params={"retrain_every": 3, "idle_train_s": 0})
    store = services.store
    for _ in range(3):
        store.record_event(1, "ANNOTATION_CREATED", n_labels=1)
    real = store.projects_due_by_labels

    def due_then_taken(*args, **kwargs) -> list[int]:
        due = real(grace_seconds=0)
        assert due == [1]
        store.request_training(1, "labels", min_labels=RETRAIN_EVERY)  # another worker's settle queues it
        assert store.acquire_lease(1, "other-worker", 600) and store.start_next_queued(1, "other-worker")
        return due

    store.projects_due_by_labels = due_then_taken
    services.jobs.tick(background=False)
    assert [it.status for it in store.iterations(1)] == ["running"]  # no second round behind it

"""The SQL store on SQLite and on a real PostgreSQL: migrations, folding triggers, the lease."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from backend.config import ProjectPolicy
from backend.store import Store
from backend.store.schema import Base, utcnow

POLICY = ProjectPolicy(retrain_every=3)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url")
    s = Store(url)
    s.upgrade()
    yield s
    s.dispose()


def test_migrations_match_the_models(store: Store) -> None:
    store.upgrade()  # idempotent
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_upgrade_to_0004_keeps_policy_and_predictions(request, tmp_path, database) -> None:
    """A database written before policy and predictions became JSON keeps both through the upgrade."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from backend.store.db import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}" if database == "sqlite" else request.getfixturevalue("postgres_url")
    old = Store(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with old.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        conn.execute(sa.text(
            "INSERT INTO projects (id, label_config, strategy, queue, retrain_every, retrain_interval_s, "
            "validation_fraction, set_sampling, calibration, stop_kappa, stop_window, keep_versions, "
            "labels_since_iteration, created_at, updated_at) VALUES (5, '<View/>', 'entropy', 'greedy', 7, 30, "
            "0.1, FALSE, 'none', 0.95, 4, 3, 2, '2026-11-30 00:00:00', '2026-11-30 00:00:00')"))
        conn.execute(sa.text(
            "INSERT INTO iterations (id, project_id, number, version, status, trigger, queued_at) "
            "VALUES (1, 5, 1, 'it-1', 'succeeded', 'labels', '2026-11-30 00:00:00')"))
        conn.execute(sa.text(
            "INSERT INTO task_scores (iteration_id, task_id, predicted, score, uncertainty, difficulty, rank) "
            "VALUES (1, 42, '[\"pos\", \"neg\"]', 0.4, 0.6, 'hard', 1)"))
    old.upgrade()
    rules = old.get_project(5).rules
    assert (rules.strategy, rules.queue, rules.retrain_every, rules.retrain_interval_s) == ("entropy", "greedy", 7, 30)
    assert (rules.validation_fraction, rules.set_sampling, rules.calibration) == (0.1, False, "none")
    assert (rules.stop_kappa, rules.stop_window, rules.keep_versions, rules.model) == (0.95, 4, 3, "auto")
    assert old.predictions_of(1, [42]) == {42: ["pos", "neg"]}
    assert old.projects_due_by_timer(now=utcnow() + timedelta(days=1)) == [5]  # retrain_interval_s kept as a column
    assert old.labels_since(5) == 2  # the old counter carried over (0006)
    old.dispose()


def test_events_count_labels_and_survive_a_new_store(store: Store) -> None:
    store.ensure_project(7, POLICY, label_config="<View/>")
    first = store.record_event(7, "ANNOTATION_CREATED", annotation_id=1, task_id=2, n_labels=1)
    assert store.record_event(7, "ANNOTATIONS_CREATED", n_labels=4, payload={"a": [1]}) > first
    store.record_event(7, "PROJECT_UPDATED")
    assert store.labels_since(7) == 5
    again = Store(store.url)  # "restart": the count lives in SQL, not in memory
    assert again.labels_since(7) == 5
    assert [e.action for e in again.events(7)] == ["ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "PROJECT_UPDATED"]
    again.dispose()


def test_a_round_that_starts_takes_the_labels_counted_so_far(store: Store) -> None:
    store.ensure_project(8, POLICY)
    store.record_event(8, "ANNOTATION_CREATED", n_labels=3)
    assert store.projects_due_by_labels() == []  # the webhooks' own settling gets there first
    later = utcnow() + timedelta(minutes=1)
    assert store.projects_due_by_labels(now=later) == [8]  # retrain_every=3 labels arrived, nothing queued yet
    store.request_training(8, "labels")
    assert store.projects_due_by_labels(now=later) == []  # a round is queued: nothing else to trigger
    assert store.acquire_lease(8, "w", 60) and store.start_next_queued(8, "w") is not None
    assert store.labels_since(8) == 0
    store.record_event(8, "ANNOTATION_CREATED", n_labels=2)
    assert store.labels_since(8) == 2


def test_triggers_fold_into_one_queued_iteration(store: Store) -> None:
    store.ensure_project(1, POLICY)
    first = store.request_training(1, "labels")
    second = store.request_training(1, "START_TRAINING")
    assert (first.id, first.version) == (second.id, "it-1")
    assert store.acquire_lease(1, "w1", 60)
    running = store.start_next_queued(1, "w1")
    assert running.id == first.id and running.status == "running"
    follow_up = store.request_training(1, "labels")
    assert follow_up.version == "it-2" and follow_up.status == "queued"


def test_concurrent_requests_queue_exactly_one(store: Store) -> None:
    store.ensure_project(2, POLICY)
    results: list[int] = []
    errors: list[BaseException] = []

    def request() -> None:
        try:
            results.append(store.request_training(2, "labels").id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(results)) == 1
    assert [it.status for it in store.iterations(2)] == ["queued"]


def test_lease_is_exclusive_and_expires(store: Store) -> None:
    store.ensure_project(3, POLICY)
    store.request_training(3, "cli")
    assert store.acquire_lease(3, "a", 60)
    assert not store.acquire_lease(3, "b", 60)
    it = store.start_next_queued(3, "a")
    assert store.renew_lease(3, "a", 60) and not store.renew_lease(3, "b", 60)
    # "a" dies: make its lease stale; "b" takes over and the orphaned run is marked failed.
    with store.session() as s:
        from backend.store.schema import Project

        s.get(Project, 3).lease_expires_at = utcnow() - timedelta(seconds=1)
    assert store.acquire_lease(3, "b", 60)
    assert store.get_iteration(it.id).status == "failed"
    assert "lease expired" in store.get_iteration(it.id).error
    store.release_lease(3, "a")  # not the owner: no effect
    assert not store.acquire_lease(3, "a", 60)
    store.release_lease(3, "b")
    assert store.acquire_lease(3, "a", 60)


def test_succeed_publishes_version_scores_and_artifact(store: Store) -> None:
    store.ensure_project(4, POLICY, label_config="<View/>")
    store.request_training(4, "cli")
    store.acquire_lease(4, "w", 60)
    it = store.start_next_queued(4, "w")
    scores = [
        {"task_id": 10, "predicted": ["pos"], "score": 0.9, "uncertainty": 0.1, "difficulty": "easy", "rank": 2},
        {"task_id": 11, "predicted": ["neg"], "score": 0.2, "uncertainty": 0.8, "difficulty": "hard", "rank": 1},
    ]
    store.succeed_iteration(it.id, artifact=b"\x00model", artifact_name="it-1.skops", scores=scores,
                            labels_used=5, accuracy=0.8, metrics={"per_class": {}})
    state = store.serving_state(4)
    assert (state.version, state.iteration_id) == ("it-1", it.id)
    assert [r.task_id for r in store.task_scores(it.id)] == [11, 10]
    assert store.artifact(it.id).data == b"\x00model"
    assert store.versions(4) == ["it-1"]


def test_failed_iteration_keeps_serving_the_last_good_version(store: Store) -> None:
    store.ensure_project(5, POLICY)
    store.request_training(5, "cli")
    store.acquire_lease(5, "w", 60)
    good = store.start_next_queued(5, "w")
    store.succeed_iteration(good.id, artifact=b"m", artifact_name="x", scores=[])
    store.request_training(5, "cli")
    bad = store.start_next_queued(5, "w")
    store.fail_iteration(bad.id, "LabelStudioError: unreachable")
    assert store.serving_state(5).version == "it-1"
    assert [i.status for i in store.iterations(5)] == ["succeeded", "failed"]


def test_timer_due_only_with_new_labels_and_elapsed_interval(store: Store) -> None:
    store.ensure_project(6, POLICY.model_copy(update={"retrain_interval_s": 60}))
    assert store.projects_due_by_timer() == []  # no new labels
    store.record_event(6, "ANNOTATION_CREATED", n_labels=1)
    assert store.projects_due_by_timer() == [6]
    store.request_training(6, "timer")
    assert store.projects_due_by_timer() == []
    assert store.projects_due_by_timer(now=utcnow() + timedelta(seconds=61)) == [6]


def test_job_slot_one_live_job_per_project_and_stale_ones_are_taken_over(store) -> None:
    from sqlalchemy import update

    from backend.store.schema import Job

    store.ensure_project(7, ProjectPolicy())
    first = store.create_job("job-a", 7, "autolabel", {}, "w1", stale_seconds=60)
    assert first is not None and store.active_job(7).id == "job-a"
    assert store.create_job("job-b", 7, "autolabel", {}, "w2", stale_seconds=60) is None  # busy
    assert store.get_job("job-b") is None  # nothing written for the refused one
    store.update_job("job-a", status="succeeded", result={"model_version": "it-1"})
    assert store.create_job("job-c", 7, "autolabel", {}, "w2", stale_seconds=60) is not None
    # A holder whose worker died (no heartbeat for longer than stale_seconds) is failed and replaced.
    with store.session() as s:
        s.execute(update(Job).where(Job.id == "job-c").values(status="running",
                                                                updated_at=utcnow() - timedelta(seconds=120)))
    assert store.create_job("job-d", 7, "autolabel", {}, "w3", stale_seconds=60) is not None
    assert store.get_job("job-c").status == "failed" and "worker lost" in store.get_job("job-c").error
    assert store.autolabelled_versions(7) == {"it-1"}


def test_job_slot_is_claimed_once_under_a_race(store) -> None:
    store.ensure_project(8, ProjectPolicy())
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def claim(i: int) -> None:
        barrier.wait()
        try:
            results.append(store.create_job(f"race-{i}", 8, "autolabel", {}, f"w{i}", stale_seconds=60) is not None)
        except Exception:  # SQLite may refuse a concurrent writer outright: that is a lost race too
            results.append(False)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 5 + [True]


def test_labels_short_of_a_round_are_due_once_quiet(store: Store) -> None:
    """Labels fewer than retrain_every (the last ones before a break) are trained on after idle_train_s."""
    store.ensure_project(9, ProjectPolicy(retrain_every=10, idle_train_s=30))
    assert store.projects_idle_with_labels(now=utcnow() + timedelta(hours=1)) == []  # no label, nothing to train
    store.record_event(9, "ANNOTATION_CREATED", n_labels=1)
    store.record_event(9, "PROJECT_UPDATED", n_labels=0)
    assert store.projects_idle_with_labels() == []  # the label is fresh: more may come
    store.record_event(9, "ANNOTATION_CREATED", n_labels=1)
    assert store.projects_idle_with_labels(now=utcnow() + timedelta(seconds=20)) == []  # the newest label is 20 s old
    assert store.projects_idle_with_labels(now=utcnow() + timedelta(seconds=31)) == [9]
    store.request_training(9, "idle")
    assert store.projects_idle_with_labels(now=utcnow() + timedelta(seconds=31)) == []  # queued already
    assert store.acquire_lease(9, "w", 60) and store.start_next_queued(9, "w") is not None
    assert store.projects_idle_with_labels(now=utcnow() + timedelta(hours=1)) == []  # the round took them


def test_idle_training_can_be_switched_off(store: Store) -> None:
    store.ensure_project(10, ProjectPolicy(retrain_every=10, idle_train_s=0))
    store.record_event(10, "ANNOTATION_CREATED", n_labels=2)
    assert store.projects_idle_with_labels(now=utcnow() + timedelta(hours=1)) == []


def test_a_trigger_that_counted_before_a_round_took_the_labels_queues_nothing(store: Store) -> None:
    """The settle race: labels counted, a round starts and takes them, then the trigger arrives."""
    store.ensure_project(11, ProjectPolicy(retrain_every=3))
    for _ in range(3):
        store.record_event(11, "ANNOTATION_CREATED", n_labels=1)
    assert store.labels_since(11) == 3  # a webhook's settle counted 3: due
    first = store.request_training(11, "START_TRAINING")
    assert store.acquire_lease(11, "w", 60) and store.start_next_queued(11, "w").id == first.id  # took the 3
    assert store.request_training(11, "labels", min_labels=3) is None  # the settle's trigger, too late
    assert [it.status for it in store.iterations(11)] == ["running"]
    for _ in range(3):
        store.record_event(11, "ANNOTATION_CREATED", n_labels=1)
    follow_up = store.request_training(11, "labels", min_labels=3)
    assert follow_up is not None and follow_up.status == "queued"
    joined = store.request_training(11, "labels", min_labels=100)
    assert joined is not None and joined.id == follow_up.id  # a queued round is joined, not judged

"""Label Studio's state does not drift from labelloop's, against a real Label Studio 1.23.2 and gunicorn.

- After several rounds and a pause, Label Studio holds the predictions of at most ``keep_versions`` + 1
  versions, whatever failed rounds left behind, and every unlabelled task holds the serving version's
  prediction (a round pushes only its queue's head; the rest comes between rounds).
- A second webhook to the same backend (Label Studio sends each webhook the same payload) counts every
  label once, and rounds come as often as for the labels given.
"""

from __future__ import annotations

import requests
from sqlalchemy import create_engine, func, select

from backend.store.schema import Event, Iteration, utcnow
from tests.integration.test_loop import choice, iterations, review, text_project, wait_for

KEEP = 2


def finished(server, project_id: int, version: str) -> dict | None:
    done = [i for i in iterations(server, project_id) if i["version"] == version and i["status"] != "queued"
            and i["status"] != "running"]
    return done[0] if done else None


def held_versions(label_studio, project_id: int) -> dict[str, int]:
    """What Label Studio says it holds: predictions per model version (its model-versions count)."""
    body = requests.get(f"{label_studio.url}/api/projects/{project_id}/model-versions/",
                        headers=label_studio.headers, timeout=30).json()
    return {v: n for v, n in body.items() if n}


def unlabelled_tasks(label_studio, project_id: int) -> set[int]:
    body = requests.get(f"{label_studio.url}/api/tasks", headers=label_studio.headers, timeout=60,
                        params={"project": project_id, "fields": "task_only", "page_size": 5000}).json()
    return {t["id"] for t in body["tasks"] if not t["total_annotations"]}


def coverage(label_studio, ls, project_id: int, version: str) -> float:
    """The share of unlabelled tasks that hold a prediction of ``version`` in Label Studio."""
    todo = unlabelled_tasks(label_studio, project_id)
    holding = {p.task for p in ls.predictions.list(project=project_id) if p.model_version == version}
    return len(todo & holding) / max(1, len(todo))


def add_failed_rounds(database_url: str, project_id: int, ls, pool: list[int]) -> None:
    """Two rounds that failed, as the reported project had: it-3 before it pushed anything (a read that
    failed), it-4 after its queue's head reached Label Studio (40 predictions). Written where the backend
    keeps its history, and Label Studio gets it-4's predictions the way a round pushes them."""
    engine = create_engine(database_url)
    now = utcnow()
    with engine.begin() as conn:
        for number in (3, 4):
            conn.execute(Iteration.__table__.insert().values(
                project_id=project_id, number=number, version=f"it-{number}", status="failed", trigger="labels",
                queued_at=now, started_at=now, finished_at=now, error="LabelStudioError: made failed by the test"))
    engine.dispose()
    ls.projects.import_predictions(id=project_id, request=[
        {"task": t, "result": choice("pos"), "score": 0.5, "model_version": "it-4"} for t in pool[:40]])


def test_after_a_pause_label_studio_holds_recent_versions_and_the_pool_the_serving_one(
        label_studio, backend_server_factory, tmp_path) -> None:
    ls = label_studio.client()
    project, tasks, label_of = text_project(ls, "drift", [review(i) for i in range(300)])
    database_url = f"sqlite:///{tmp_path / 'labelloop.sqlite3'}"
    # A round pushes 30 predictions (its queue's head): a tenth of the pool.
    server = backend_server_factory({
        "LABELLOOP_RETRAIN_EVERY": "5", "LABELLOOP_TICK_SECONDS": "1", "LABELLOOP_PUSH_LIMIT": "30",
        "LABELLOOP_PUSH_BATCH_SIZE": "50", "LABELLOOP_KEEP_VERSIONS": str(KEEP), "LABELLOOP_IDLE_TRAIN": "0",
        "DATABASE_URL": database_url})
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    queue = iter(tasks)

    def label_a_round(version: str) -> dict:
        for _ in range(5):
            task = next(queue)
            ls.annotations.create(id=task.id, result=choice(label_of[task.id]))
        done = wait_for(lambda: finished(server, project.id, version), 240, f"round {version}")
        assert done["status"] == "succeeded", done["error"]
        return done

    for version in ("it-1", "it-2"):
        label_a_round(version)
    add_failed_rounds(database_url, project.id, ls, sorted(unlabelled_tasks(label_studio, project.id)))
    for version in ("it-5", "it-6", "it-7"):
        last = label_a_round(version)
    assert last["metrics"]["label_studio"]["head"] == 30 and last["n_pool"] == 300 - 25

    # The pause: no more labels. Within minutes Label Studio is in line with the serving version.
    def in_line() -> bool:
        held = held_versions(label_studio, project.id)
        return len(held) <= KEEP + 1 and "it-4" not in held and coverage(label_studio, ls, project.id, "it-7") >= 0.95

    wait_for(in_line, 300, "old versions pruned and the pool holding it-7", interval=2.0)
    held = held_versions(label_studio, project.id)
    assert set(held) <= {"it-5", "it-6", "it-7"} and held["it-7"] >= 0.95 * 275, held
    assert ls.projects.get(id=project.id).model_version == "it-7"
    # Label Studio's answer to each DELETE is read (it said how many it deleted: the log names the count).
    assert "it-4 (40)" in server.log_text()
    backfill = wait_for(lambda: finished(server, project.id, "it-7")["metrics"].get("backfill"), 60,
                        "it-7's backfill record")
    assert backfill["status"] == "done" and backfill["pushed"] >= 0.95 * (275 - 30), backfill
    # Done means done: a later tick neither pushes again nor sends a DELETE.
    assert held_versions(label_studio, project.id)["it-7"] == held["it-7"]


def test_a_second_webhook_to_the_same_backend_counts_each_label_once(label_studio, backend_server_factory,
                                                                      postgres_url) -> None:
    ls = label_studio.client()
    project, tasks, label_of = text_project(ls, "twice", [review(i) for i in range(40)])
    server = backend_server_factory({"LABELLOOP_RETRAIN_EVERY": "7", "LABELLOOP_TICK_SECONDS": "1",
                                     "LABELLOOP_IDLE_TRAIN": "0", "DATABASE_URL": postgres_url})
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    # A leftover second webhook to the same backend, next to the one Label Studio made for the ML backend.
    ls.webhooks.create(project=project.id, url=f"{server.url}/webhook", send_payload=True,
                       send_for_all_actions=True)
    ours = [w for w in ls.webhooks.list(project=project.id) if w.url.rstrip("/").endswith(f"{server.port}/webhook")]
    assert len(ours) == 2, ours
    engine = create_engine(postgres_url)

    def deliveries(action: str) -> int:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count(Event.id)).where(Event.project_id == project.id,
                                                                      Event.action == action)) or 0)

    def labels_waiting() -> int:
        body = requests.get(f"{server.url}/metrics", timeout=10).json()
        return next(p["labels_since_iteration"] for p in body["projects"] if p["project"] == project.id)

    for task in tasks[:6]:  # 6 labels, one short of a round
        ls.annotations.create(id=task.id, result=choice(label_of[task.id]))
    # Without Redis, Label Studio sends its webhooks before the API call returns: both deliveries are in.
    assert deliveries("ANNOTATION_CREATED") == 12
    assert labels_waiting() == 6 and iterations(server, project.id) == []
    ls.annotations.create(id=tasks[6].id, result=choice(label_of[tasks[6].id]))  # the 7th: one round
    first = wait_for(lambda: finished(server, project.id, "it-1"), 240, "the round of 7 labels")
    assert first["status"] == "succeeded", first["error"]
    assert first["labels_used"] == 7
    assert labels_waiting() == 0 and [i["version"] for i in iterations(server, project.id)] == ["it-1"]

    # A real edit (a new updated_at) counts again, once; so does a bulk creation, read where Label Studio
    # puts it (lists under "annotation" and "task"), once for its two deliveries.
    annotation = next(a for a in ls.annotations.list(id=tasks[0].id))
    ls.annotations.update(id=annotation.id, result=choice("neg" if label_of[tasks[0].id] == "pos" else "pos"))
    assert deliveries("ANNOTATION_UPDATED") == 2 and labels_waiting() == 1
    bulk = [t.id for t in tasks[10:13]]
    ls.actions.create(id="predictions_to_annotations", project=project.id,
                      selected_items={"all": False, "included": bulk},
                      request_options={"additional_body_parameters": {"model_version": "it-1"}})
    assert deliveries("ANNOTATIONS_CREATED") == 2 and labels_waiting() == 1 + 3
    with engine.connect() as conn:
        refused = conn.scalar(select(func.count(Event.id)).where(Event.project_id.is_(None)))
    assert refused == 0  # none of them was refused (a bulk creation used to be a 400)
    engine.dispose()

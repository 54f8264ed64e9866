"""The webhook journal: kept on disk while the database is down, replayed once, never twice."""

from __future__ import annotations

import json

from sqlalchemy.exc import OperationalError

from backend.service.journal import WebhookJournal
from tests.unit.test_app import annotation_event, setup_project


def outage() -> OperationalError:
    return OperationalError("SELECT 1", {}, Exception("connection refused"))


def test_append_replay_and_put_back_on_a_second_outage(tmp_path) -> None:
    journal = WebhookJournal(tmp_path)
    for n in range(5):
        journal.append({"n": n})
    assert journal.pending() == 5
    seen: list[int] = []
    down = [True]  # the database drops once, at the fourth webhook

    def flaky(body: dict) -> None:
        if body["n"] == 3 and down[0]:
            down[0] = False
            raise outage()
        seen.append(body["n"])

    assert journal.replay(flaky, lambda exc: isinstance(exc, OperationalError)) == 3
    assert seen == [0, 1, 2] and journal.pending() == 2  # the rest waits for the next tick
    assert journal.replay(flaky, lambda exc: isinstance(exc, OperationalError)) == 2
    assert seen == [0, 1, 2, 3, 4] and journal.pending() == 0
    assert journal.replay(flaky, lambda exc: False) == 0  # nothing is replayed twice


def test_a_refused_webhook_is_not_retried(tmp_path) -> None:
    journal = WebhookJournal(tmp_path)
    journal.append({"n": 1})

    def refuse(body: dict) -> None:
        raise ValueError("bad")

    assert journal.replay(refuse, lambda exc: False) == 1 and journal.pending() == 0


def test_webhooks_during_an_outage_are_acknowledged_kept_and_replayed(app_env, monkeypatch) -> None:
    client, services, _ = app_env
    setup_project(client)
    assert client.post("/webhook", json=annotation_event(100, "pos")).status_code == 200
    real = services.store.serving_state

    def down(project_id: int):
        raise outage()

    monkeypatch.setattr(services.store, "serving_state", down)
    for task_id in (101, 102):
        resp = client.post("/webhook", json=annotation_event(task_id, "neg"))
        assert resp.status_code == 202 and resp.get_json()["status"] == "journaled"
    assert services.journal.pending() == 2
    services.tick(background=False)  # still down: nothing lost, nothing replayed
    assert services.journal.pending() == 2

    monkeypatch.setattr(services.store, "serving_state", real)
    services.tick(background=False)
    assert services.journal.pending() == 0
    events = [e for e in services.store.events(1) if e.action == "ANNOTATION_CREATED"]
    assert [e.task_id for e in events] == [100, 101, 102]
    # The third label reached retrain_every=3 on replay and queued a round, as it would have live
    # (right after the replayed webhook's answer, on the settling thread).
    services.wait_settled()
    triggers = [it.trigger for it in services.store.iterations(1)]
    assert triggers and set(triggers) == {"labels"}
    assert json.dumps(events[-1].payload)  # stored as a live webhook would be

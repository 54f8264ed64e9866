"""Size limits: request bodies, tasks per /predict, scoring in chunks, what a stored webhook keeps.

A 100,000-task /predict (51 MB) used to be accepted, took 127 s (Label Studio gives up at 100 s) and
grew a worker from 484 MB to 1.70 GB; webhook payloads were stored whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

import model.scoring
from backend.config import Settings
from backend.store.schema import Event
from backend.web.params import MAX_LABEL_CONFIG_CHARS, STORED_LIST_ITEMS, STORED_STRING_CHARS, trim
from tests.unit.test_app import CONFIG, setup_project
from tests.unit.test_fuzz import assert_named_4xx, make_app, train_project_1


@pytest.fixture
def limited(database_url, tmp_path) -> Iterator[tuple[Any, Any]]:
    """Small limits, so the tests need no big bodies: 64 KiB bodies, 20 tasks, batches of 3, 8 KiB events."""
    client, services, _ = make_app(database_url, tmp_path, max_body_bytes=65536, max_predict_tasks=20,
                                   predict_batch_size=3, max_event_bytes=8192)
    assert setup_project(client).status_code == 200
    yield client, services
    services.stop()
    services.store.dispose()


def events(services) -> list[Event]:
    with services.store.session() as s:
        return list(s.scalars(select(Event).order_by(Event.id)))


def test_settings_from_the_environment() -> None:
    defaults = Settings.from_env({})
    assert (defaults.max_body_bytes, defaults.max_predict_tasks) == (32 * 1024 * 1024, 10_000)
    assert (defaults.predict_batch_size, defaults.max_event_bytes) == (500, 64 * 1024)
    env = {"LABELLOOP_MAX_BODY_BYTES": "4096", "LABELLOOP_MAX_PREDICT_TASKS": "7",
           "LABELLOOP_PREDICT_BATCH_SIZE": "2", "LABELLOOP_MAX_EVENT_BYTES": "2048"}
    s = Settings.from_env(env)
    assert (s.max_body_bytes, s.max_predict_tasks, s.predict_batch_size, s.max_event_bytes) == (4096, 7, 2, 2048)
    with pytest.raises(ValueError):
        Settings.from_env({"LABELLOOP_MAX_PREDICT_TASKS": "0"})


def test_a_body_over_the_limit_is_413_naming_the_body(limited) -> None:
    client, services = limited
    big = {"project": "1.1", "tasks": [{"data": {"text": "x" * 70_000}}]}
    for path in ("/predict", "/setup", "/webhook", "/projects/1/autolabel"):
        body = assert_named_4xx(client.post(path, json=big), 413, "body")
        assert "65536 bytes" in body["error"] and "LABELLOOP_MAX_BODY_BYTES" in body["error"]
    (event,) = events(services)  # the refused webhook is on record, unread
    assert event.project_id is None and "LABELLOOP_MAX_BODY_BYTES" in event.error
    assert event.payload["_trimmed"]["raw_bytes"] > 65536
    assert client.post("/predict", json={"project": "1.1", "tasks": [{"data": {"text": "x" * 100}}]}).status_code \
        == 200


def test_too_many_tasks_is_413_saying_how_to_split(limited) -> None:
    client, _ = limited
    tasks = [{"id": i + 1, "data": {"text": "a film"}} for i in range(21)]
    body = assert_named_4xx(client.post("/predict", json={"project": "1.1", "tasks": tasks}), 413, "tasks")
    assert "send at most 20 tasks per request" in body["error"]
    assert client.post("/predict", json={"project": "1.1", "tasks": tasks[:20]}).status_code == 200


def test_predict_scores_in_batches_with_the_same_answers(limited, monkeypatch) -> None:
    client, services = limited
    train_project_1(client, services)
    tasks = [{"id": i + 1, "data": {"text": ["a superb film", "awful, terrible", "lovely"][i % 3]}} for i in range(10)]
    sizes: list[int] = []
    real_score = model.scoring.score

    def spy(estimator, strategy, X, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(X))
        return real_score(estimator, strategy, X, **kwargs)

    monkeypatch.setattr(model.scoring, "score", spy)
    chunked = client.post("/predict", json={"project": "1.1", "tasks": tasks}).get_json()
    assert sizes == [3, 3, 3, 1]
    services.settings.predict_batch_size = 100
    whole = client.post("/predict", json={"project": "1.1", "tasks": tasks}).get_json()
    assert sizes[4:] == [10]
    assert len(chunked["results"]) == len(whole["results"]) == 10
    # The same answers: labels and version exactly; scores up to float32 summation order, which a BLAS
    # may pick by batch shape (1e-9 here, far below anything an ordering or a threshold could notice).
    scores = [(r.pop("score"), w.pop("score")) for r, w in zip(chunked["results"], whole["results"], strict=True)]
    assert chunked == whole
    assert np.allclose([a for a, _ in scores], [b for _, b in scores], rtol=0, atol=1e-6)


def test_a_bad_task_in_a_later_batch_is_named_by_its_index(limited) -> None:
    client, services = limited
    train_project_1(client, services)
    tasks = [{"id": i + 1, "data": {"text": "fine"}} for i in range(7)] + [{"id": 8, "data": {}}]
    assert_named_4xx(client.post("/predict", json={"project": "1.1", "tasks": tasks}), 400, "tasks[7].data.text")


def test_stored_webhooks_are_trimmed_and_say_so(limited) -> None:
    client, services = limited
    hook = {"action": "TASKS_CREATED", "project": {"id": 1, "label_config": CONFIG, "title": "p"},
            "task": {"id": 5, "data": {"text": "y" * 5000}}, "note": "z" * 2500}
    assert client.post("/webhook", json=hook).status_code == 200
    (event,) = events(services)
    stored = event.payload
    assert stored["project"] == {"id": 1}  # the project object (config, stats) is reduced to its id
    assert stored["task"]["data"]["_trimmed"].startswith("over 4096 bytes")
    assert stored["note"].startswith("z" * STORED_STRING_CHARS) and stored["note"].endswith("characters trimmed]")
    assert stored["_trimmed"] == {"task_data": 1, "strings": 1}
    assert len(json.dumps(stored)) <= 8192


def test_a_webhook_too_big_to_store_keeps_its_action_and_ids(limited) -> None:
    client, services = limited
    hook = {"action": "ANNOTATIONS_CREATED", "project": {"id": 1}, "task": {"id": 5},
            "annotations": [{"id": i, "task": 5, "result": [{"from_name": "sentiment", "to_name": "text",
                                                             "type": "choices", "value": {"choices": ["pos"]}}]}
                            for i in range(150)]}
    resp = client.post("/webhook", json=hook)
    assert resp.status_code == 200 and resp.get_json()["labels"] == 150  # counted in full
    assert services.store.labels_since(1) == 150
    (event,) = events(services)
    stored = event.payload
    assert stored["action"] == "ANNOTATIONS_CREATED" and stored["project"] == {"id": 1}
    assert stored["task"] == {"id": 5} and "annotations" in stored["_keys"]
    assert stored["_trimmed"]["payload_bytes"] > 8192 and stored["_trimmed"]["list_items"] == 150 - STORED_LIST_ITEMS
    assert len(json.dumps(stored)) <= 1024


def test_trim_cleans_what_no_database_stores() -> None:
    out = trim({"action": "A", "text": "a\x00b\ud800", "list": list(range(STORED_LIST_ITEMS + 5))})
    assert out["text"] == "ab?" and len(out["list"]) == STORED_LIST_ITEMS
    assert out["_trimmed"] == {"list_items": 5}
    assert "_trimmed" not in trim({"action": "A", "project": {"id": 1, "label_config": CONFIG}})


def test_a_label_config_over_the_limit_is_refused(limited) -> None:
    client, _ = limited
    client.application.config["MAX_CONTENT_LENGTH"] = 4 * MAX_LABEL_CONFIG_CHARS
    huge = CONFIG.replace("</View>", " " * MAX_LABEL_CONFIG_CHARS + "</View>")
    body = assert_named_4xx(client.post("/setup", json={"project": "2.1", "schema": huge}), 400, "schema")
    assert f"at most {MAX_LABEL_CONFIG_CHARS}" in body["error"]

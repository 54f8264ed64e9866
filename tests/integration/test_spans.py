"""Span (NER) projects against a real Label Studio 1.23.2 and labelloop under gunicorn: a <Labels> project
connects, is pre-labelled with span regions Label Studio stores, /next serves the lowest score, webhooks
retrain, the history holds F1, a Data Manager view is auto-labelled; and a <Labels> + <Choices> project."""

from __future__ import annotations

import uuid

import pytest
import requests

from model.spans.synthetic import LABELS, make_documents
from tests.integration.test_loop import iterations, wait_for

pytestmark = pytest.mark.integration

CONFIG = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
          + "".join(f'<Label value="{label}"/>' for label in LABELS) + "</Labels></View>")
WITH_CHOICES = CONFIG.replace("</View>", '<Choices name="topic" toName="text"><Choice value="people"/>'
                                         '<Choice value="other"/></Choices></View>')


def regions(text: str, spans: list[dict]) -> list[dict]:
    return [{"from_name": "ner", "to_name": "text", "type": "labels",
             "value": {"start": s["start"], "end": s["end"], "text": text[s["start"]:s["end"]], "labels": [s["label"]]}}
            for s in spans]


def topic(spans: list[dict]) -> list[dict]:
    label = "people" if any(s["label"] == "PER" for s in spans) else "other"
    return [{"from_name": "topic", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def span_project(ls, config: str, n: int):
    texts, spans = make_documents(n, seed=11)
    project = ls.projects.create(title=f"spans-{uuid.uuid4().hex[:6]}", label_config=config)
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t in texts])
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    truth = dict(zip(texts, spans, strict=True))
    return project, tasks, {t.id: (t.data["text"], truth[t.data["text"]]) for t in tasks}


def finished(server, project_id: int, n: int):
    done = [i for i in iterations(server, project_id) if i["status"] in ("succeeded", "failed")]
    return done if len(done) >= n else None


def check_regions(results: list[dict], text: str) -> None:
    for r in results:
        value = r["value"]
        assert (r["type"], r["from_name"], r["to_name"]) == ("labels", "ner", "text"), r
        assert value["labels"][0] in LABELS and 0 <= value["start"] < value["end"] <= len(text)
        assert value["text"] == text[value["start"]:value["end"]] and 0.0 <= r["score"] <= 1.0


def test_a_span_project_is_prelabelled_ordered_retrained_and_autolabelled(label_studio,
                                                                          backend_server_factory) -> None:
    ls = label_studio.client()
    project, tasks, data = span_project(ls, CONFIG, 60)
    server = backend_server_factory({"LABELLOOP_RETRAIN_EVERY": "20", "LABELLOOP_TICK_SECONDS": "1"})
    ml = ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    assert ls.ml.get(id=ml.id).state == "CO"

    for t in tasks[:20]:
        ls.annotations.create(id=t.id, result=regions(*data[t.id]))
    first = wait_for(lambda: finished(server, project.id, 1), 240, "the first span round")[0]
    assert first["status"] == "succeeded", first["error"]
    assert first["strategy"] == "least_confidence" and first["labels_used"] == 20 and first["n_pool"] == 40
    if first["n_validation"]:
        evaluation = first["metrics"]["evaluation"]
        assert first["accuracy"] == evaluation["f1"] and "token_f1" in evaluation
        assert set(first["metrics"]["per_class"]) == set(LABELS)

    # Label Studio holds span regions of it-1 for every unlabelled task, with valid offsets and the config's names.
    preds = [p for p in ls.predictions.list(project=project.id) if p.model_version == "it-1"]
    assert {p.task for p in preds} == {t.id for t in tasks[20:]}
    for p in preds:
        check_regions(p.result, data[p.task][0])
    assert sum(len(p.result) for p in preds) > 40  # the synthetic texts hold several entities each
    lowest = min(preds, key=lambda p: p.score)
    nxt = requests.get(f"{label_studio.url}/api/projects/{project.id}/next", headers=label_studio.headers,
                       timeout=30)
    assert nxt.status_code == 200 and nxt.json()["id"] == lowest.task

    # Retraining from webhooks: 20 more labels queue it-2.
    for t in tasks[20:40]:
        ls.annotations.create(id=t.id, result=regions(*data[t.id]))
    second = wait_for(lambda: finished(server, project.id, 2), 240, "the second span round")[1]
    assert second["status"] == "succeeded", second["error"]
    assert second["labels_used"] == 40 and second["accuracy"] is not None and second["accuracy"] > 0.5

    # Auto-labelling a Data Manager view of the project: certified per span.
    view = ls.views.create(project=project.id, data={"title": "test set"})
    started = requests.post(f"{server.url}/projects/{project.id}/autolabel",
                            json={"view": view.id, "target_precision": 0.8, "create_view": False}, timeout=10)
    assert started.status_code == 202, started.text
    job_id = started.json()["job_id"]
    job = wait_for(lambda: (j := requests.get(f"{server.url}/jobs/{job_id}", timeout=10).json())["status"]
                   in ("succeeded", "failed") and j, 180, "the span auto-labelling job")
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert result["n_tasks"] == 60 and result["threshold_unit"] == "span" and result["n_spans"] > 0
    assert result["n_human_labelled"] == 40 and result["model_version"] == "it-2"


def test_labels_and_choices_on_one_text_are_both_prelabelled(label_studio, backend_server_factory) -> None:
    ls = label_studio.client()
    project, tasks, data = span_project(ls, WITH_CHOICES, 36)
    server = backend_server_factory({"LABELLOOP_RETRAIN_EVERY": "24", "LABELLOOP_TICK_SECONDS": "1"})
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    for t in tasks[:24]:
        text, spans = data[t.id]
        ls.annotations.create(id=t.id, result=regions(text, spans) + topic(spans))
    first = wait_for(lambda: finished(server, project.id, 1), 240, "the first round")[0]
    assert first["status"] == "succeeded", first["error"]
    preds = [p for p in ls.predictions.list(project=project.id) if p.model_version == "it-1"]
    assert {p.task for p in preds} == {t.id for t in tasks[24:]}
    for p in preds:
        kinds = [r["type"] for r in p.result]
        assert kinds.count("choices") == 1 and p.result[kinds.index("choices")]["value"]["choices"][0] in (
            "people", "other")
        check_regions([r for r in p.result if r["type"] == "labels"], data[p.task][0])
    assert any(r["type"] == "labels" for p in preds for r in p.result)

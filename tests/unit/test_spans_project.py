"""A <Labels> (span) project through the app with a fake Label Studio: the task type's JSON, a round,
the history's F1, /predict, auto-labelling, and a <Labels> + <Choices> project."""

from __future__ import annotations

from typing import Any

import pytest

from backend.config import ProjectPolicy, Settings
from backend.errors import BadInput
from backend.labelstudio.families import family_of
from backend.labelstudio.labelconfig import parse_label_config
from backend.service.autolabel import AutolabelRequest, run_autolabel
from backend.web.app import create_app
from model.spans.synthetic import LABELS, make_documents
from tests.unit.test_app import FakeGateway

CONFIG = ('<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
          + "".join(f'<Label value="{label}"/>' for label in LABELS) + "</Labels></View>")
WITH_CHOICES = CONFIG.replace("</View>", '<Choices name="topic" toName="text"><Choice value="people"/>'
                                         '<Choice value="places"/></Choices></View>')


def region(text: str, span: dict[str, Any], name: str = "ner") -> dict[str, Any]:
    return {"from_name": name, "to_name": "text", "type": "labels",
            "value": {"start": span["start"], "end": span["end"], "text": text[span["start"]:span["end"]],
                      "labels": [span["label"]]}}


def span_tasks(n_labelled: int, n_pool: int, topic: bool = False) -> list[dict[str, Any]]:
    texts, spans = make_documents(n_labelled + n_pool, seed=3)
    tasks = []
    for i, (text, doc) in enumerate(zip(texts, spans, strict=True)):
        task: dict[str, Any] = {"id": 300 + i, "data": {"text": text}, "annotations": []}
        if i < n_labelled:
            result = [region(text, s) for s in doc]
            if topic:
                label = "people" if sum(s["label"] == "PER" for s in doc) >= 1 else "places"
                result.append({"from_name": "topic", "to_name": "text", "type": "choices",
                               "value": {"choices": [label]}})
            task["annotations"] = [{"id": 3000 + i, "result": result}]
        tasks.append(task)
    return tasks


class SpanGateway(FakeGateway):
    def __init__(self, tasks: list[dict[str, Any]], config: str) -> None:
        super().__init__(tasks)
        self.config = config

    def label_config(self, project_id: int, timeout: float | None = None) -> str:
        return self.config


@pytest.fixture
def span_app(tmp_path):
    settings = Settings(model_dir=tmp_path / "models", database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                        policy=ProjectPolicy(retrain_every=1000, validation_fraction=0.3),
                        label_studio_url="http://label-studio.invalid", label_studio_api_key="x" * 40)
    app = create_app(settings, start_jobs=False, migrate=True)
    services = app.extensions["labelloop"]
    yield app.test_client(), services
    services.stop()
    services.store.dispose()


def run_round(client, services, gateway, config: str) -> Any:
    services.gateway_for = lambda project: gateway
    assert client.post("/setup", json={"project": "1.1", "schema": config}).status_code == 200
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    it = services.store.iterations(1)[-1]
    assert it.status == "succeeded", it.error
    return it


def test_a_labels_config_is_the_spans_family() -> None:
    spec = parse_label_config(CONFIG.replace('value="$text"/>', 'value="$text" granularity="word"/>'))
    assert family_of(spec).name == "spans" and spec.labels == LABELS and spec.granularity == "word"
    assert family_of(parse_label_config(WITH_CHOICES)).name == "multi"


def test_annotation_regions_become_spans_and_bad_ones_are_named() -> None:
    spec = parse_label_config(CONFIG)
    text = "Ada met Bob in Oslo"
    annotation = {"result": [region(text, {"start": 8, "end": 11, "label": "PER"}),
                             region(text, {"start": 0, "end": 3, "label": "PER"}),
                             {"from_name": "ner", "to_name": "text", "type": "labels",
                              "value": {"start": 15, "end": 19, "labels": ["LOC", "ORG"]}}]}
    assert spec.target(annotation) == [{"start": 0, "end": 3, "label": "PER"}, {"start": 8, "end": 11, "label": "PER"},
                                       {"start": 15, "end": 19, "label": "LOC"},
                                       {"start": 15, "end": 19, "label": "ORG"}]
    assert spec.target({"result": []}) == []  # submitted without spans: "no entity here"
    bad = [({"start": 3, "end": 3, "labels": ["PER"]}, "value.start"), ({"start": 0, "end": 3, "labels": ["X"]},
           "value.labels"), ({"start": "0", "end": 3, "labels": ["PER"]}, "value.start"),
           ({"start": 0, "end": 3}, "value.labels")]
    for value, field in bad:
        with pytest.raises(BadInput) as info:
            spec.target({"result": [{"from_name": "ner", "type": "labels", "value": value}]})
        assert info.value.field == f"annotation.result[0].{field}"


def test_a_span_round_pushes_regions_and_records_f1_with_an_interval(span_app) -> None:
    client, services = span_app
    gateway = SpanGateway(span_tasks(40, 12), CONFIG)
    it = run_round(client, services, gateway, CONFIG)
    evaluation = it.metrics["evaluation"]
    assert it.accuracy == evaluation["f1"] and 0.5 < it.accuracy <= 1.0 and "token_f1" in evaluation
    assert evaluation["accuracy_low"] <= it.accuracy <= evaluation["accuracy_high"]
    assert set(it.metrics["per_class"]) == set(LABELS) and it.strategy == "least_confidence"
    assert set(it.metrics["validation"]["rows"]) == {"task", "score", "correct", "n_truth"}
    texts = {t["id"]: t["data"]["text"] for t in gateway.tasks}
    assert sorted(p["task"] for p in gateway.pushed) == list(range(340, 352))
    for p in gateway.pushed:
        assert 0.0 <= p["score"] <= 1.0
        for r in p["result"]:
            value = r["value"]
            assert r["type"] == "labels" and r["from_name"] == "ner" and value["labels"][0] in LABELS
            assert 0 <= value["start"] < value["end"] <= len(texts[p["task"]])
            assert value["text"] == texts[p["task"]][value["start"]:value["end"]] and 0.0 <= r["score"] <= 1.0
    assert any(p["result"] for p in gateway.pushed)
    # /predict: a pool task from its round's row, a new text computed.
    new = {"id": 999, "data": {"text": "Alice Johnson flew to Lima on June 3, 2021."}}
    body = client.post("/predict", json={"project": "1.1", "tasks": [gateway.tasks[-1], new]}).get_json()
    assert body["model_version"] == it.version and len(body["results"]) == 2
    pushed = next(p for p in gateway.pushed if p["task"] == gateway.tasks[-1]["id"])
    assert body["results"][0]["result"] == pushed["result"] and body["results"][0]["score"] == pushed["score"]
    assert {r["value"]["text"] for r in body["results"][1]["result"]} >= {"Alice Johnson", "Lima"}


def test_auto_labelling_spans_certifies_per_span(span_app) -> None:
    client, services = span_app
    gateway = SpanGateway(span_tasks(40, 12), CONFIG)
    it = run_round(client, services, gateway, CONFIG)
    outcome = run_autolabel(AutolabelRequest(project_id=1, target_precision=0.8, create_view=False),
                            store=services.store, models=services.models, gateway_for=lambda p: gateway)
    assert outcome["threshold_unit"] == "span" and outcome["n_spans"] > 0 and outcome["n_crossfit_rows"] == 0
    assert outcome["n_threshold_rows"] == len(it.metrics["validation"]["rows"]["score"])
    assert 0.0 <= outcome["span_coverage"] <= 1.0 and outcome["n_predicted"] == 52


def test_labels_and_choices_on_one_text_get_a_model_each(span_app) -> None:
    client, services = span_app
    gateway = SpanGateway(span_tasks(40, 10, topic=True), WITH_CHOICES)
    it = run_round(client, services, gateway, WITH_CHOICES)
    assert {k.split(".")[0] for k in it.metrics["evaluation"] if "." in k} == {"ner", "topic"}
    pushed = gateway.pushed[0]
    kinds = {r["from_name"]: r["type"] for r in pushed["result"]}
    assert kinds.get("topic") == "choices" and set(kinds.values()) <= {"choices", "labels"}
    assert any(r["type"] == "labels" for p in gateway.pushed for r in p["result"])


def test_spans_off_token_boundaries_are_counted_and_reported_by_task(span_app) -> None:
    client, services = span_app
    tasks = span_tasks(40, 4)
    first = tasks[0]
    text = first["data"]["text"]
    cut = first["annotations"][0]["result"][0]["value"]
    inside = {"start": cut["start"] + 1, "end": cut["end"], "label": cut["labels"][0]}  # starts inside a word
    first["annotations"][0]["result"][0] = region(text, inside)
    it = run_round(client, services, SpanGateway(tasks, CONFIG), CONFIG)
    report = it.metrics["misaligned_spans"]
    assert report["count"] >= 1 and report["snapped"] >= 1
    assert {"task_id": first["id"], "start": inside["start"], "end": inside["end"], "label": inside["label"],
            "reason": "start_inside_token", "snapped": True} in report["first"]


USER_TAGGER = '''
"""A team's own tagger: a gazetteer of the spans it saw (a stand-in for a spaCy or flair model)."""
import re


class Gazetteer:
    def __init__(self):
        self.names = {}

    def fit(self, texts, spans):
        for text, doc in zip(texts, spans):
            for s in doc:
                self.names[text[s["start"]:s["end"]]] = s["label"]
        return self

    def predict(self, texts):
        out = []
        for text in texts:
            found = []
            for name, label in sorted(self.names.items(), key=lambda kv: -len(kv[0])):
                for m in re.finditer(re.escape(name), text):
                    if not any(f["start"] < m.end() and m.start() < f["end"] for f in found):
                        found.append({"start": m.start(), "end": m.end(), "label": label, "score": 0.9})
            out.append(sorted(found, key=lambda f: f["start"]))
        return out


def make():
    return Gazetteer()


class Scorer:
    def fit(self, texts, spans):
        return self

    def predict_proba(self, texts):
        return [[1.0] for _ in texts]


def classifier():
    return Scorer()
'''


def test_a_bring_your_own_tagger_serves_a_span_project(tmp_path) -> None:
    path = tmp_path / "tagger.py"
    path.write_text(USER_TAGGER)
    spec = f"{path}:make"
    settings = Settings(model_dir=tmp_path / "models", database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                        policy=ProjectPolicy(retrain_every=1000, validation_fraction=0.3),
                        label_studio_url="http://label-studio.invalid", label_studio_api_key="x" * 40,
                        custom_models=[spec, f"{path}:classifier"])
    app = create_app(settings, start_jobs=False, migrate=True)
    services, client = app.extensions["labelloop"], app.test_client()
    try:
        gateway = SpanGateway(span_tasks(40, 12), CONFIG)
        services.gateway_for = lambda project: gateway
        refused = client.post("/setup", json={"project": "1.1", "schema": CONFIG,
                                              "extra_params": {"model": f"{path}:classifier"}})
        assert refused.status_code == 422 and "a span tagger is expected" in refused.get_json()["error"]
        resp = client.post("/setup", json={"project": "1.1", "schema": CONFIG,
                                           "extra_params": {"model": spec, "trusted_types": ["Gazetteer"]}})
        assert resp.status_code == 200, resp.get_json()
        services.jobs.trigger(1, "START_TRAINING", background=False)
        services.jobs.drain(1)
        (it,) = services.store.iterations(1)
        assert it.status == "succeeded", it.error
        assert it.model == spec and it.accuracy is not None
        regions = [r for p in gateway.pushed for r in p["result"]]
        assert regions and all(r["type"] == "labels" and r["score"] == 0.9 for r in regions)
        body = client.post("/predict", json={"project": "1.1", "tasks": [
            {"id": 999, "data": {"text": gateway.tasks[0]["data"]["text"]}}]}).get_json()
        assert body["model_version"] == it.version and body["results"][0]["result"]
    finally:
        services.stop()
        services.store.dispose()

"""Bring your own model: a user's scikit-learn classifier from a file gets every labelloop feature."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from backend.config import ProjectPolicy, Settings
from backend.web.app import create_app
from model.custom import BringYourOwn, FactoryError, load_factory, make_user_estimator, private_module_name
from model.scoring import order, score
from tests.unit.test_app import FakeGateway, make_tasks, setup_project, wait_for_iteration, wait_for_job

PIPELINE = """
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


def make(random_state=None):
    return make_pipeline(TfidfVectorizer(), LogisticRegression(random_state=random_state))


def broken():
    raise RuntimeError("no GPU here")


def not_a_classifier():
    return object()
"""


@pytest.fixture
def user_file(tmp_path) -> Path:
    path = tmp_path / "model.py"  # the name our own package has: must not shadow it
    path.write_text(textwrap.dedent(PIPELINE))
    return path


def test_user_file_loads_privately_and_never_shadows_our_model_package(user_file, tmp_path) -> None:
    factory, module_name = load_factory(f"{user_file}:make")
    assert module_name == private_module_name(user_file) and module_name.startswith("labelloop_custom.")
    assert sys.modules["model"].__file__ != str(user_file)  # `import model` is still ours
    other = tmp_path / "other" / "model.py"
    other.parent.mkdir()
    other.write_text("def make():\n    return None\n")
    assert load_factory(f"{other}:make")[1] != module_name  # same file name, different module


@pytest.mark.parametrize(
    ("suffix", "needle"),
    [(":missing", "has no function 'missing'"), (":broken", "RuntimeError: no GPU here"),
     (":not_a_classifier", "fit / predict_proba")],
)
def test_factory_problems_are_named(user_file, suffix: str, needle: str) -> None:
    with pytest.raises(FactoryError) as info:
        make_user_estimator(f"{user_file}{suffix}")
    assert needle in str(info.value)


def test_missing_file_and_bad_spec_are_named(tmp_path) -> None:
    with pytest.raises(FactoryError, match="does not exist"):
        load_factory(f"{tmp_path / 'nope.py'}:make")
    with pytest.raises(FactoryError, match="expected 'path/to/file.py:function'"):
        load_factory("just-a-name")


def test_wrapper_orders_columns_like_the_config_and_works_with_the_kernel(user_file) -> None:
    texts = ["a great film", "a lovely film", "an awful film", "a terrible film"] * 3
    labels = ["pos", "pos", "neg", "neg"] * 3
    clf = BringYourOwn(factory=f"{user_file}:make", classes=["neg", "meh", "pos"], random_state=0)
    clf.fit(texts, labels)
    proba = clf.predict_proba(["a great and lovely film", "awful"])
    assert proba.shape == (2, 3) and np.allclose(proba[:, 1], 0.0)  # "meh" was never seen
    assert np.allclose(proba.sum(axis=1), 1.0)
    scored = score(clf, "margin", ["a great and lovely film", "an awful film"], with_features=True)
    assert scored.labels == [["pos"], ["neg"]]
    assert scored.features.shape == (2, 3)  # no transform on the pipeline: probability space
    queued = order("cluster", scored, random_state=0)
    assert sorted(queued.order.tolist()) == [0, 1]
    with pytest.raises(FactoryError, match="predict_proba_samples"):
        clf.predict_proba_samples(texts)


@pytest.fixture
def byo_app(tmp_path, user_file):
    spec = f"{user_file}:make"
    settings = Settings(model_dir=tmp_path / "models", database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                        policy=ProjectPolicy(retrain_every=3, validation_fraction=0.25),
                        label_studio_url="http://label-studio.invalid", label_studio_api_key="x" * 40,
                        custom_models=[spec])
    app = create_app(settings, start_jobs=False, migrate=True)
    services = app.extensions["labelloop"]
    gateway = FakeGateway(make_tasks(40, 20))
    services.gateway_for = lambda project: gateway
    yield app.test_client(), services, gateway, spec
    services.stop()
    services.store.dispose()


def test_setup_refuses_factories_the_operator_did_not_allow_or_that_fail(byo_app, user_file) -> None:
    client, _, _, _ = byo_app
    resp = setup_project(client, extra_params={"model": f"{user_file}:broken"})
    assert resp.status_code == 403 and resp.get_json()["field"] == "extra_params.model"
    assert "LABELLOOP_CUSTOM_MODELS" in resp.get_json()["error"]
    resp = setup_project(client, extra_params={"model": f"{user_file}:make", "strategy": "bald"})
    assert resp.status_code == 422 and "predict_proba_samples" in resp.get_json()["error"]


def test_a_user_model_trains_predicts_queues_and_autolabels(byo_app) -> None:
    client, services, gateway, spec = byo_app
    assert setup_project(client, extra_params={"model": spec}).status_code == 200
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    it = wait_for_iteration(services, 1, 1)
    assert it.status == "succeeded", it.error
    assert it.n_pool == 20 and it.accuracy is not None
    assert len(gateway.pushed) == 20 and {p["model_version"] for p in gateway.pushed} == {"it-1"}
    resp = client.post("/predict", json={"project": "1.1", "tasks": [{"id": 1, "data": {"text": "a superb film"}}]})
    body = resp.get_json()
    assert resp.status_code == 200 and body["model_version"] == "it-1"
    assert body["results"][0]["result"][0]["value"]["choices"] == ["pos"]
    started = client.post("/projects/1/autolabel", json={"target_precision": 0.5})
    job = wait_for_job(client, started.get_json()["job_id"])
    assert job["status"] == "succeeded", job["error"]


def test_simulate_runs_a_user_model_against_random(user_file, tmp_path) -> None:
    from backend.cli.main import main
    from tests.support.corpus import LABELS, TEXTS

    data = tmp_path / "data.jsonl"
    rows = [{"text": t, "label": y} for t, y in zip(TEXTS * 4, LABELS * 4, strict=True)]
    data.write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "curve.json"
    code = main(["simulate", "--data", str(data), "--strategies", "margin+greedy", "--initial", "6",
                 "--batch-size", "6", "--budget", "24", "--seeds", "2", "--model-param", f"model={user_file}:make",
                 "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["config"]["model_params"]["model"] == f"{user_file}:make"
    assert set(report["strategies"]) >= {"margin+greedy", "random"}
    assert main(["simulate", "--data", str(data), "--budget", "24", "--initial", "6", "--batch-size", "6",
                 "--model-param", f"model={user_file}:broken"]) != 0


CUSTOM_CLASS = """
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline


class Shout(BaseEstimator, TransformerMixin):
    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return [str(x).upper() for x in X]


def make():
    return make_pipeline(Shout(), TfidfVectorizer(lowercase=False), LogisticRegression())
"""


def test_a_user_class_must_be_declared_trusted_before_it_is_stored(byo_app, tmp_path) -> None:
    client, services, _, _ = byo_app
    path = tmp_path / "shout.py"
    path.write_text(CUSTOM_CLASS)
    spec = f"{path}:make"
    services.settings.custom_models.append(spec)
    assert setup_project(client, extra_params={"model": spec}).status_code == 200
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    failed = wait_for_iteration(services, 1, 1)
    assert failed.status == "failed" and "Shout" in failed.error and "trusted_types" in failed.error
    assert services.store.serving_state(1).version is None  # nothing half-trusted serves

    # Another project that declares the class (a bare name: defined in the model's own file).
    resp = setup_project(client, project="2.1", extra_params={"model": spec, "trusted_types": ["Shout"]})
    assert resp.status_code == 200, resp.get_json()
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 2}})
    it = wait_for_iteration(services, 2, 1)
    assert it.status == "succeeded", it.error
    services.models._cache.clear()  # a fresh worker: load from the stored bytes
    body = client.post("/predict", json={"project": "2.1", "tasks": [{"id": 1, "data": {"text": "superb"}}]})
    assert body.status_code == 200 and body.get_json()["model_version"] == "it-1"

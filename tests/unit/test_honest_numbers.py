"""Numbers a team can believe: every accuracy comes with its validation size and an interval, and no
difficulty bucket is shown before the validation split can fit one."""

from __future__ import annotations

import numpy as np
import pytest

from backend.service.serializers import iteration_json
from backend.service.training import difficulty_of
from model.difficulty import DEFAULT_THRESHOLDS, DifficultyThresholds, bucket_counts
from model.evaluation import bootstrap_interval, proportion_interval
from tests.unit.test_app import setup_project


def test_the_wilson_interval_of_a_tiny_validation_split_is_wide() -> None:
    assert proportion_interval(0, 0) is None
    low, high = proportion_interval(1, 1)
    assert low == pytest.approx(0.2065, abs=1e-4) and high == 1.0
    low, high = proportion_interval(2, 6)
    assert low < 0.1 and high > 0.69
    low, high = proportion_interval(400, 500)
    assert 0.76 < low < 0.8 < high < 0.84


def test_a_bootstrap_interval_covers_the_metric_and_skips_undefined_resamples() -> None:
    values = np.array([0.0, 1.0] * 50)
    low, high = bootstrap_interval(lambda idx: float(values[idx].mean()), len(values))
    assert low < 0.5 < high and high - low < 0.3
    assert bootstrap_interval(lambda idx: None, 10) is None


def test_no_difficulty_before_the_thresholds_are_fitted() -> None:
    u = np.array([0.05, 0.5, 0.9])
    assert list(difficulty_of(u, DEFAULT_THRESHOLDS)) == ["unrated"] * 3
    fitted = DifficultyThresholds(0.2, 0.6, "validation")
    assert list(difficulty_of(u, fitted)) == ["easy", "medium", "hard"]
    assert bucket_counts(difficulty_of(u, DEFAULT_THRESHOLDS)) == {"easy": 0, "medium": 0, "hard": 0, "unrated": 3}


def test_a_round_records_the_interval_and_leaves_a_small_pool_unrated(app_env) -> None:
    client, services, _ = app_env
    assert setup_project(client, extra_params={"strategy": "margin"}).status_code == 200
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (it,) = services.store.iterations(1)
    assert it.status == "succeeded", it.error
    body = iteration_json(it)
    low, high = body["accuracy_interval"]
    assert 0.0 <= low <= it.accuracy <= high <= 1.0 and high - low > 0.2  # a handful of validation tasks
    assert body["n_validation"] < 20 and it.metrics["difficulty"]["rated"] is False
    assert it.metrics["difficulty"]["counts"]["unrated"] == it.n_pool


def test_each_region_carries_the_probability_of_its_label_and_the_task_score_orders(app_env) -> None:
    """Label Studio shows a region's score as its confidence: that is the shown label's probability; the
    task-level score is the queue's order (lower first), the same as before."""
    client, services, gateway = app_env
    assert setup_project(client, extra_params={"strategy": "margin"}).status_code == 200
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (it,) = services.store.iterations(1)
    rows = {r.task_id: r for r in services.store.task_scores(it.id)}
    for pushed in gateway.pushed:
        row = rows[pushed["task"]]
        (region,) = pushed["result"]
        assert region["score"] == pytest.approx(row.confidence, abs=1e-4) and 0.5 <= region["score"] <= 1.0
        assert pushed["score"] == pytest.approx(row.score)
    pool_task = gateway.tasks[-1]
    unseen = {"id": 5000, "data": {"text": "a superb film, really superb"}}
    answered = client.post("/predict", json={"project": "1.1", "tasks": [pool_task, unseen]}).get_json()["results"]
    assert answered[0]["result"][0]["score"] == pytest.approx(rows[pool_task["id"]].confidence, abs=1e-4)
    assert 0.5 <= answered[1]["result"][0]["score"] <= 1.0 and answered[1]["result"][0]["value"]["choices"] == ["pos"]


def test_the_shown_temperature_softens_an_overconfident_model_and_never_sharpens() -> None:
    from model.calibration import shown_confidence, shown_temperature

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, 200)
    right = rng.random(200) < 0.6  # right 60 % of the time ...
    guess = np.where(right, truth, (truth + 1) % 4)
    sure = np.full((200, 4), 0.01)
    sure[np.arange(200), guess] = 0.97  # ... and 97 % sure every time
    t = shown_temperature(sure, truth)
    assert t > 1.5 and abs(float(shown_confidence(sure, t).mean()) - 0.6) < 0.1
    timid = np.full((200, 4), 0.2)
    timid[np.arange(200), truth] = 0.4  # always right, 40 % sure: shown as it is, not sharpened
    assert shown_temperature(timid, truth) == pytest.approx(1.0, abs=1e-3)
    assert shown_temperature(sure[:3], truth[:3]) == 1.0  # too few rows: nothing fitted
    assert np.array_equal(shown_confidence(sure, 1.0), sure.max(axis=1))


def test_a_round_fits_what_is_shown_on_its_validation_split(app_env) -> None:
    client, services, gateway = app_env
    assert setup_project(client, extra_params={"strategy": "bald"}).status_code == 200
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (it,) = services.store.iterations(1)
    assert it.status == "succeeded", it.error
    t = it.metrics["shown_temperature"]
    assert 1.0 <= t <= 20.0
    estimator = services.models.load(1, it.version, it.id)
    assert estimator.shown_temperature_ == pytest.approx(t, abs=1e-4)  # /predict shows the same
    rows = {r.task_id: r for r in services.store.task_scores(it.id)}
    from model.scoring import score
    texts = [task["data"]["text"] for task in gateway.tasks if task["id"] in rows]
    ids = [task["id"] for task in gateway.tasks if task["id"] in rows]
    scored = score(estimator, "bald", texts)
    assert np.allclose([rows[i].confidence for i in ids], scored.display, atol=1e-5)
    assert (scored.display <= scored.decision + 1e-9).all()  # softened, never sharpened

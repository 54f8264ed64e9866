"""The served version is scored with what made it (strategy, model kind), not with the live policy."""

from __future__ import annotations

from tests.unit.test_app import setup_project


def test_a_policy_change_at_setup_does_not_change_how_the_served_version_scores(app_env) -> None:
    client, services, gateway = app_env
    assert setup_project(client, extra_params={"strategy": "margin", "model": "logreg"}).status_code == 200
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (it,) = services.store.iterations(1)
    assert it.status == "succeeded", it.error
    assert (it.strategy, it.model, it.trusted_types) == ("margin", "logreg", [])
    unseen = {"id": 5000, "data": {"text": "a great film, really dull"}}
    before = client.post("/predict", json={"project": "1.1", "tasks": [unseen]}).get_json()["results"][0]["score"]

    # The project now asks for BALD on an MLP; the serving logistic model cannot give BALD's samples
    # (it would score every unseen task as certain: score 1.0). Label Studio vouches for the token.
    services.verify_token = lambda url, token, project_id: True
    assert setup_project(client, extra_params={"strategy": "bald", "model": "auto"}).status_code == 200
    assert services.store.get_project(1).rules.strategy == "bald"
    state = services.store.serving_state(1)
    assert (state.strategy, state.model, state.version) == ("margin", "logreg", it.version)
    after = client.post("/predict", json={"project": "1.1", "tasks": [unseen]}).get_json()["results"][0]["score"]
    assert after == before < 1.0

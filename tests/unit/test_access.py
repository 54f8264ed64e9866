"""Who may re-point a project, change its policy or create rows: `/setup` and the operator routes."""

from __future__ import annotations

import pytest

from backend.config import Settings
from backend.service.access import origin
from backend.web.app import OPERATOR_HEADER, create_app
from tests.unit.test_app import CONFIG

LS = "http://ls.example:8080"
OTHER_CONFIG = CONFIG.replace('<Choice value="neg"/>', '<Choice value="neg"/><Choice value="meh"/>')


@pytest.fixture
def open_app(tmp_path):
    """No Label Studio in the environment: /setup brings it (the default set-up); no basic auth."""
    settings = Settings(model_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                        operator_token="op-secret", max_projects=3)
    app = create_app(settings, start_jobs=False, migrate=True)
    services = app.extensions["labelloop"]
    accepted = {(LS, "real-token"), (LS, "rotated-token")}
    checks: list[tuple[str, str, int]] = []

    def verify(url: str, token: str, project_id: int) -> bool:
        checks.append((url, token, project_id))
        return (url, token) in accepted

    services.verify_token = verify
    # No Label Studio answers at ls.example: the live connection check /setup makes is tested in
    # tests/unit/test_setup_errors.py and against a real Label Studio.
    services.setup_problem = lambda project_id: None
    yield app.test_client(), services, checks
    services.store.dispose()


def setup(client, hostname: str = LS, token: str | None = "real-token", project: str = "7.1", headers=None, **extra):
    body = {"project": project, "schema": CONFIG, "hostname": hostname, **extra}
    if token is not None:
        body["access_token"] = token
    return client.post("/setup", json=body, headers=headers or {})


def test_origin_normalises_scheme_host_and_default_port() -> None:
    assert origin("HTTP://LS.Example/") == origin("http://ls.example:80/x") == "http://ls.example:80"
    assert origin("https://ls.example") == "https://ls.example:443"
    assert origin("http://ls.example:8080") != origin("http://ls.example:8081")
    assert origin(None) is None and origin("") is None


def test_second_setup_cannot_repoint_the_project_and_the_token_stays_home(open_app) -> None:
    client, services, _ = open_app
    assert setup(client).status_code == 200
    resp = setup(client, hostname="http://attacker.example:8080", token=None)
    assert resp.status_code == 403 and resp.get_json()["field"] == "hostname"
    assert "LABELLOOP_OPERATOR_TOKEN" in resp.get_json()["error"]
    project = services.store.get_project(7)
    assert (project.label_studio_url, project.label_studio_token) == (LS, "real-token")
    # The gateway a round would use still points home, with the stored token.
    assert services.gateway_for(project).url == LS


def test_operator_can_repoint_but_only_with_the_new_hosts_token(open_app) -> None:
    client, services, _ = open_app
    setup(client)
    op = {OPERATOR_HEADER: "op-secret"}
    resp = setup(client, hostname="http://ls2.example", token=None, headers=op)
    assert resp.status_code == 403 and resp.get_json()["field"] == "access_token"
    assert setup(client, hostname="http://ls2.example", token="t2", headers=op).status_code == 200
    project = services.store.get_project(7)
    assert (project.label_studio_url, project.label_studio_token) == ("http://ls2.example", "t2")


def test_policy_and_schema_change_only_with_proof(open_app) -> None:
    client, services, checks = open_app
    setup(client)
    resp = setup(client, token=None, extra_params={"strategy": "entropy"})
    assert resp.status_code == 403 and resp.get_json()["field"] == "extra_params"
    resp = setup(client, token="guess", extra_params={"strategy": "entropy"})
    assert resp.status_code == 403 and resp.get_json()["field"] == "access_token"
    assert services.store.get_project(7).rules.strategy == "auto"
    assert checks == [(LS, "guess", 7)]  # the unknown token was checked with Label Studio, once
    # Label Studio itself sends the stored token: accepted without a round trip.
    assert setup(client, extra_params={"strategy": "entropy"}).status_code == 200
    assert services.store.get_project(7).rules.strategy == "entropy"
    resp = client.post("/setup", json={"project": "7.1", "schema": OTHER_CONFIG})
    assert resp.status_code == 403 and resp.get_json()["field"] == "schema"
    assert services.store.get_project(7).label_config == CONFIG
    # A repeated /setup that changes nothing needs no proof (Label Studio sends one on every refresh).
    assert client.post("/setup", json={"project": "7.1", "schema": CONFIG}).status_code == 200


def test_a_rotated_token_is_stored_once_label_studio_accepts_it(open_app) -> None:
    client, services, _ = open_app
    setup(client)
    assert setup(client, token="rotated-token").status_code == 200
    assert services.store.get_project(7).label_studio_token == "rotated-token"


def test_operator_routes_need_the_operator_token(open_app) -> None:
    client, _, _ = open_app
    setup(client)
    assert client.get("/projects/7/iterations").status_code == 401
    assert client.get("/projects/7/iterations", headers={OPERATOR_HEADER: "wrong"}).status_code == 401
    assert client.get("/projects/7/iterations", headers={OPERATOR_HEADER: "op-secret"}).status_code == 200
    assert client.post("/projects/7/autolabel", json={}).status_code == 401
    assert client.get("/jobs/nope").status_code == 401
    assert client.get("/health").status_code == 200  # Label Studio's routes stay as they are


def test_new_project_rows_are_capped(open_app) -> None:
    client, services, _ = open_app
    for n in (1, 2, 3):
        assert setup(client, project=f"{n}.1").status_code == 200
    resp = client.post("/predict", json={"project": "4.1", "tasks": [{"id": 1, "data": {"text": "x"}}]})
    assert resp.status_code == 403 and resp.get_json()["field"] == "project"
    resp = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 5}})
    assert resp.status_code == 403
    assert setup(client, project="1.1").status_code == 200  # known projects are unaffected
    assert services.store.count_projects() == 3

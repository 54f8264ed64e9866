"""Errors where the user looks: /setup checks the Label Studio URL and key labelloop will use, and the last
round, and refuses with a message Label Studio shows (its connection dialog only shows the reason phrase)."""

from __future__ import annotations

import httpx
import pytest
from label_studio_sdk.core.api_error import ApiError

from backend.labelstudio.diagnosis import Problem, diagnose
from backend.labelstudio.gateway import LabelStudioError
from backend.web.protocol import reason_phrase
from tests.unit.test_app import CONFIG, FakeGateway, make_tasks, setup_project


class RefusingGateway(FakeGateway):
    """Label Studio answering every read with ``error`` (a 401, a connection refused...)."""

    def __init__(self, tasks, error: Exception) -> None:
        super().__init__(tasks)
        self.error: Exception | None = error

    def label_config(self, project_id: int, timeout: float | None = None) -> str:
        if self.error is not None:
            raise LabelStudioError(f"reading project {project_id} failed: {self.error}") from self.error
        return CONFIG

    def labelled_tasks(self, project_id: int):
        if self.error is not None:
            raise LabelStudioError("reading the export failed") from self.error
        return super().labelled_tasks(project_id)


def use(services, gateway) -> None:
    services.gateway_for = lambda project: gateway
    services._problems.clear()  # noqa: SLF001 - the tests change Label Studio between /setup calls


def test_a_refused_key_is_answered_to_label_studio_with_the_fix(app_env) -> None:
    client, services, _ = app_env
    use(services, RefusingGateway(make_tasks(24, 10), ApiError(status_code=401, body={"detail": "Invalid token."})))
    resp = setup_project(client)
    assert resp.status_code == 424
    body = resp.get_json()
    assert body["field"] == "label_studio_api_key"
    assert "refused labelloop's API key (401 from LABEL_STUDIO_API_KEY)" in body["error"]
    assert "Account & Settings" in body["error"]
    # Label Studio keeps only str(HTTPError): "424 Client Error: <reason phrase> for url: ...".
    assert resp.status.startswith("424 Label Studio at http://label-studio.invalid refused labelloop's API key")


def test_an_unreachable_label_studio_names_label_studio_url(app_env) -> None:
    client, services, _ = app_env
    use(services, RefusingGateway(make_tasks(24, 10), httpx.ConnectError("[Errno 111] Connection refused")))
    resp = setup_project(client)
    assert resp.status_code == 424 and resp.get_json()["field"] == "label_studio_url"
    assert "cannot reach Label Studio" in resp.get_json()["error"] and "LABEL_STUDIO_URL" in resp.status


def test_a_slow_label_studio_is_not_refused(app_env) -> None:
    client, services, _ = app_env
    use(services, RefusingGateway(make_tasks(24, 10), httpx.ReadTimeout("timed out")))
    assert setup_project(client).status_code == 200


def test_a_round_that_failed_for_a_fixable_reason_is_shown_until_a_round_succeeds(app_env) -> None:
    client, services, _ = app_env
    gateway = RefusingGateway(make_tasks(24, 10), None)  # type: ignore[arg-type]
    use(services, gateway)
    assert setup_project(client).status_code == 200
    # The round's reads are refused (say a worker elsewhere has an old key), Label Studio still answers /setup.
    gateway.error = ApiError(status_code=401, body={"detail": "Invalid token."})
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (failed,) = services.store.iterations(1)
    assert failed.status == "failed" and "Fix: set LABEL_STUDIO_API_KEY" in failed.error
    assert failed.metrics["failure"]["kind"] == "auth"
    gateway.error = None
    use(services, gateway)
    resp = setup_project(client)
    assert resp.status_code == 424
    assert resp.get_json()["error"].startswith(f"the last training round ({failed.version}) failed: Label Studio")
    assert "press Start training" in resp.get_json()["error"]
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    assert services.store.iterations(1)[-1].status == "succeeded"
    use(services, gateway)
    assert setup_project(client).status_code == 200


def test_a_refused_version_is_a_fixable_failure(app_env) -> None:
    client, services, gateway = app_env
    assert setup_project(client).status_code == 200

    def refuse(project_id: int, version: str, uncertainty_sampling: bool) -> None:
        raise LabelStudioError("setting the model version failed") from ApiError(status_code=400, body={
            "model_version": ["Model version doesn't exist either as live model or as static predictions."]})

    gateway.publish_version = refuse
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    (it,) = services.store.iterations(1)
    assert it.status == "failed" and it.metrics["failure"]["kind"] == "refused"
    assert "refused model version it-1" in it.error


def test_an_extra_params_typo_names_the_valid_keys(app_env) -> None:
    client, _, _ = app_env
    resp = setup_project(client, extra_params={"retrain_evry": 5})
    body = resp.get_json()
    assert resp.status_code == 400 and body["field"] == "extra_params.retrain_evry"
    assert "retrain_every" in body["error"] and "strategy" in body["error"]
    assert "retrain_every" in resp.status  # Label Studio's dialog shows the reason phrase


@pytest.mark.parametrize(("message", "expected"), [
    ("plain", "plain"), ("two\nlines\ttabbed", "two lines tabbed"), ("caf\u00e9 \u2192 <Labels>", "caf? ? <Labels>"),
])
def test_reason_phrases_are_one_line_of_printable_ascii(message: str, expected: str) -> None:
    assert reason_phrase(message) == expected
    assert len(reason_phrase("x" * 5000)) == 900


def test_only_fixable_problems_are_diagnosed() -> None:
    assert diagnose(RuntimeError("boom"), "http://ls", "LABEL_STUDIO_API_KEY") is None
    wrapped = LabelStudioError("reading failed")
    wrapped.__cause__ = ApiError(status_code=404, body="Not found")
    assert diagnose(wrapped, "http://ls", "x").kind == "not_found"
    assert Problem.from_json({"kind": "auth", "message": "m", "fix": "f"}).text() == "m. Fix: f"
    assert Problem.from_json({"kind": "other"}) is None


def test_the_servers_label_studio_is_stored_for_commands_on_the_same_database(app_env) -> None:
    """`labelloop autolabel` in a fresh shell reads the connection from the database the server writes."""
    client, services, _ = app_env
    assert setup_project(client, hostname="http://elsewhere:8080", access_token="other").status_code == 200
    project = services.store.get_project(1)
    assert (project.label_studio_url, project.label_studio_token) == ("http://label-studio.invalid", "x" * 40)

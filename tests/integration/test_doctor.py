"""`labelloop doctor` against a real Label Studio 1.23.2 and a real labelloop server under gunicorn.

A good setup passes; a wrong key fails with the fix printed; a duplicate webhook is found, and removed with
``--fix --yes``; a personal access token is recognised; and a Label Studio started with its SSRF guard on (no
``ML_BLOCK_LOCAL_IP=false`` / ``SSRF_PROTECTION_ENABLED=false``) is seen refusing a localhost backend.
The server runs on the defaults in a directory of its own; the doctor and the CLI run as the user's next
shell would: another directory, no labelloop variables, the same user.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
import requests
from label_studio_sdk.core.api_error import ApiError

from backend.cli.main import main
from tests.support.labelstudio import LabelStudioServer

CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
          '<Choice value="pos"/><Choice value="neg"/></Choices></View>')


@pytest.fixture
def connected(label_studio, backend_server_factory, tmp_path):
    """A project connected to labelloop the way a new user connects it: `labelloop serve` on the defaults (no
    MODEL_DIR, no DATABASE_URL, no Label Studio settings, so /setup stores the URL and token) in a directory of
    its own, and the model added in Label Studio."""
    (tmp_path / "server-dir").mkdir()
    # No round of its own (RETRAIN_EVERY, IDLE_TRAIN): the rounds here are the CLI's.
    server = backend_server_factory({"LABEL_STUDIO_URL": None, "LABEL_STUDIO_API_KEY": None, "DATABASE_URL": None,
                                     "MODEL_DIR": None, "XDG_DATA_HOME": str(tmp_path / "data"),
                                     "LABELLOOP_RETRAIN_EVERY": "1000", "LABELLOOP_IDLE_TRAIN": "0"},
                                    workers=1, threads=2, cwd=tmp_path / "server-dir")
    ls = label_studio.client()
    project = ls.projects.create(title=f"doctor-{uuid.uuid4().hex[:6]}", label_config=CONFIG)
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    yield SimpleNamespace(project=project.id, server=server, ls=label_studio, tmp=tmp_path)
    ls.projects.delete(id=project.id)


def _new_shell(monkeypatch, connected, env: dict[str, str] | None = None) -> None:
    """The user's next shell: another directory, the same user (data directory), no labelloop variables."""
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "MODEL_DIR", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(connected.tmp / "data"))
    (connected.tmp / "elsewhere").mkdir(exist_ok=True)
    monkeypatch.chdir(connected.tmp / "elsewhere")
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)


def _doctor(monkeypatch, capsys, connected, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`labelloop doctor ...` in that new shell."""
    _new_shell(monkeypatch, connected, env)
    capsys.readouterr()
    rc = main(["doctor", *args])
    return rc, capsys.readouterr().out


def _hooks(ls: LabelStudioServer, url: str) -> list[dict]:
    response = requests.get(f"{ls.url}/api/webhooks/", headers=ls.headers, timeout=10)
    response.raise_for_status()
    return [w for w in response.json() if w["url"].rstrip("/") == f"{url}/webhook"]


def test_a_good_setup_passes_with_the_stored_connection(connected, monkeypatch, capsys) -> None:
    rc, out = _doctor(monkeypatch, capsys, connected, "--project", str(connected.project))
    assert rc == 0, out
    assert f"OK    connection: Label Studio URL and key stored for project {connected.project} by /setup" in out
    assert "OK    API key: a legacy token of admin@example.com, accepted" in out
    assert f"OK    model connection: Label Studio reaches {connected.server.url}" in out
    assert f"OK    SSRF guard: Label Studio may call {connected.server.url}" in out
    assert f"OK    webhook: one webhook (#{_hooks(connected.ls, connected.server.url)[0]['id']})" in out
    assert "all checks passed" in out


def test_train_in_a_fresh_shell_uses_the_stored_connection(connected, monkeypatch, capsys) -> None:
    """`labelloop train` in another directory with nothing set: it finds the server's database, takes Label
    Studio's URL and token from what /setup stored, and the round runs (it used to look in ./var/labelloop,
    create an empty database there, and fail asking for LABEL_STUDIO_URL)."""
    client = connected.ls.client()
    texts = [(f"good great fine {i}", "pos") if i % 2 else (f"bad awful poor {i}", "neg") for i in range(12)]
    client.projects.import_tasks(id=connected.project, request=[{"text": t} for t, _ in texts])
    tasks = sorted(client.tasks.list(project=connected.project), key=lambda t: t.id)
    for task, (_, label) in zip(tasks, texts, strict=True):
        client.annotations.create(id=task.id, result=[{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                                       "value": {"choices": [label]}}])
    _new_shell(monkeypatch, connected)
    capsys.readouterr()
    assert main(["train", "--project", str(connected.project)]) == 0, capsys.readouterr().err
    assert "it-1 succeeded: 12 labels" in capsys.readouterr().out
    assert main(["history", "--project", str(connected.project)]) == 0
    assert "it-1" in capsys.readouterr().out
    assert not (connected.tmp / "elsewhere" / "var").exists()


def test_a_wrong_key_fails_with_the_fix(connected, monkeypatch, capsys) -> None:
    rc, out = _doctor(monkeypatch, capsys, connected, "--project", str(connected.project),
                      env={"LABEL_STUDIO_URL": connected.ls.url, "LABEL_STUDIO_API_KEY": "f" * 40})
    assert rc == 1
    assert "FAIL  API key: the legacy token from LABEL_STUDIO_API_KEY is refused: HTTP 401" in out
    assert "fix: set LABEL_STUDIO_API_KEY to a key Label Studio accepts" in out


def test_a_duplicate_webhook_is_found_and_removed(connected, monkeypatch, capsys) -> None:
    url, ls = connected.server.url, connected.ls
    requests.post(f"{ls.url}/api/webhooks/", headers=ls.headers, timeout=10,
                  json={"project": connected.project, "url": f"{url}/webhook", "send_payload": True,
                        "send_for_all_actions": True}).raise_for_status()
    first, second = sorted(w["id"] for w in _hooks(ls, url))
    rc, out = _doctor(monkeypatch, capsys, connected, "--project", str(connected.project))
    assert rc == 1 and f"2 webhooks send project {connected.project}'s events" in out
    assert f"--fix deletes all but #{first}" in out

    rc, out = _doctor(monkeypatch, capsys, connected, "--project", str(connected.project), "--fix", "--yes")
    assert rc == 0, out
    assert [w["id"] for w in _hooks(ls, url)] == [first]  # the oldest kept, #second gone
    assert second not in [w["id"] for w in _hooks(ls, url)]


def test_a_personal_access_token_is_recognised(connected, monkeypatch, capsys) -> None:
    ls = connected.ls
    requests.post(f"{ls.url}/api/jwt/settings", headers=ls.headers, timeout=10,
                  json={"api_tokens_enabled": True, "legacy_api_tokens_enabled": True}).raise_for_status()
    made = requests.post(f"{ls.url}/api/token/", headers=ls.headers, timeout=10)  # one per user (409 after)
    assert made.status_code == 201, made.text
    rc, out = _doctor(monkeypatch, capsys, connected, "--project", str(connected.project),
                      env={"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": made.json()["token"]})
    assert rc == 0, out
    assert "OK    API key: a personal access token of admin@example.com, accepted (from LABEL_STUDIO_API_KEY)" in out


def test_a_guarded_label_studio_refusing_localhost_is_detected(connected, monkeypatch, capsys) -> None:
    """Label Studio's defaults (both guards on), as a user who starts it without the two variables has it."""
    guarded = LabelStudioServer(extra_env={"ML_BLOCK_LOCAL_IP": "true", "SSRF_PROTECTION_ENABLED": "true"})
    with guarded:
        client = guarded.client()
        project = client.projects.create(title="guarded", label_config=CONFIG)
        with pytest.raises(ApiError) as refused:  # what the user sees in the connect dialog
            client.ml.create(url=connected.server.url, project=project.id, title="labelloop", is_interactive=False)
        assert refused.value.status_code == 403
        rc, out = _doctor(monkeypatch, capsys, connected, "--project", str(project.id), "--backend-url",
                          connected.server.url, env={"LABEL_STUDIO_URL": guarded.url,
                                                     "LABEL_STUDIO_API_KEY": guarded.token})
    assert rc == 1
    assert f"FAIL  model connection: no model is connected to project {project.id}" in out
    assert (f"FAIL  SSRF guard: Label Studio refuses {connected.server.url} as a local or private address: "
            "ML_BLOCK_LOCAL_IP is on, so it will not connect or call the model; SSRF_PROTECTION_ENABLED is on, so it "
            "drops every webhook to it") in out
    assert "fix: restart Label Studio with ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false" in out

"""`labelloop doctor` and the CLI's pre-flight, offline: the database checks against real SQLite files, the
connection rule against `Services.gateway_for`, and the Label Studio checks against a small fake of the
few endpoints it calls (tests/integration/test_doctor.py runs the same checks against a real Label Studio)."""

from __future__ import annotations

import base64
import io
import json
import threading
from argparse import Namespace
from types import SimpleNamespace

import pytest
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from backend.cli import doctor
from backend.cli.main import main
from backend.config import ProjectPolicy, Settings
from backend.store import Store

TOKEN = "a" * 40


def _jwt(claims: dict) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2ln"


def test_key_kind_tells_a_personal_access_token_from_a_legacy_token() -> None:
    assert doctor.key_kind(TOKEN) == "legacy token"
    assert doctor.key_kind(_jwt({"token_type": "refresh", "exp": 4102444800})) == "personal access token"
    assert doctor.key_kind(_jwt({"token_type": "access"})) == "JWT access token"
    assert doctor.key_kind("a.b.c") == "legacy token"  # three parts, but not a JWT


@pytest.mark.parametrize(("env", "stored"), [
    ({"label_studio_url": "http://env:8080", "label_studio_api_key": "e" * 40}, ("http://stored:8080", "s" * 40)),
    ({}, ("http://stored:8080", "s" * 40)),
    ({"label_studio_url": "http://env:8080"}, ("http://stored:8080", "s" * 40)),
    ({"label_studio_api_key": "e" * 40}, (None, None)),
])
def test_the_connection_rule_is_gateway_fors(env, stored, tmp_path, monkeypatch) -> None:
    """The CLI and the doctor must pick the Label Studio the server's rounds use."""
    from backend.service import container

    made = []

    class Recorder:
        def __init__(self, url, key, *args, **kwargs):
            made.append((url, key))
            if not url or not key:
                raise RuntimeError("incomplete")

    monkeypatch.setattr(container, "LabelStudioGateway", Recorder)
    settings = Settings(model_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'g.sqlite3'}", **env)
    project = SimpleNamespace(id=1, label_studio_url=stored[0], label_studio_token=stored[1])
    services = container.Services(settings, Store(settings.resolved_database_url))
    try:
        services.gateway_for(project)  # type: ignore[arg-type]
    except RuntimeError:
        pass
    conn = doctor.connection_for(settings, project)
    assert made == [(conn.url, conn.key)]
    assert conn.complete == bool(conn.url and conn.key)


def _args(**kw) -> Namespace:
    return Namespace(**{"project": None, "fix": False, "yes": False, "backend_url": None, **kw})


def test_doctor_without_a_database_fails_and_creates_none(tmp_path) -> None:
    settings = Settings(model_dir=tmp_path / "nowhere")
    out = io.StringIO()
    assert doctor.run(_args(), settings, environ={}, out=out) == 1
    text = out.getvalue()
    assert f"FAIL  database: no labelloop database at {tmp_path / 'nowhere' / 'labelloop.sqlite3'}" in text
    assert "fix: start the server once" in text and not (tmp_path / "nowhere").exists()


def test_doctor_finds_migrations_behind_and_fix_upgrades(tmp_path) -> None:
    from alembic import command
    from alembic.config import Config

    from backend.store.base import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0006")
    settings = Settings(model_dir=tmp_path, database_url=url)
    out = io.StringIO()
    assert doctor.run(_args(), settings, environ={}, out=out) == 1
    assert "FAIL  migrations: the database is at ['0006']" in out.getvalue()
    out = io.StringIO()
    assert doctor.run(_args(fix=True), settings, environ={}, out=out) == 0, out.getvalue()
    assert "OK    migrations: upgraded ['0006'] ->" in out.getvalue()
    assert doctor.migration_state(url)[0] == doctor.migration_state(url)[1]


def test_doctor_names_an_unknown_project_and_a_missing_connection(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    store = Store(url)
    store.upgrade()
    store.ensure_project(2, ProjectPolicy())
    out = io.StringIO()
    assert doctor.run(_args(project=5), Settings(model_dir=tmp_path, database_url=url), environ={}, out=out) == 1
    assert "project 5 is unknown in" in out.getvalue() and "(projects there: 2)" in out.getvalue()
    out = io.StringIO()
    assert doctor.run(_args(project=2), Settings(model_dir=tmp_path, database_url=url), environ={}, out=out) == 1
    assert "FAIL  connection: no Label Studio connection for project 2" in out.getvalue()


# -- against a fake Label Studio ------------------------------------------------------------------------------
class FakeLabelStudio:
    """The endpoints the doctor calls, answering as Label Studio 1.23.2 does (shapes from its source)."""

    def __init__(self, backend_url: str, webhooks: int = 1, block_local: bool = False) -> None:
        self.backend_url = backend_url
        self.block_local = block_local
        self.hooks = {i: {"id": i, "project": 1, "url": f"{backend_url}/webhook", "is_active": True,
                          "send_payload": True, "headers": {}} for i in range(10, 10 + webhooks)}
        self.deleted: list[int] = []
        app = Flask("fake-ls")
        app.add_url_rule("/health", "health", view_func=lambda: jsonify(status="UP"))
        app.add_url_rule("/api/version/", "version", view_func=lambda: jsonify(release="1.23.2"))
        app.add_url_rule("/api/current-user/whoami", view_func=self._whoami)
        app.add_url_rule("/api/projects/<int:pid>", view_func=self._project)
        app.add_url_rule("/api/ml", view_func=self._ml, methods=["GET", "POST"])
        app.add_url_rule("/api/webhooks/", view_func=self._webhooks, methods=["GET", "POST"])
        app.add_url_rule("/api/webhooks/<int:hid>/", view_func=self._delete, methods=["DELETE"])
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _whoami(self):
        if request.headers.get("Authorization") != f"Token {TOKEN}":
            return jsonify(detail="Invalid token."), 401
        return jsonify(email="admin@example.com")

    def _project(self, pid: int):
        if pid != 1:
            return jsonify(detail="Not found."), 404
        config = ('<View><Text name="text" value="$text"/><Choices name="s" toName="text"><Choice value="a"/>'
                  '<Choice value="b"/></Choices><TextArea name="note" toName="text"/></View>')
        return jsonify(id=1, title="reviews", label_config=config)

    def _ssrf(self):
        if self.block_local:
            return jsonify(detail="URL resolves to a reserved network address (block: 127.0.0.0/8)"), 403
        return jsonify(validation_errors={"project": ['Invalid pk "0" - object does not exist.']}), 400

    def _ml(self):
        if request.method == "POST":
            return self._ssrf()
        state = "DI" if self.block_local else "CO"
        return jsonify([{"id": 3, "url": self.backend_url, "state": state,
                         "readable_state": {"CO": "Connected", "DI": "Disconnected"}[state], "error_message": None}])

    def _webhooks(self):
        if request.method == "POST":
            body = request.get_json()
            if body.get("project") == 0:
                return self._ssrf()
            hook = {"id": max(self.hooks, default=9) + 1, "is_active": True, "headers": {}, **body}
            self.hooks[hook["id"]] = hook
            return jsonify(hook), 201
        return jsonify(list(self.hooks.values()))

    def _delete(self, hid: int):
        self.deleted.append(hid)
        self.hooks.pop(hid)
        return "", 204

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def project_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'd.sqlite3'}"
    store = Store(url)
    store.upgrade()
    return store, url


def _doctor(fake: FakeLabelStudio, url: str, tmp_path, key: str = TOKEN, answers: list[bool] | None = None,
            **kw) -> tuple[int, str, list[str]]:
    asked: list[str] = []

    def ask(question: str) -> bool:
        asked.append(question)
        return (answers or [False]).pop(0)

    settings = Settings(model_dir=tmp_path, database_url=url, label_studio_url=fake.url, label_studio_api_key=key)
    out = io.StringIO()
    rc = doctor.run(_args(project=1, **kw), settings, environ={}, out=out, ask=ask)
    return rc, out.getvalue(), asked


def test_a_good_setup_passes(project_db, tmp_path) -> None:
    store, url = project_db
    store.ensure_project(1, ProjectPolicy())
    fake = FakeLabelStudio("http://127.0.0.1:9090")
    try:
        rc, text, _ = _doctor(fake, url, tmp_path)
    finally:
        fake.stop()
    assert rc == 0, text
    for line in ("OK    API key: a legacy token of admin@example.com, accepted (from LABEL_STUDIO_API_KEY)",
                 "OK    label config: serves 's' over 'text'", "WARN  label config: ignored: <TextArea name=\"note\">",
                 "OK    model connection: Label Studio reaches http://127.0.0.1:9090",
                 "OK    SSRF guard: Label Studio may call http://127.0.0.1:9090",
                 "OK    webhook: one webhook (#10)", "all checks passed"):
        assert line in text, text


def test_a_wrong_key_fails_with_the_fix(project_db, tmp_path) -> None:
    store, url = project_db
    store.ensure_project(1, ProjectPolicy())
    fake = FakeLabelStudio("http://127.0.0.1:9090")
    try:
        rc, text, _ = _doctor(fake, url, tmp_path, key="b" * 40)
    finally:
        fake.stop()
    assert rc == 1
    assert "FAIL  API key: the legacy token from LABEL_STUDIO_API_KEY is refused: HTTP 401 Invalid token." in text
    assert "fix: set LABEL_STUDIO_API_KEY to a key Label Studio accepts" in text


def test_duplicate_webhooks_are_deleted_only_when_confirmed(project_db, tmp_path) -> None:
    store, url = project_db
    store.ensure_project(1, ProjectPolicy())
    fake = FakeLabelStudio("http://127.0.0.1:9090", webhooks=3)
    try:
        rc, text, asked = _doctor(fake, url, tmp_path)  # no --fix: says what to run
        assert rc == 1 and "3 webhooks send project 1's events" in text and "--fix deletes all but #10" in text
        assert asked == [] and fake.deleted == []
        rc, text, asked = _doctor(fake, url, tmp_path, fix=True, answers=[False])  # --fix, answered no
        assert rc == 1 and asked == ["delete webhooks #11, #12 (duplicates of #10)?"] and fake.deleted == []
        rc, text, asked = _doctor(fake, url, tmp_path, fix=True, yes=True)  # --fix --yes: no question
        assert rc == 0, text
        assert asked == [] and fake.deleted == [11, 12] and "OK    webhook: one webhook (#10)" in text
    finally:
        fake.stop()


def test_a_missing_webhook_is_added_with_fix(project_db, tmp_path) -> None:
    store, url = project_db
    store.ensure_project(1, ProjectPolicy())
    fake = FakeLabelStudio("http://127.0.0.1:9090", webhooks=0)
    try:
        rc, text, _ = _doctor(fake, url, tmp_path)
        assert rc == 1 and "no active webhook sends project 1's labels" in text
        rc, text, _ = _doctor(fake, url, tmp_path, fix=True, yes=True)
        assert rc == 0, text
        assert [h["url"] for h in fake.hooks.values()] == ["http://127.0.0.1:9090/webhook"]
    finally:
        fake.stop()


def test_the_ssrf_guard_is_named_with_its_settings(project_db, tmp_path) -> None:
    store, url = project_db
    store.ensure_project(1, ProjectPolicy())
    fake = FakeLabelStudio("http://127.0.0.1:9090", block_local=True)
    try:
        rc, text, _ = _doctor(fake, url, tmp_path)
    finally:
        fake.stop()
    assert rc == 1
    assert ("FAIL  SSRF guard: Label Studio refuses http://127.0.0.1:9090 as a local or private address: "
            "ML_BLOCK_LOCAL_IP is on, so it will not connect or call the model; SSRF_PROTECTION_ENABLED is on, so it "
            "drops every webhook to it") in text
    assert "FAIL  model connection: Label Studio lists http://127.0.0.1:9090 (#3) as Disconnected" in text
    assert "fix: restart Label Studio with ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false" in text


def test_webhook_urls_compare_without_slash_noise() -> None:
    assert doctor._normal("HTTP://Host:9090//webhook/") == doctor._normal("http://host:9090/webhook")
    assert doctor._normal("http://host:9090/webhook") != doctor._normal("http://host:9091/webhook")


def test_doctor_is_a_command(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'missing.sqlite3'}")
    assert main(["doctor"]) == 1
    assert "FAIL  database: no labelloop database at" in capsys.readouterr().out

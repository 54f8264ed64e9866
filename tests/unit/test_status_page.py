"""The status page (backend/web/status.py) in-process: what a person reads at / and /status/<id>.

The same page in a real browser, against a real Label Studio and gunicorn, is in
tests/integration/test_status_page_browser.py.
"""

from __future__ import annotations

import html
import re

from backend.config import Settings
from backend.labelstudio.gateway import LabelStudioError
from backend.service.serializers import iteration_json
from backend.web import status
from backend.web.app import create_app
from tests.unit.test_app import CONFIG, annotation_event, setup_project, wait_for_iteration

API_KEY = "x" * 40  # the app_env fixture's LABEL_STUDIO_API_KEY
HOSTILE = "<script>alert('owned')</script>"
IGNORING = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
            '<Choice value="pos"/><Choice value="neg"/></Choices>'
            '<TextArea name="comment" toName="text"/><Rating name="stars" toName="text"/></View>')


def text_of(body: bytes) -> str:
    """Roughly what a person reads: tags dropped, entities decoded, spaces collapsed."""
    page = re.sub(r"<(style|script)\b.*?</\1>", " ", body.decode(), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def train(client, services, number: int) -> object:
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": 1}})
    return wait_for_iteration(services, 1, number)


def test_the_index_renders_before_any_project(app_env) -> None:
    client, _, _ = app_env
    resp = client.get("/")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    text = text_of(resp.data)
    assert "No project yet" in text
    assert "role all" in text and "database SQLite" in text and status.__version__ in text
    assert client.get("/status").data == resp.data
    unknown = client.get("/status/7")
    assert unknown.status_code == 404 and "knows no project 7" in text_of(unknown.data)
    assert client.get("/status/7/report").status_code == 404
    for path in ("/status/0", "/status/99999999999", "/status/7/plots/..%2Fdb.sqlite3", "/status/7/plots/x.png"):
        assert client.get(path).status_code == 404, path


def test_a_successful_round_shows_its_version_accuracy_interval_and_plots(app_env) -> None:
    client, services, _ = app_env
    setup_project(client)
    it = train(client, services, 1)
    assert it.status == "succeeded", it.error
    data = iteration_json(it)
    low, high = data["accuracy_interval"]
    accuracy = f"{it.accuracy:.3f} ({low:.3f}–{high:.3f})"

    page = client.get("/status/1")
    assert page.status_code == 200
    text = text_of(page.data)
    assert "Project 1 idle" in text and "last round 1 succeeded" in text
    assert "serving version it-1" in text
    assert (f"its accuracy {it.accuracy:.3f} 95 % interval {low:.3f}–{high:.3f}, on {it.n_validation} "
            "validation labels") in text
    row = f"1 it-1 START_TRAINING succeeded {it.labels_used} {it.n_validation} {accuracy} {it.fit_seconds:.2f} s"
    assert row in text
    assert "http://label-studio.invalid/projects/1/data" in page.data.decode()

    plots = re.findall(r'<img src="([^"]+)"', page.data.decode())
    assert plots and all("/status/1/plots/" in url for url in plots)
    image = client.get(html.unescape(plots[0]))
    assert image.status_code == 200 and image.mimetype == "image/png" and image.data[:4] == b"\x89PNG"
    report = client.get("/status/1/report")
    assert report.status_code == 200 and b"active-learning report" in report.data

    index = text_of(client.get("/").data)
    assert "project 1 idle" in index and "it-1" in index and accuracy in index


def test_a_failed_round_shows_its_whole_error_and_the_project_failing(app_env) -> None:
    client, services, gateway = app_env
    setup_project(client)
    assert train(client, services, 1).status == "succeeded"
    gateway.fail_push = True
    failed = train(client, services, 2)
    assert failed.status == "failed"
    text = text_of(client.get("/status/1").data)
    assert "Project 1 failing" in text and "still serving it-1" in text
    assert f"error of round 2: {failed.error}" in text
    assert "failing" in text_of(client.get("/").data)

    # A long error is shown whole, not cut like the report's table cell.
    long_error = "Label Studio answered 500: " + "the database is locked; " * 60 + "END-OF-ERROR"
    gateway.import_predictions = lambda *a, **k: (_ for _ in ()).throw(LabelStudioError(long_error))
    assert train(client, services, 3).status == "failed"
    assert long_error in text_of(client.get("/status/1").data)


def test_hostile_project_data_is_escaped(app_env) -> None:
    client, services, gateway = app_env
    config = CONFIG.replace("</View>", f'<TextArea name="{html.escape(HOSTILE)}" toName="text"/></View>')
    assert setup_project(client, schema=config).status_code == 200
    assert train(client, services, 1).status == "succeeded"
    gateway.fail_push = True
    gateway.import_predictions = lambda *a, **k: (_ for _ in ()).throw(LabelStudioError(f"bad: {HOSTILE}"))
    assert train(client, services, 2).status == "failed"
    for path in ("/status/1", "/"):
        body = client.get(path).data.decode()
        assert "<script" not in body, path
    body = client.get("/status/1").data.decode()
    assert body.count("&lt;script&gt;alert(") >= 2  # the ignored control's name and the error, as text
    assert HOSTILE in text_of(body.encode())


def test_ignored_controls_are_listed(app_env) -> None:
    client, _, _ = app_env
    assert setup_project(client, schema=IGNORING).status_code == 200
    text = text_of(client.get("/status/1").data)
    assert '<Choices name="sentiment"> on text (pos, neg)' in text
    assert '<TextArea name="comment">: labelloop does not predict <TextArea>' in text
    assert '<Rating name="stars">: labelloop does not predict <Rating>' in text


def test_labels_until_the_next_round_and_the_queued_and_training_states(app_env) -> None:
    client, services, _ = app_env
    setup_project(client)
    for task in (100, 101):
        client.post("/webhook", json=annotation_event(task, "pos"))
    services.wait_settled()
    text = text_of(client.get("/status/1").data)
    assert "labels until the next round 1 2 waiting of 3 (retrain_every)" in text
    assert "no round yet" in text

    store = services.store
    store.request_training(1, "operator")  # the app runs no ticker here: nothing takes it
    assert "Project 1 queued round 1 (operator) queued for" in text_of(client.get("/status/1").data)
    store.start_next_queued(1, "worker-7")
    text = text_of(client.get("/status/1").data)
    assert "Project 1 training round 1 (operator) running for" in text and "on worker-7" in text


def test_no_secret_is_ever_shown(app_env) -> None:
    client, services, gateway = app_env
    setup_project(client)
    # The environment names Label Studio here, so /setup stores no token: give the project one as a
    # connection made without LABEL_STUDIO_URL would.
    services.store.ensure_project(1, services.settings.policy, label_studio_token="project-token-123456")
    leak = f"GET http://admin:hunter22@ls.example/api failed with key {API_KEY} and project-token-123456"
    gateway.import_predictions = lambda *a, **k: (_ for _ in ()).throw(LabelStudioError(leak))
    assert train(client, services, 1).status == "failed"
    for path in ("/", "/status/1"):
        body = client.get(path).data.decode()
        for secret in (API_KEY, "project-token-123456", "hunter22"):
            assert secret not in body, (path, secret)
    text = text_of(client.get("/status/1").data)
    assert "GET http://[redacted]@ls.example/api failed with key [redacted] and [redacted]" in text


def test_plots_are_drawn_once_per_change_of_the_history(app_env, monkeypatch) -> None:
    client, services, _ = app_env
    drawn: list[int] = []
    real = status.report_from_store

    def counting(store, project_id, out_dir, autolabel=None):
        drawn.append(project_id)
        return real(store, project_id, out_dir, autolabel)

    monkeypatch.setattr(status, "report_from_store", counting)
    setup_project(client)
    assert client.get("/status/1").status_code == 200 and drawn == []  # no round: nothing to draw
    train(client, services, 1)
    for _ in range(3):
        client.get("/status/1")
    client.get("/status/1/report")
    assert drawn == [1]
    train(client, services, 2)
    client.get("/status/1")
    assert drawn == [1, 1]


def test_the_operator_token_guards_the_page_and_a_browser_signs_in_with_a_form(tmp_path) -> None:
    settings = Settings(model_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                        operator_token="op-secret-token")
    app = create_app(settings, start_jobs=False, migrate=True)
    client = app.test_client()
    try:
        app.extensions["labelloop"].store.ensure_project(3, settings.policy, label_config=CONFIG)
        for path in ("/", "/status/3", "/status/3/report", "/status/3/plots/per_class.png"):
            refused = client.get(path)
            assert refused.status_code == 403 and b'name="token"' in refused.data, path
            assert b"project 3" not in refused.data.lower()
        header = {"X-Labelloop-Operator-Token": "op-secret-token"}
        assert client.get("/status/3", headers=header).status_code == 200

        wrong = client.post("/status/sign-in", data={"token": "guess", "next": "/status/3"})
        assert wrong.status_code == 403 and b"not the operator token" in wrong.data
        assert client.get("/status/3").status_code == 403
        # Only a path on this server is a place to go back to.
        assert client.post("/status/sign-in", data={"token": "op-secret-token", "next": "//evil.example/x"}
                           ).headers["Location"] == "/"
        signed = client.post("/status/sign-in", data={"token": "op-secret-token", "next": "/status/3"})
        assert signed.status_code == 303 and signed.headers["Location"] == "/status/3"
        cookie = signed.headers["Set-Cookie"]
        assert "op-secret-token" not in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        page = client.get("/status/3")
        assert page.status_code == 200 and b"op-secret-token" not in page.data
        assert "Project 3 idle" in text_of(page.data) and "operator token required" in text_of(page.data)
        # The operators' JSON routes keep their own guard: the cookie does not open them.
        assert client.get("/projects/3/iterations").status_code == 401
        assert client.get("/projects/3/iterations", headers=header).status_code == 200
    finally:
        app.extensions["labelloop"].store.dispose()


def test_basic_auth_guards_the_page(tmp_path) -> None:
    settings = Settings(model_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                        basic_auth_user="ml", basic_auth_pass="s3cret")
    app = create_app(settings, start_jobs=False, migrate=True)
    client = app.test_client()
    try:
        assert client.get("/").status_code == 401
        assert client.get("/status/1").status_code == 401
        page = client.get("/", auth=("ml", "s3cret"))
        assert page.status_code == 200 and b"s3cret" not in page.data
    finally:
        app.extensions["labelloop"].store.dispose()


def test_pages_forbid_framing_and_outside_resources(app_env) -> None:
    client, _, _ = app_env
    resp = client.get("/")
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert not re.search(r'(src|href)="(https?:)?//', resp.data.decode())


def test_the_label_studio_link_is_http_and_carries_no_credentials() -> None:
    link = status.label_studio_link
    assert link("http://ls:8080/", 4) == "http://ls:8080/projects/4/data"
    assert link("https://user:pw@ls.example/base", 4) == "https://ls.example/base/projects/4/data"
    assert link("javascript:alert(1)//", 4) is None and link(None, 4) is None

"""Shared pytest fixtures: a real Label Studio, fresh PostgreSQL databases, labelloop servers.

Fixtures
--------
``free_port``                 -> callable ``free_port() -> int`` (a free port on 127.0.0.1)
``label_studio``  (session)   -> ``tests.support.labelstudio.LabelStudioServer`` (started)
``postgres_url``  (function)  -> SQLAlchemy URL ``str`` of a fresh database, dropped afterwards
``backend_server_factory``    -> ``make(env_overrides: dict | None = None, **kwargs) -> BackendServer``
                                 (started, healthy; every one is stopped at teardown)

Missing prerequisites (Label Studio binary, ``LABELLOOP_TEST_POSTGRES_URL``) skip the test with
the reason, unless ``LABELLOOP_REQUIRE_INTEGRATION=1`` (CI), which turns them into failures.
Tests using these fixtures are marked ``integration`` / ``postgres`` automatically.

This file deliberately imports nothing from ``backend`` or ``model``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import postgres as pg
from tests.support.backend import BackendServer
from tests.support.labelstudio import LabelStudioServer, LabelStudioStartError, ls_binary, ls_binary_problem
from tests.support.proc import free_port as _free_port

_BACKENDS = pytest.StashKey[list]()
_LABEL_STUDIO: list[LabelStudioServer] = []  # the session's server, for failure reports

INTEGRATION_FIXTURES = {"label_studio", "backend_server_factory"}
POSTGRES_FIXTURES = {"postgres_url", "backend_server_factory"}


def integration_required() -> bool:
    return os.environ.get("LABELLOOP_REQUIRE_INTEGRATION") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip the test for a missing prerequisite; fail it instead when integration is required."""
    if integration_required():
        pytest.fail(f"{reason} (LABELLOOP_REQUIRE_INTEGRATION=1, so this is a failure)", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------- hooks
def pytest_report_header(config):
    url = pg.base_url_from_env()
    if url:
        from sqlalchemy.engine import make_url

        url = make_url(url).render_as_string(hide_password=True)
    return [
        f"labelloop: label-studio={ls_binary()} ({ls_binary_problem() or 'present'})",
        f"labelloop: {pg.ENV_VAR}={url or '(unset)'}; "
        f"LABELLOOP_REQUIRE_INTEGRATION={os.environ.get('LABELLOOP_REQUIRE_INTEGRATION', '(unset)')}",
    ]


def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & INTEGRATION_FIXTURES:
            item.add_marker(pytest.mark.integration)
        if names & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """When a test fails (setup, call or teardown), attach the server log tails to its report."""
    rep = yield
    if rep.failed:
        for server in item.stash.get(_BACKENDS, []):
            rep.sections.append(
                (f"labelloop server log tail ({server.url}, {server.log_path})", server.log_tail(80))
            )
        if "label_studio" in getattr(item, "fixturenames", ()) and _LABEL_STUDIO:
            ls = _LABEL_STUDIO[0]
            rep.sections.append((f"Label Studio log tail ({ls.url})", ls.log_tail(40)))
    return rep


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def free_port():
    """``free_port()`` -> a TCP port on 127.0.0.1 that is free right now."""
    return _free_port


@pytest.fixture(scope="session")
def label_studio():
    """A real Label Studio for the whole session (admin user, 40-char legacy token)."""
    problem = ls_binary_problem()
    if problem:
        skip_or_fail(problem)
    server = LabelStudioServer()
    try:
        server.start()
    except LabelStudioStartError as exc:
        pytest.fail(f"Label Studio failed to start: {exc}", pytrace=False)
    _LABEL_STUDIO.append(server)
    try:
        yield server
    finally:
        _LABEL_STUDIO.clear()
        server.stop()


@pytest.fixture
def postgres_url():
    """SQLAlchemy URL of a fresh, empty database; dropped (connections terminated) afterwards."""
    base = pg.base_url_from_env()
    if not base:
        skip_or_fail(f"{pg.ENV_VAR} is not set (a postgresql+psycopg:// URL for a role with CREATEDB)")
    try:
        url = pg.create_database(base)
    except Exception as exc:  # a bad URL or a server that is down is a failure, not a skip
        pytest.fail(f"could not create a test database via {pg.ENV_VAR}: {exc}", pytrace=False)
    try:
        yield url
    finally:
        pg.drop_database(url, base)


@pytest.fixture
def backend_server_factory(request, tmp_path: Path):
    """``make(env_overrides=None, **kwargs) -> BackendServer``, started and answering /health.

    Defaults (each only computed when not overridden, so a test that overrides DATABASE_URL does
    not need PostgreSQL): LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY from the session Label Studio,
    DATABASE_URL = this test's ``postgres_url``, MODEL_DIR = ``tmp_path/"models"``. All servers
    made in one test share these, so a "restart" is ``make()`` again after ``server.stop()``.
    An override of None removes the variable. ``kwargs`` go to ``BackendServer`` (port=,
    workers=, threads=, startup_timeout=, extra_args=). Everything started is stopped at teardown, and on
    failure the log tails are attached to the test report.
    """
    started: list[BackendServer] = []
    request.node.stash[_BACKENDS] = started

    def make(env_overrides: dict | None = None, **kwargs) -> BackendServer:
        overrides = dict(env_overrides or {})
        env: dict[str, str | None] = {}
        if "LABEL_STUDIO_URL" not in overrides or "LABEL_STUDIO_API_KEY" not in overrides:
            ls = request.getfixturevalue("label_studio")
            env["LABEL_STUDIO_URL"] = ls.url
            env["LABEL_STUDIO_API_KEY"] = ls.token
        if "DATABASE_URL" not in overrides:
            env["DATABASE_URL"] = request.getfixturevalue("postgres_url")
        if "MODEL_DIR" not in overrides:
            model_dir = tmp_path / "models"
            model_dir.mkdir(exist_ok=True)
            env["MODEL_DIR"] = str(model_dir)
        env.update(overrides)
        kwargs.setdefault("log_path", tmp_path / f"backend-{len(started)}.log")
        server = BackendServer(env, **kwargs)
        started.append(server)  # before start(): a failed start still gets its log reported
        return server.start()

    yield make
    for server in reversed(started):
        server.stop()

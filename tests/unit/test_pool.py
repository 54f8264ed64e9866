"""The connection pool: pinged only after idling, opened ahead on a server database, one-statement acks."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from backend.store import Store
from backend.store.base import ping_when_idle


@pytest.fixture
def engine(tmp_path):
    eng = create_engine(f"sqlite:///{tmp_path / 'pool.sqlite3'}")
    yield eng
    eng.dispose()


def counting_pings(engine, monkeypatch, fail: bool = False) -> list[int]:
    pings: list[int] = []

    def do_ping(dbapi_conn):  # type: ignore[no-untyped-def]
        pings.append(id(dbapi_conn))
        if fail:
            raise engine.dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly")
        return True

    monkeypatch.setattr(engine.dialect, "do_ping", do_ping)
    return pings


def test_a_connection_reused_at_once_is_not_pinged_and_one_left_idle_is(engine, monkeypatch) -> None:
    ping_when_idle(engine, idle_s=0.2)
    pings = counting_pings(engine, monkeypatch)
    with engine.connect() as conn:  # a fresh connection: just connected, nothing to check
        conn.execute(text("SELECT 1"))
    with engine.connect() as conn:  # reused moments later: a storm's case, no round trip spent
        conn.execute(text("SELECT 1"))
    assert pings == []
    time.sleep(0.3)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert len(pings) == 1


def test_a_dead_idle_connection_is_replaced_before_the_caller_sees_it(engine, monkeypatch) -> None:
    ping_when_idle(engine, idle_s=0.0)
    with engine.connect() as conn:
        first = conn.connection.dbapi_connection
    time.sleep(0.01)
    pings = counting_pings(engine, monkeypatch, fail=True)
    monkeypatch.setattr(engine.dialect, "is_disconnect", lambda *a, **k: True)
    # The pool retries checkouts after a DisconnectionError; a brand-new connection is never pinged.
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
        assert conn.connection.dbapi_connection is not first
    assert pings == [id(first)]


def test_a_ping_that_fails_for_another_reason_is_raised(engine, monkeypatch) -> None:
    ping_when_idle(engine, idle_s=0.0)
    with engine.connect():
        pass
    time.sleep(0.01)
    counting_pings(engine, monkeypatch, fail=True)
    monkeypatch.setattr(engine.dialect, "is_disconnect", lambda *a, **k: False)
    with pytest.raises(OperationalError):
        engine.connect()


def test_a_server_database_opens_its_pool_ahead(postgres_url) -> None:
    store = Store(postgres_url)
    try:
        opened = store.warm()
        assert opened == store.engine.pool.size() > 0
        assert store.engine.pool.checkedin() == opened  # open and back in the pool, ready for the first burst
    finally:
        store.dispose()


def test_sqlite_has_nothing_to_open_ahead(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert store.warm() == 0
    store.dispose()


def test_an_unreachable_database_at_start_is_not_an_error() -> None:
    store = Store("postgresql+psycopg://nobody:nothing@127.0.0.1:1/none?connect_timeout=2")
    assert store.warm() == 0  # logged; requests find out for themselves
    store.dispose()

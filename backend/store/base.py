"""Engine, sessions and migrations: what every part of the store stands on."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger("labelloop")

MIGRATIONS = Path(__file__).parent / "migrations"


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets /predict read while a training run writes; foreign keys for the cascades.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL syncs at checkpoints, not on every commit: a webhook's insert no longer
            # waits for an fsync, and a crash of the process still loses nothing committed (only a power
            # cut can drop the last commits; the database stays consistent either way).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = create_engine(url, pool_use_lifo=True)
    ping_when_idle(engine, PING_AFTER_IDLE_S)
    return engine


#: A pooled server connection idle longer than this is pinged before use (see :func:`ping_when_idle`).
PING_AFTER_IDLE_S = 1.0


def ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Ping a pooled connection before use only when it sat idle for more than ``idle_s`` seconds.

    Why not ``pool_pre_ping``: it costs a round trip on every checkout, and under a webhook storm on a
    small machine every round trip waits for the database process to be scheduled, while the
    connection was in use milliseconds before. A connection that went unused for a while is the one a
    database restart or an idle timeout may have killed, so that is the one pinged (the pool hands out
    the most recently used connection first, so idle ones stay idle and are the ones checked); a dead
    one is replaced before the caller sees it (``DisconnectionError`` makes the pool retry with a fresh
    connection). A connection that dies while in use raises a disconnect error once, and SQLAlchemy
    then invalidates the whole pool; the webhook route journals what it was given meanwhile.
    """

    @event.listens_for(engine, "checkin")
    def _last_used(_dbapi_conn, record):  # type: ignore[no-untyped-def]
        record.info["last_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn, record, _proxy):  # type: ignore[no-untyped-def]
        last = record.info.get("last_used")
        if last is None or time.monotonic() - last <= idle_s:
            return  # just connected, or in use moments ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError(f"pooled connection dead after {time.monotonic() - last:.0f} s idle") from exc
            raise


class Database:
    """One database: engine, sessions, Alembic upgrade. The table-group stores below share it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)

    # -- schema -------------------------------------------------------------------------------
    def upgrade(self) -> None:
        """Apply Alembic migrations up to head (idempotent).

        Alembic is imported here, not with the module: with its templates and lexers it is ~10 MB that
        a serving worker, which never migrates, would otherwise hold (see the CLI's ``serve``).
        """
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def warm(self) -> int:
        """Open the pool's connections now (a server database only); returns how many were opened.

        Why: a worker that starts cold opens its connections on its first burst of requests, each
        with a password exchange (PostgreSQL's SCRAM costs milliseconds of CPU on both sides), all at
        once on a small machine: the first webhooks after a start or deploy waited 50-130 ms. A
        database that cannot be reached now is not an error here; the requests find out themselves.
        """
        if self.engine.dialect.name == "sqlite":
            return 0
        held = []
        try:
            for _ in range(self.engine.pool.size()):  # type: ignore[attr-defined]
                held.append(self.engine.connect())
        except Exception as exc:  # noqa: BLE001 - an outage at start: serve anyway, as before
            log.warning("could not open the database connections ahead (%s): opening them on demand",
                        type(exc).__name__)
        finally:
            for conn in held:
                conn.close()
        return len(held)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.Session.begin() as s:
            yield s

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection whose every statement commits on its own: for the one-statement paths that
        must answer fast (a webhook's ack reads the project, then inserts its event).

        On a server database a session costs BEGIN and COMMIT round trips around its statement; on a
        busy small machine each round trip is a wait for the database process to be scheduled, and
        that was the webhook ack's tail under a storm. A single statement needs no transaction.
        """
        with self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT")

"""Fresh, uniquely named PostgreSQL databases for tests.

``LABELLOOP_TEST_POSTGRES_URL`` is a SQLAlchemy URL such as
``postgresql+psycopg://labelloop:secret@127.0.0.1:54329/postgres`` for a role with CREATEDB.
Each test database is created from it (same server, same role) and dropped afterwards, after
terminating whatever connections are still open to it.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

ENV_VAR = "LABELLOOP_TEST_POSTGRES_URL"
_SAFE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def base_url_from_env() -> str | None:
    return os.environ.get(ENV_VAR) or None


def _admin_engine(base_url: str | URL):
    return create_engine(base_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def create_database(base_url: str | URL, prefix: str = "labelloop_test") -> str:
    """Create a new empty database next to ``base_url``; return its SQLAlchemy URL (as a string,
    password included)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    if not _SAFE_NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    engine = _admin_engine(base_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(db_url: str | URL, base_url: str | URL | None = None) -> None:
    """Terminate every connection to the database of ``db_url`` and drop it (no error if gone).

    The statements run over a connection to ``base_url``'s database (default: ``postgres`` on
    the same server with the same role): one cannot drop the database one is connected to.
    """
    url = make_url(db_url)
    name = url.database
    if not name or not _SAFE_NAME.match(name):
        raise ValueError(f"refusing to drop database {name!r}")
    admin_url = make_url(base_url) if base_url else url.set(database="postgres")
    if admin_url.database == name:
        admin_url = admin_url.set(database="postgres")
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@contextlib.contextmanager
def fresh_database(base_url: str | URL | None = None, prefix: str = "labelloop_test") -> Iterator[str]:
    """``with fresh_database() as url:`` a new database for the block, dropped afterwards."""
    base_url = base_url or base_url_from_env()
    if not base_url:
        raise RuntimeError(f"{ENV_VAR} is not set")
    url = create_database(base_url, prefix)
    try:
        yield url
    finally:
        drop_database(url, base_url)

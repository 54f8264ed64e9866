"""Alembic environment: runs against the connection handed in by backend.store.upgrade().

Alembic's own INFO lines (nine on every upgrade, even one with nothing to do) are for `-v`: the CLI keeps
the ``alembic`` logger at WARNING otherwise. What a server's log needs is one line when the schema actually
changed, on labelloop's logger: that is logged here.
"""

from __future__ import annotations

import logging

from alembic import context
from sqlalchemy import create_engine

from backend.store.schema import Base

target_metadata = Base.metadata
log = logging.getLogger("labelloop")


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as conn:
        _run(conn)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    migration = context.get_context()
    with context.begin_transaction():
        before = migration.get_current_heads()
        context.run_migrations()
        after = migration.get_current_heads()
    if before != after:
        log.info("database migrated from %s to %s", ", ".join(before) or "an empty database", ", ".join(after))


run_migrations_online()

"""Webhooks during a PostgreSQL outage are kept and replayed, not lost (Label Studio never resends one).

A private PostgreSQL cluster (so stopping it touches no other test), labelloop under gunicorn with 2
workers on it: webhooks before, during and after a stop of the database server. Prints the figures.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.integration.test_loop import CONFIG, wait_for
from tests.support import postgres as pg

CLUSTER = Path(__file__).resolve().parents[1] / "support" / "pg_cluster.sh"


def _cluster(cmd: str, directory: Path) -> str:
    out = subprocess.run(["bash", str(CLUSTER), cmd, str(directory)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"pg_cluster.sh {cmd} failed: {out.stderr}")
    return out.stdout.strip()


@pytest.fixture
def private_postgres():
    # A path that does not exist yet: the script creates it for the postgres user (a mkdtemp folder is root-only).
    directory = Path(tempfile.gettempdir()) / f"labelloop-outage-pg-{uuid.uuid4().hex[:8]}"
    try:
        base = _cluster("start", directory)
    except (RuntimeError, FileNotFoundError) as exc:
        pytest.fail(f"a private PostgreSQL for the outage test did not start: {exc}", pytrace=False)
    try:
        yield directory, pg.create_database(base)
    finally:
        _cluster("stop", directory)


def label_event(project_id: int, n: int) -> dict:
    return {"action": "ANNOTATION_CREATED", "project": {"id": project_id},
            "task": {"id": 1000 + n}, "annotation": {"id": 5000 + n, "task": 1000 + n, "result": [
                {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]}}


def counter(server, project_id: int) -> int | None:
    try:
        projects = requests.get(f"{server.url}/metrics", timeout=5).json()["projects"]
    except (requests.RequestException, ValueError, KeyError):
        return None
    return next((p["labels_since_iteration"] for p in projects if p["project"] == project_id), None)


def test_webhooks_during_a_database_outage_are_journaled_and_replayed(backend_server_factory, private_postgres,
                                                                       tmp_path) -> None:
    directory, url = private_postgres
    server = backend_server_factory({"DATABASE_URL": url, "LABEL_STUDIO_URL": None, "LABEL_STUDIO_API_KEY": None,
                                     "LABELLOOP_RETRAIN_EVERY": "100000", "LABELLOOP_TICK_SECONDS": "1",
                                     "MODEL_DIR": str(tmp_path / f"models-{uuid.uuid4().hex[:6]}")})
    requests.post(f"{server.url}/setup", json={"project": "7.1", "schema": CONFIG}, timeout=10).raise_for_status()
    for n in range(10):
        assert requests.post(f"{server.url}/webhook", json=label_event(7, n), timeout=5).status_code == 200
    assert counter(server, 7) == 10

    _cluster("pause", directory)
    started = time.monotonic()
    statuses, seconds = [], []
    for n in range(10, 60):
        t0 = time.monotonic()
        resp = requests.post(f"{server.url}/webhook", json=label_event(7, n), timeout=5)
        seconds.append(time.monotonic() - t0)
        statuses.append(resp.status_code)
        time.sleep(0.1)  # a crowd's pace: the outage lasts a few seconds
    outage = time.monotonic() - started
    _cluster("resume", directory)

    assert statuses == [202] * 50, statuses  # every one acknowledged as kept, none refused or 5xx
    assert max(seconds) < 1.0  # inside Label Studio's 1 s webhook timeout
    wait_for(lambda: counter(server, 7) == 60, 60, "the journaled webhooks to be replayed")
    print(f"\noutage {outage:.1f} s: 50 of 50 webhooks journaled (ack p50 {1000 * statistics.median(seconds):.0f} ms,"
          f" max {1000 * max(seconds):.0f} ms), 60 of 60 recorded after the database came back")
    journal = Path(server.env["MODEL_DIR"]) / "journal"
    wait_for(lambda: not [p for p in journal.iterdir() if p.stat().st_size] if journal.is_dir() else True, 30,
             "the journal to empty")


def test_pooled_connections_idle_across_a_restart_are_replaced_unseen(private_postgres) -> None:
    """The pool pings only a connection that sat idle (not every checkout): one left idle while the database
    restarted is found dead and replaced before the caller sees it."""
    from sqlalchemy import event, text

    from backend.store.base import PING_AFTER_IDLE_S, make_engine

    directory, url = private_postgres
    engine = make_engine(url)
    connects: list[float] = []
    event.listen(engine, "connect", lambda *_: connects.append(time.monotonic()))
    try:
        with engine.connect() as a, engine.connect() as b:  # two pooled connections, then idle
            a.execute(text("SELECT 1"))
            b.execute(text("SELECT 1"))
        assert len(connects) == 2
        _cluster("pause", directory)
        _cluster("resume", directory)
        restarted = time.monotonic()
        while time.monotonic() - restarted <= PING_AFTER_IDLE_S:  # idle long enough to be checked
            time.sleep(0.1)
        for _ in range(3):
            with engine.connect() as conn:
                assert conn.execute(text("SELECT 1")).scalar() == 1
        assert len(connects) >= 3  # the dead connection was replaced with a new one, unseen
    finally:
        engine.dispose()

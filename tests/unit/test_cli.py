"""The CLI's offline commands against a real SQLite file: db upgrade, history (table and JSON)."""

from __future__ import annotations

import json

from backend.cli.main import main
from backend.config import ProjectPolicy
from backend.store import Store


def test_db_upgrade_and_history(tmp_path, monkeypatch, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    store = Store(url)
    store.ensure_project(3, ProjectPolicy())
    store.request_training(3, "cli")
    store.acquire_lease(3, "w", 60)
    it = store.start_next_queued(3, "w")
    store.succeed_iteration(it.id, artifact=b"m", artifact_name="it-1.skops", scores=[], labels_used=12,
                            n_train=10, n_validation=2, n_pool=30, accuracy=0.75, macro_f1=0.7)
    store.request_training(3, "labels")
    failed = store.start_next_queued(3, "w")
    store.fail_iteration(failed.id, "LabelStudioError: reading tasks of project 3 failed")
    capsys.readouterr()

    assert main(["history", "--project", "3"]) == 0
    table = capsys.readouterr().out
    assert "it-1" in table and "succeeded" in table and "0.750" in table
    assert "it-2" in table and "failed" in table and "reading tasks" in table

    assert main(["history", "--project", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["version"], r["status"], r["labels_used"]) for r in rows] == [("it-1", "succeeded", 12),
                                                                            ("it-2", "failed", None)]


def test_bad_environment_is_a_clear_error(monkeypatch, capsys) -> None:
    monkeypatch.setenv("LABELLOOP_STRATEGY", "vibes")
    assert main(["db", "upgrade"]) == 2
    err = capsys.readouterr().err
    assert "LABELLOOP_STRATEGY='vibes'" in err and "unknown strategy" in err

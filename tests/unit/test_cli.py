"""The CLI's offline commands against a real SQLite file: db upgrade, history (table and JSON), where the data
lives whatever the working directory, quiet logging, and runs that cannot start recording nothing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from backend.cli.main import main
from backend.config import ProjectPolicy
from backend.store import Store

REPO = Path(__file__).resolve().parents[2]


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


# -- one data location, whatever the working directory -----------------------------------------------------
def _fresh_user(tmp_path, monkeypatch):
    """A new user's shell: no labelloop variables, an empty data directory, another working directory."""
    for name in ("MODEL_DIR", "DATABASE_URL", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return tmp_path / "data" / "labelloop" / "labelloop.sqlite3", elsewhere


def test_history_without_a_database_says_where_it_looked_and_creates_nothing(tmp_path, monkeypatch, capsys) -> None:
    expected, elsewhere = _fresh_user(tmp_path, monkeypatch)
    assert main(["history", "--project", "1"]) == 1
    err = capsys.readouterr().err
    assert f"no labelloop database at {expected}" in err and "DATABASE_URL" in err
    assert not expected.exists() and not (elsewhere / "var").exists()
    assert main(["report", "--project", "1", "--out", str(tmp_path / "r")]) == 1
    assert "no labelloop database" in capsys.readouterr().err and not expected.exists()


def test_every_directory_uses_the_user_data_directory(tmp_path, monkeypatch, capsys) -> None:
    expected, _ = _fresh_user(tmp_path, monkeypatch)
    assert main(["db", "upgrade"]) == 0  # as `labelloop serve` would, from one directory
    assert str(expected) in capsys.readouterr().out
    Store(f"sqlite:///{expected}").ensure_project(4, ProjectPolicy())
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)
    assert main(["history", "--project", "4"]) == 0  # from another: the same database
    assert "project 4 has no iterations yet" in capsys.readouterr().out
    assert main(["history", "--project", "5"]) == 1
    assert "project 5 is unknown" in capsys.readouterr().err and str(expected) in str(expected)


def test_the_old_var_labelloop_keeps_working_with_a_notice(tmp_path, monkeypatch, capsys) -> None:
    _fresh_user(tmp_path, monkeypatch)
    old = tmp_path / "repo"
    (old / "var" / "labelloop").mkdir(parents=True)
    store = Store(f"sqlite:///{old / 'var' / 'labelloop' / 'labelloop.sqlite3'}")
    store.upgrade()
    store.ensure_project(2, ProjectPolicy())
    monkeypatch.chdir(old)
    assert main(["history", "--project", "2"]) == 0
    captured = capsys.readouterr()
    assert "project 2 has no iterations yet" in captured.out
    notice = [line for line in captured.err.splitlines() if "old default" in line]
    assert len(notice) == 1 and "mv " in notice[0] and str(tmp_path / "data" / "labelloop") in notice[0]


def test_explicit_model_dir_still_wins(tmp_path, monkeypatch) -> None:
    _fresh_user(tmp_path, monkeypatch)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "mine"))
    assert main(["db", "upgrade"]) == 0
    assert (tmp_path / "mine" / "labelloop.sqlite3").is_file()
    assert not (tmp_path / "data").exists()


# -- quiet logging --------------------------------------------------------------------------------------------
def _cli(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    """The real `labelloop` entry point in a fresh process (pytest's own log handlers would hide ours)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "MODEL_DIR": str(tmp_path / "m")}
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_commands_are_quiet_unless_verbose(tmp_path) -> None:
    quiet = _cli(["db", "upgrade"], tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout.startswith("database at head")
    loud = _cli(["db", "upgrade", "-v"], tmp_path)
    assert "alembic.runtime.migration INFO" in loud.stderr


# -- the history table ----------------------------------------------------------------------------------------
def test_history_fits_100_columns_and_shows_the_interval(tmp_path, monkeypatch, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'h.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    store = Store(url)
    store.ensure_project(3, ProjectPolicy())
    for n in range(12):
        store.request_training(3, "START_TRAINING" if n % 2 else "labels")
        store.acquire_lease(3, "w", 60)
        it = store.start_next_queued(3, "w")
        store.succeed_iteration(it.id, artifact=b"m", artifact_name=f"it-{n + 1}.skops", scores=[],
                                labels_used=1000 + n, n_train=900, n_validation=137, n_pool=99_000, accuracy=0.8123,
                                macro_f1=0.79, kappa=0.95, stop_suggested=False, strategy="predictive_entropy",
                                queue="cluster", metrics={"evaluation": {"accuracy": 0.8123, "accuracy_low": 0.7391,
                                                                         "accuracy_high": 0.8712}})
        store.release_lease(3, "w")
    capsys.readouterr()
    assert main(["history", "--project", "3"]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100, out
    assert "0.812 [0.74, 0.87]" in out and "137" in out and "it-12" in out
    assert main(["history", "--project", "3", "--wide"]) == 0
    wide = capsys.readouterr().out
    assert "ECE" in wide and "kappa" in wide and "0.950" in wide  # the columns the compact table leaves out


# -- a CLI run that cannot start records nothing --------------------------------------------------------------
def _project_without_connection(tmp_path, monkeypatch) -> Store:
    for name in ("LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    monkeypatch.setenv("DATABASE_URL", url)
    store = Store(url)
    store.upgrade()
    store.ensure_project(7, ProjectPolicy())
    return store


def test_train_without_a_connection_is_one_line_and_no_round(tmp_path, monkeypatch, capsys) -> None:
    store = _project_without_connection(tmp_path, monkeypatch)
    assert main(["train", "--project", "7"]) == 1
    err = capsys.readouterr().err
    assert "no Label Studio connection for project 7" in err and "LABEL_STUDIO_URL" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert store.iterations(7) == []


def test_train_against_an_unreachable_label_studio_records_no_round(tmp_path, monkeypatch, capsys) -> None:
    store = _project_without_connection(tmp_path, monkeypatch)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "x" * 40)
    assert main(["train", "--project", "7"]) == 1
    assert "cannot reach Label Studio" in capsys.readouterr().err
    assert store.iterations(7) == [] and main(["train", "--project", "8"]) == 1
    assert store.get_project(8) is None  # no project row for a run that never started


def test_autolabel_without_a_connection_records_no_job(tmp_path, monkeypatch, capsys) -> None:
    store = _project_without_connection(tmp_path, monkeypatch)
    assert main(["autolabel", "--project", "7"]) == 1
    assert "no Label Studio connection for project 7" in capsys.readouterr().err
    assert store.latest_job(7, "autolabel") is None


def test_bad_arguments_touch_nothing(tmp_path, monkeypatch, capsys) -> None:
    _fresh_user(tmp_path, monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--project", "one"])
    assert exit_.value.code == 2 and not (tmp_path / "data").exists()


def test_an_unexpected_error_is_one_line_unless_verbose(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'u.sqlite3'}")
    import backend.cli.main as cli

    def broken(args, settings):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "_db", broken)
    assert main(["db", "upgrade"]) == 1
    assert capsys.readouterr().err.strip() == "labelloop db: RuntimeError: disk on fire (-v shows the traceback)"
    with pytest.raises(RuntimeError):
        main(["db", "upgrade", "-v"])

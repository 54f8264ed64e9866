"""The control stream against a real Label Studio: policy from the connection's extra_params, random picks
recorded as the "control" stream, and the active-vs-random comparison in the HTTP history and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import requests

from backend.service.training import in_control, in_validation
from tests.integration.test_loop import REPO, choice, review, text_project

CONTROL, VALIDATION = 0.5, 0.2


def pick_labelled(task_ids: list[int]) -> list[int]:
    """The first tasks (by id) that give at least 12 control labels, 12 active ones and 6 held out: enough for
    one comparison, whatever ids this Label Studio hands out."""
    need = {"control": 12, "active": 12, "validation": 6}
    chosen = []
    for tid in task_ids:
        stream = ("validation" if in_validation(tid, VALIDATION)
                  else "control" if in_control(tid, CONTROL, VALIDATION) else "active")
        if need[stream] > 0:
            chosen.append(tid)
            need[stream] -= 1
    assert not any(need.values()), f"80 tasks did not hold enough of each stream: {need}"
    return chosen


def cli(server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "backend.cli", *args], env={**os.environ, **server.env}, cwd=REPO,
                          capture_output=True, text=True, timeout=180)


def test_control_stream_compares_active_and_random_labels(label_studio, backend_server_factory, tmp_path) -> None:
    ls = label_studio.client()
    project, tasks, label_of = text_project(ls, "control", [review(i) for i in range(80)])

    # No round while labelling (neither the label count nor a quiet spell): the CLI runs the one round below.
    server = backend_server_factory({"DATABASE_URL": f"sqlite:///{tmp_path / 'labelloop.sqlite3'}",
                                     "LABELLOOP_RETRAIN_EVERY": "1000", "LABELLOOP_IDLE_TRAIN": "0",
                                     "LABELLOOP_VALIDATION_FRACTION": str(VALIDATION)})
    ml = ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False,
                      extra_params={"control_fraction": CONTROL})
    assert ls.ml.get(id=ml.id).state == "CO"
    policy = requests.get(f"{server.url}/projects/{project.id}/iterations", timeout=10).json()["policy"]
    assert policy["control_fraction"] == CONTROL

    labelled = pick_labelled([t.id for t in tasks])
    for tid in labelled:
        ls.annotations.create(id=tid, result=choice(label_of[tid]))
    out = cli(server, "train", "--project", str(project.id))
    assert out.returncode == 0 and "it-1 succeeded" in out.stdout, out.stderr + out.stdout

    (it,) = requests.get(f"{server.url}/projects/{project.id}/iterations", timeout=10).json()["iterations"]
    control = it["metrics"]["control"]
    trained = [t for t in labelled if not in_validation(t, VALIDATION)]
    assert "skipped" not in control, control
    assert control["n_control"] == sum(in_control(t, CONTROL, VALIDATION) for t in trained) >= 12
    assert control["n_active_total"] == len(trained) - control["n_control"]
    assert control["yardstick"] == "random_stream" and control["n_validation"] == it["n_validation"] >= 6
    assert control["gap_low"] <= control["gap"] <= control["gap_high"]
    assert control["random_curve"] and control["random_labels_needed"] > 0

    # The pool's control-stream tasks are recorded as such (the same hash the server used).
    scores = requests.get(f"{server.url}/projects/{project.id}/iterations/1/scores?limit=1000",
                          timeout=10).json()["scores"]
    pool = {t.id for t in tasks} - set(labelled)
    expected = {t for t in pool if in_control(t, CONTROL, VALIDATION)}
    assert {s["task_id"] for s in scores if s["stream"] == "control"} == expected
    assert it["metrics"]["control_stream"] == {"share": CONTROL, "pool_tasks": len(expected)}

    history = cli(server, "history", "--project", str(project.id), "--json")
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout)[0]["metrics"]["control"] == control
    table = cli(server, "history", "--project", str(project.id))
    assert f"it-1 active vs random on your data: {100 * control['gap']:+.1f} pts" in table.stdout

"""The control stream through a training round (fake Label Studio): which tasks, how they are recorded,
and the active-vs-random comparison in the iteration's metrics, the CLI history and the HTML report."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backend.cli.main import main
from backend.reports.html import report_from_store
from backend.service.control import control_summary, label_order
from backend.service.training import in_control, in_validation
from tests.unit.test_app import MULTI, make_tasks, multi_tasks, setup_project

VALIDATION = 0.25  # the app_env fixture's policy


def run_round(client, services) -> Any:
    """One synchronous round; returns the newest iteration (it must have succeeded)."""
    services.jobs.trigger(1, "START_TRAINING", background=False)
    services.jobs.drain(1)
    it = services.store.iterations(1)[-1]
    assert it.status == "succeeded", it.error
    return it


def streams(client, number: int) -> dict[int, str]:
    rows = client.get(f"/projects/1/iterations/{number}/scores?limit=1000").get_json()["scores"]
    return {r["task_id"]: r["stream"] for r in rows}


def test_control_tasks_are_the_hash_chosen_ones_every_round_and_the_round_compares(app_env) -> None:
    client, services, gateway = app_env
    gateway.tasks[:] = make_tasks(80, 60)
    assert setup_project(client, extra_params={"control_fraction": 0.5}).status_code == 200
    first = run_round(client, services)
    for task in gateway.tasks[80:100]:  # twenty more labels: the second round's pool is smaller
        label = "pos" if task["id"] % 2 == 0 else "neg"
        task["annotations"] = [{"id": task["id"] * 10, "result": [{"from_name": "sentiment", "to_name": "text",
                                "type": "choices", "value": {"choices": [label]}}]}]
    second = run_round(client, services)

    for it, pool in ((first, range(180, 240)), (second, range(200, 240))):
        expected = {t for t in pool if in_control(t, 0.5, VALIDATION)}
        assert expected and not expected & {t for t in pool if in_validation(t, VALIDATION)}
        by_stream = streams(client, it.number)
        assert {t for t, s in by_stream.items() if s == "control"} == expected
        validation = {t for t in pool if in_validation(t, VALIDATION)}
        assert {t for t, s in by_stream.items() if s == "validation"} == validation
        assert it.metrics["control_stream"] == {"share": 0.5, "pool_tasks": len(expected)}
        assert "control" in it.metrics["timings"]

    labelled = [t["id"] for t in gateway.tasks if t["annotations"]]
    trained = [t for t in labelled if not in_validation(t, VALIDATION)]
    control = second.metrics["control"]
    assert "skipped" not in control, control
    assert control["n_control"] == sum(in_control(t, 0.5, VALIDATION) for t in trained) >= 10
    assert control["n_active_total"] == len(trained) - control["n_control"]
    assert control["n"] == min(control["n_control"], control["n_active_total"])
    assert control["n_validation"] == second.n_validation and control["yardstick"] == "random_stream"
    assert control["random_curve"][-1][0] == control["n_control"]
    assert control["gap_low"] <= control["gap"] <= control["gap_high"]
    assert 0.0 <= control["accuracy_active_at_n"] <= 1.0 and 0.0 <= control["accuracy_random_at_n"] <= 1.0
    assert control["labels_ratio"] == pytest.approx(control["random_labels_needed"] / control["n"], abs=1e-3)
    # The shadow model is extra: the main model still trains on every non-held-out label, control ones included.
    assert second.n_train == len(trained)


def test_without_a_control_stream_nothing_changes(app_env) -> None:
    client, services, gateway = app_env
    gateway.tasks[:] = make_tasks(80, 60)
    setup_project(client)
    it = run_round(client, services)
    assert services.store.get_project(1).rules.control_fraction == 0.0
    assert set(streams(client, it.number).values()) <= {"active", "validation"}
    assert "control" not in it.metrics and "control_stream" not in it.metrics
    assert "control" not in it.metrics["timings"]
    page = report_from_store(services.store, 1, services.settings.model_dir / "report").read_text("utf-8")
    section = page.split('<section id="active_vs_random">')[1].split("</section>")[0]
    assert "control stream is off" in section and "<img" not in section


def test_too_few_control_labels_are_recorded_as_the_reason_and_the_round_succeeds(app_env) -> None:
    client, services, _ = app_env  # 24 labels: a handful in the control stream
    setup_project(client, extra_params={"control_fraction": 0.2})
    it = run_round(client, services)
    assert it.metrics["control"]["skipped"].startswith("only ")
    assert "control-stream label" in it.metrics["control"]["skipped"]
    page = report_from_store(services.store, 1, services.settings.model_dir / "report").read_text("utf-8")
    section = page.split('<section id="active_vs_random">')[1].split("</section>")[0]
    assert "not compared (only " in section and "<img" not in section


def test_ground_truth_yardstick_and_multi_label_choices(app_env) -> None:
    """Gold tasks are the validation split; random-validation-stream tasks then train, but count on neither
    side of the comparison (random picks, not the strategy's)."""
    client, services, gateway = app_env
    gateway.tasks = multi_tasks(120, 20)
    gateway.label_config = lambda project_id: MULTI
    assert setup_project(client, schema=MULTI, extra_params={"control_fraction": 0.4}).status_code == 200
    it = run_round(client, services)
    control = it.metrics["control"]
    assert "skipped" not in control, control
    assert control["yardstick"] == "ground_truth" and control["n_validation"] == 30
    trained = [t["id"] for i, t in enumerate(gateway.tasks[:120]) if i % 4]
    assert control["n_control"] == sum(in_control(t, 0.4, VALIDATION) for t in trained)
    neither = sum(in_validation(t, VALIDATION) for t in trained)
    assert neither and control["n_active_total"] == len(trained) - control["n_control"] - neither


def test_a_failing_comparison_never_fails_the_round(app_env, monkeypatch) -> None:
    client, services, gateway = app_env
    gateway.tasks[:] = make_tasks(80, 60)
    setup_project(client, extra_params={"control_fraction": 0.5})

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("shadow model exploded")

    monkeypatch.setattr("backend.service.control.compare_streams", broken)
    it = run_round(client, services)
    assert it.metrics["control"] == {"skipped": "comparison failed: RuntimeError: shadow model exploded"}
    assert services.store.serving_state(1).version == it.version


def test_labels_are_ordered_by_when_the_task_was_first_labelled() -> None:
    def task(tid: int, *annotations: tuple[int, str, bool]) -> dict[str, Any]:
        return {"id": tid, "annotations": [{"id": a, "created_at": at, "was_cancelled": cancelled}
                                           for a, at, cancelled in annotations]}

    tasks = {
        1: task(1, (10, "2026-01-03T00:00:00Z", False)),
        2: task(2, (20, "2026-01-05T00:00:00Z", False), (21, "2026-01-01T00:00:00Z", False)),  # first: 01-01
        3: task(3, (30, "2025-12-01T00:00:00Z", True), (31, "2026-01-04T00:00:00Z", False)),  # cancelled skipped
        4: task(4, (40, "2026-01-02T00:00:00Z", False)),
        5: task(5, (50, "2026-01-06T00:00:00Z", False)),
    }
    train_ids = [1, 2, 3, 4, 5]
    control, active = label_order(train_ids, tasks, control={2, 3}, excluded={5})
    assert [train_ids[i] for i in control] == [2, 3]
    assert [train_ids[i] for i in active] == [4, 1]


def test_history_cli_and_report_show_active_vs_random(app_env, monkeypatch, capsys, tmp_path) -> None:
    client, services, gateway = app_env
    gateway.tasks[:] = make_tasks(100, 40)
    setup_project(client, extra_params={"control_fraction": 0.5})
    it = run_round(client, services)
    control = it.metrics["control"]
    assert "skipped" not in control, control
    summary = control_summary(control)
    assert summary.startswith("active vs random on your data: ") and f"at {control['n']} labels each" in summary

    monkeypatch.setenv("DATABASE_URL", str(services.store.engine.url.render_as_string(hide_password=False)))
    capsys.readouterr()
    assert main(["history", "--project", "1"]) == 0
    out = capsys.readouterr().out
    assert f"it-1 {summary}" in out
    assert main(["history", "--project", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["metrics"]["control"]["gap"] == control["gap"]

    page = report_from_store(services.store, 1, tmp_path / "report").read_text("utf-8")
    section = page.split('<section id="active_vs_random">')[1].split("</section>")[0]
    assert "Active vs random on your data" in section and "<img" in section
    assert (tmp_path / "report" / "active_vs_random.png").exists()

"""The HTML history report: real PNGs, a self-contained page, escaping, and honest "no data yet" notes."""

from __future__ import annotations

import base64
import copy
import io
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.config import ProjectPolicy
from backend.reports.html import PLOT_FILES, report_from_store, write_report
from backend.store import Store

EVIL = "<script>alert(1)</script>"


def _iteration(n: int, labels: int, acc: float, *, kappa: float | None, stop: bool) -> dict:
    classes = {"pos": 0.05, "neg": 0.0, EVIL: -0.1}
    return {
        "number": n, "version": f"it-{n}", "status": "succeeded", "trigger": "webhook", "error": None,
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:01+00:00",
        "labels_used": labels, "n_train": labels - 8, "n_validation": 8, "n_pool": 200 - labels,
        "strategy": "margin", "queue": "greedy", "accuracy": acc, "macro_f1": acc - 0.03, "fit_seconds": 0.05,
        "accuracy_interval": [max(0.0, acc - 0.3), min(1.0, acc + 0.1)],
        "ece": 0.2 / n, "calibration": "temperature", "kappa": kappa, "mean_uncertainty": 0.5 / n,
        "stop_suggested": stop,
        "metrics": {
            "per_class": {
                name: {"precision": min(1.0, acc + d), "recall": max(0.0, acc - d), "f1": acc, "support": 4}
                for name, d in classes.items()
            },
            "confusion": {"labels": ["pos", "neg", EVIL], "matrix": [[4, 1, 0], [0, 3, 1], [1, 0, 2]]},
            "difficulty": {"easy_below": 0.1, "hard_above": 0.5, "source": "validation",
                           "counts": {"easy": 20 * n, "medium": 60, "hard": 100 - 15 * n}},
            "autolabel_curve": {"threshold": [0.99, 0.95, 0.9, 0.8, 0.6],
                                "precision": [1.0, 0.98, 0.95, 0.9, 0.8],
                                "coverage": [0.1, 0.3, 0.5, 0.7, 1.0]},
            "stopping": {"threshold": 0.97, "window": 3, "sample_size": 200},
        },
    }


def history() -> list[dict]:
    failed = {"number": 3, "version": "it-3", "status": "failed", "trigger": "timer",
              "error": f"boom {EVIL}", "metrics": None, "labels_used": None}
    return [
        _iteration(1, 20, 0.6, kappa=None, stop=False),
        _iteration(2, 30, 0.7, kappa=0.9, stop=False),
        failed,
        _iteration(4, 40, 0.8, kappa=0.98, stop=True),
        _iteration(5, 50, 0.82, kappa=0.99, stop=True),
    ]


AUTOLABEL = {"model_version": "it-5", "target_precision": 0.95, "threshold": 0.9, "validation_precision": 0.95,
             "coverage": 0.5, "n_tasks": 150, "n_pushed": 70, "needs_review": [11, 12, 13]}


def assert_real_png(path: Path) -> None:
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG"
        assert img.width > 300 and img.height > 200
        pixels = np.asarray(img.convert("L"), dtype=float)
    assert pixels.var() > 0  # not a blank canvas


def test_full_history_writes_every_plot_and_a_self_contained_page(tmp_path: Path) -> None:
    index = write_report(history(), tmp_path / "out", project_id=7, title="Sentiment", autolabel=AUTOLABEL)
    assert index == tmp_path / "out" / "index.html"
    page = index.read_text("utf-8")
    for name in PLOT_FILES.values():
        png = tmp_path / "out" / name
        assert_real_png(png)
        # The same bytes are embedded, so the page needs nothing beside it.
        assert "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode() in page
    assert "no data yet" not in page.split("<h2>Iterations</h2>")[0]
    # Self-contained: no script, no external resources.
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # class name and error message, escaped
    # Every iteration has a row, failed one included with its error.
    rows = re.findall(r"<tr class=\"(\w+)\"><td>(\d+)</td>", page)
    assert rows == [("succeeded", "1"), ("succeeded", "2"), ("failed", "3"), ("succeeded", "4"), ("succeeded", "5")]
    assert "boom &lt;script&gt;" in page
    # Header: latest version and since when stopping is suggested.
    assert "Sentiment" in page and "project 7" in page
    assert "it-5" in page and "suggested since iteration 4" in page
    # Auto-label outcome.
    assert "labels pushed" in page and ">70<" in page and "needing review" in page and ">3<" in page
    # Confusion matrix as a table.
    assert "true ↓ / predicted →" in page
    # Every accuracy with its validation size and interval (8 validation tasks give a wide one).
    latest = history()[-1]
    low, high = latest["accuracy_interval"]
    assert f"{latest['accuracy']:.3f} [{low:.2f}, {high:.2f}], n=8" in page


def test_missing_data_gives_notes_not_empty_pngs(tmp_path: Path) -> None:
    its = history()
    for it in its:
        it.pop("kappa", None)
        it["stop_suggested"] = None
        if it.get("metrics"):
            it["metrics"].pop("autolabel_curve")
            it["metrics"].pop("difficulty")
    out = tmp_path / "out"
    # A stale PNG from an earlier, fuller report must not survive.
    write_report(history(), out, project_id=1)
    assert (out / "stopping.png").exists()
    page = write_report(its, out, project_id=1).read_text("utf-8")
    for name in ("stopping", "autolabel_curve", "difficulty"):
        assert not (out / PLOT_FILES[name]).exists()
        section = page.split(f'<figure id="{name}">')[1].split("</figure>")[0]
        assert "no data yet:" in section and "<img" not in section
    for name in ("metric_vs_labels", "per_class"):
        assert_real_png(out / PLOT_FILES[name])
    assert "keep labelling" in page


def test_only_failed_iterations_still_make_a_page(tmp_path: Path) -> None:
    failed = [{"number": 1, "version": "it-1", "status": "failed", "trigger": "webhook", "error": "no labels"}]
    page = write_report(failed, tmp_path, project_id=3).read_text("utf-8")
    assert page.count("no data yet:") >= len(PLOT_FILES)
    assert not list(tmp_path.glob("*.png"))
    assert "no labels" in page and "none yet" in page


def test_odd_values_do_not_break_plots(tmp_path: Path) -> None:
    its = copy.deepcopy(history())
    its[0]["accuracy"] = float("nan")
    its[1]["metrics"]["per_class"]["$x^{$"] = {"precision": 0.5, "recall": "n/a"}  # mathtext and junk
    its[1]["metrics"]["per_class"]["_hidden"] = {"precision": 0.4, "recall": 0.3}
    its[4]["metrics"]["autolabel_curve"]["coverage"] = [0.1, None, 0.5]  # ragged
    write_report(its, tmp_path, project_id=1, autolabel={"target_precision": 0.9, "threshold": 0.95})
    for name in PLOT_FILES.values():
        assert_real_png(tmp_path / name)


def test_reports_render_concurrently(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            write_report(history(), tmp_path / str(i), project_id=i, autolabel=AUTOLABEL)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(3):
        assert_real_png(tmp_path / str(i) / "stopping.png")


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    s.upgrade()
    yield s
    s.dispose()


def test_report_from_store(store: Store, tmp_path: Path) -> None:
    store.ensure_project(9, ProjectPolicy(retrain_every=3))
    for source in history():
        iteration = store.request_training(9, source["trigger"])
        assert store.acquire_lease(9, "w", 60)
        store.start_next_queued(9, "w")
        if source["status"] == "failed":
            store.fail_iteration(iteration.id, source["error"])
        else:
            fields = {k: source[k] for k in ("labels_used", "n_train", "n_validation", "n_pool", "accuracy",
                                             "macro_f1", "metrics", "fit_seconds", "ece", "calibration", "kappa",
                                             "mean_uncertainty", "stop_suggested")}
            store.succeed_iteration(iteration.id, artifact=b"x", artifact_name=f"{iteration.version}.skops",
                                    scores=[], **fields)
        store.release_lease(9, "w")
    index = report_from_store(store, 9, tmp_path / "report", autolabel=AUTOLABEL)
    page = index.read_text("utf-8")
    for name in PLOT_FILES.values():
        assert_real_png(tmp_path / "report" / name)
    assert len(re.findall(r"<tr class=\"(?:succeeded|failed)\">", page)) == 5
    assert "suggested since iteration 4" in page

    with pytest.raises(ValueError, match="project 10 has no iterations"):
        report_from_store(store, 10, tmp_path / "empty")
    assert not (tmp_path / "empty" / "index.html").exists()


def test_png_bytes_open_from_the_data_uri(tmp_path: Path) -> None:
    page = write_report(history(), tmp_path, project_id=1).read_text("utf-8")
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(PLOT_FILES)
    for uri in uris:
        with Image.open(io.BytesIO(base64.b64decode(uri))) as img:
            assert img.size[0] > 300

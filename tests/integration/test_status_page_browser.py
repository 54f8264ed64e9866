"""The status page in a real browser: headless Chromium against labelloop under gunicorn and a real Label Studio.

A project is connected and labelled through Label Studio until its first round succeeds; then the project is
deleted in Label Studio, so the next round fails reading it. Chromium then loads the index and the project's
page, and the test reads the DOM it rendered (the text a person sees) and one screenshot (the plots drawn).

Chromium is driven as a subprocess (``--dump-dom``, ``--screenshot``): nothing is downloaded, no driver
library is needed. Without Chromium the test skips, unless LABELLOOP_REQUIRE_INTEGRATION=1 (CI installs it).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.conftest import skip_or_fail
from tests.integration.test_loop import choice, iterations, review, wait_for

pytestmark = pytest.mark.integration

CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
          '<Choice value="pos"/><Choice value="neg"/></Choices>'
          '<TextArea name="comment" toName="text"/></View>')
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: The colours matplotlib draws the report's accuracy and macro-F1 lines in (backend/reports/html.py COLOURS);
#: the page's own CSS has neither, so such pixels in a screenshot are a plot the browser showed.
PLOT_COLOURS = ((31, 119, 180), (255, 127, 14))


def chromium_binary() -> str:
    named = os.environ.get("LABELLOOP_CHROMIUM")
    found = named or next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if not found or not shutil.which(found):
        skip_or_fail(f"no Chromium found ({named or ', '.join(BROWSERS)}): apt-get install chromium")
    return str(found)


def chromium(binary: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run on a fresh profile, with the flags that work on a machine without a GPU,
    network or display. ``--virtual-time-budget`` lets the page's images load before the DOM or picture."""
    with tempfile.TemporaryDirectory(prefix="labelloop-chromium-") as profile:
        out = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
             *args, url],
            capture_output=True, text=True, timeout=180,
        )
    assert out.returncode == 0, f"chromium failed ({out.returncode}): {out.stderr[-2000:]}"
    return out


def seen_text(dom: str) -> str:
    """The rendered DOM as the text a person reads: no style, no tags, entities decoded, spaces collapsed."""
    body = re.sub(r"<(style|script|head)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def plot_pixels(path: Path) -> int:
    image = Image.open(path).convert("RGB")
    assert image.width >= 1000, image.size
    colours = image.getcolors(maxcolors=image.width * image.height)
    return sum(n for n, rgb in colours
               if any(all(abs(a - b) <= 12 for a, b in zip(rgb, plot, strict=True)) for plot in PLOT_COLOURS))


def test_a_person_reads_the_status_page_in_chromium(label_studio, backend_server_factory, tmp_path) -> None:
    browser = chromium_binary()  # before any server starts: a missing browser is reported at once
    ls = label_studio.client()
    project = ls.projects.create(title=f"status-{uuid.uuid4().hex[:6]}", label_config=CONFIG)
    texts = [review(i) for i in range(30)]
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in texts])
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    server = backend_server_factory({"LABELLOOP_RETRAIN_EVERY": "20", "LABELLOOP_TICK_SECONDS": "1"})
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)

    for task in tasks[:20]:
        ls.annotations.create(id=task.id, result=choice(dict(texts)[task.data["text"]]))
    first = wait_for(lambda: [i for i in iterations(server, project.id) if i["status"] in ("succeeded", "failed")],
                     180, "the first round")[0]
    assert first["status"] == "succeeded", first["error"]

    # The project is deleted in Label Studio: the next round cannot read it, fails, and says why.
    ls.projects.delete(id=project.id)
    requests.post(f"{server.url}/webhook", json={"action": "START_TRAINING", "project": {"id": project.id}},
                  timeout=30).raise_for_status()
    failed = wait_for(lambda: [i for i in iterations(server, project.id) if i["number"] == 2
                               and i["status"] == "failed"], 180, "the second round to fail")[0]
    assert failed["error"]

    page = seen_text(chromium(browser, f"{server.url}/status/{project.id}?refresh=0", "--dump-dom").stdout)
    low, high = first["accuracy_interval"]
    accuracy = f"{first['accuracy']:.3f} ({low:.3f}–{high:.3f})"
    assert f"Project {project.id} failing" in page and "still serving it-1" in page
    assert "serving version it-1 trained" in page
    assert f"its accuracy {first['accuracy']:.3f} 95 % interval {low:.3f}–{high:.3f}" in page
    assert f"1 it-1 {first['trigger']} succeeded {first['labels_used']} {first['n_validation']} {accuracy}" in page
    assert "2 it-2 START_TRAINING failed" in page
    assert f"error of round 2: {' '.join(failed['error'].split())}" in page  # the whole error, as stored
    assert '<TextArea name="comment">: labelloop does not predict <TextArea>' in page
    assert "database PostgreSQL" in page and "role all" in page

    index = seen_text(chromium(browser, f"{server.url}/?refresh=0", "--dump-dom").stdout)
    assert f"project {project.id} failing" in index and "it-1" in index and accuracy in index

    shot = tmp_path / "status-page.png"
    chromium(browser, f"{server.url}/status/{project.id}?refresh=0", f"--screenshot={shot}",
             "--window-size=1280,3600", "--hide-scrollbars")
    assert plot_pixels(shot) > 100, f"no plot visible in {shot}"

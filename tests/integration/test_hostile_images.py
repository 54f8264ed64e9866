"""Hostile images in a real project: pixel bombs, a cloud-metadata URL, a loopback URL that is not Label
Studio, and a server that drips bytes sit in the unlabelled pool next to normal images hosted by Label Studio.

Each round succeeds and lists the bad tasks as skipped with their reasons (so one bad task cannot fail
every following round), and /predict answers 400 naming the field. The forbidden addresses are refused
before any connection; the only real traffic goes to servers on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import struct
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests.integration.test_images_and_faults import CONFIG, png, wait_finished
from tests.support.proc import free_port


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of zeros: tens of KB on the wire, width*height*3 bytes once decoded to RGB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = bytes(1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class DripHandler(BaseHTTPRequestHandler):
    """Announces an image, then sends one byte every 0.2 s for a minute."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(300):
                self.wfile.write(b"\x89")
                self.wfile.flush()
                time.sleep(0.2)

    def log_message(self, *args: object) -> None:
        pass


def import_tasks(label_studio, project_id: int) -> tuple[list, dict[str, int], dict[int, str]]:
    """16 red/blue uploads and a 20000x20000 bomb upload (hosted by Label Studio), then JSON tasks."""
    ls = label_studio.client()
    colours = ["red", "blue"] * 8
    files = [(f"file{i}", (f"{c}-{i}.png", png(c, i), "image/png")) for i, c in enumerate(colours)]
    files.append(("bomb", ("bomb-x.png", png_bomb(20000, 20000), "image/png")))
    resp = requests.post(f"{label_studio.url}/api/projects/{project_id}/import", files=files,
                         headers=label_studio.headers, timeout=60)
    assert resp.status_code == 201, resp.text
    tasks = sorted(ls.tasks.list(project=project_id), key=lambda t: t.id)
    good = [t for t in tasks if "bomb" not in t.data["image"]]
    bad = {"bomb upload": next(t.id for t in tasks if "bomb" in t.data["image"])}
    return good, bad, {t.id: t.data["image"].rsplit("/", 1)[-1].split("-")[1] for t in good}


def test_hostile_images_are_skipped_round_after_round(label_studio, backend_server_factory, tmp_path) -> None:
    drip = ThreadingHTTPServer(("127.0.0.1", 0), DripHandler)
    drip.daemon_threads = True
    threading.Thread(target=drip.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    try:
        _run(label_studio, backend_server_factory, tmp_path, drip.server_address[1])
    finally:
        drip.shutdown()
        drip.server_close()


def _run(label_studio, backend_server_factory, tmp_path, drip_port: int) -> None:
    ls = label_studio.client()
    project = ls.projects.create(title=f"hostile-{uuid.uuid4().hex[:6]}", label_config=CONFIG)
    good, bad, colour_of = import_tasks(label_studio, project.id)
    hostile = {
        "metadata": "http://169.254.169.254/latest/meta-data/x.png",
        "loopback": f"http://127.0.0.1:{free_port()}/x.png",  # the machine Label Studio is on, but not Label Studio
        "drip": f"http://localhost:{drip_port}/slow.png",  # allowlisted by name: reached, then cut at the deadline
        "data bomb": "data:image/png;base64," + base64.b64encode(png_bomb(8000, 8000)).decode(),
    }
    ls.projects.import_tasks(id=project.id, request=[{"image": ref} for ref in hostile.values()])
    by_ref = {t.data["image"]: t.id for t in ls.tasks.list(project=project.id)}
    bad.update({name: by_ref[ref] for name, ref in hostile.items()})
    expected_reason = {"bomb upload": "LABELLOOP_IMAGE_MAX_PIXELS", "data bomb": "LABELLOOP_IMAGE_MAX_PIXELS",
                       "metadata": "LABELLOOP_IMAGE_ALLOW", "loopback": "LABELLOOP_IMAGE_ALLOW",
                       "drip": "LABELLOOP_IMAGE_DEADLINE_SECONDS"}

    server = backend_server_factory({
        "DATABASE_URL": f"sqlite:///{tmp_path / 'labelloop.sqlite3'}",
        "LABELLOOP_VALIDATION_FRACTION": "0",
        "LABELLOOP_IMAGE_ALLOW": "localhost",
        "LABELLOOP_IMAGE_DEADLINE_SECONDS": "2",
    })
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)
    for t in good[:10]:  # the 10th label queues it-1
        ls.annotations.create(id=t.id, result=[{"from_name": "colour", "to_name": "image", "type": "choices",
                                                "value": {"choices": [colour_of[t.id]]}}])

    def check_round(number: int) -> None:
        it = wait_finished(server, project.id, number)
        assert it["status"] == "succeeded", it["error"]
        assert it["n_train"] == 10 and it["n_pool"] == 6 and it["n_skipped"] == len(bad)
        skipped = {s["task_id"]: s["reason"] for s in it["metrics"]["skipped"]}
        assert set(skipped) == set(bad.values())
        for name, task_id in bad.items():
            assert expected_reason[name] in skipped[task_id], (name, skipped[task_id])
        assert "link-local" in skipped[bad["metadata"]] and "loopback" in skipped[bad["loopback"]]
        preds = {p.task for p in ls.predictions.list(project=project.id) if p.model_version == f"it-{number}"}
        assert preds == {t.id for t in good[10:]}

    check_round(1)
    resp = requests.post(f"{server.url}/webhook", json={"action": "START_TRAINING", "project": {"id": project.id}},
                         timeout=10)
    assert resp.status_code == 200
    check_round(2)

    def predict(ref: str) -> requests.Response:
        body = {"project": f"{project.id}.1", "label_config": CONFIG, "tasks": [{"id": 1, "data": {"image": ref}}]}
        return requests.post(f"{server.url}/predict", json=body, timeout=30)

    assert predict(good[0].data["image"]).status_code == 200
    for name, ref in [("bomb upload", next(t.data["image"] for t in ls.tasks.list(project=project.id)
                                           if t.id == bad["bomb upload"])), *hostile.items()]:
        t0 = time.monotonic()
        out = predict(ref)
        assert out.status_code == 400, (name, out.status_code, out.text[:300])
        assert out.json()["field"] == "tasks[0].data.image" and expected_reason[name] in out.text, (name, out.text)
        assert time.monotonic() - t0 < 5, name

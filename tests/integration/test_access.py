"""A second `/setup` cannot re-point a project: the stored Label Studio token never leaves for another host.

Real Label Studio, labelloop under gunicorn with no Label Studio in its environment (so the first
`/setup`, sent by Label Studio itself, brings the address and token: the default set-up), and a trap
server on loopback that records every request it gets.
"""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests.integration.test_loop import CONFIG, choice, iterations, review, wait_for


class _Trap(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str | None]] = []

    def _record(self) -> None:
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = do_PATCH = do_DELETE = _record

    def log_message(self, *args) -> None:
        pass


def test_setup_cannot_repoint_a_connected_project(label_studio, backend_server_factory, tmp_path) -> None:
    trap = ThreadingHTTPServer(("127.0.0.1", 0), _Trap)
    threading.Thread(target=trap.serve_forever, daemon=True).start()
    trap_url = f"http://127.0.0.1:{trap.server_address[1]}"
    try:
        ls = label_studio.client()
        project = ls.projects.create(title=f"access-{uuid.uuid4().hex[:6]}", label_config=CONFIG)
        texts = [review(i) for i in range(16)]
        ls.projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in texts])
        tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
        for task in tasks[:8]:
            ls.annotations.create(id=task.id, result=choice(dict(texts)[task.data["text"]]))
        server = backend_server_factory({
            "LABEL_STUDIO_URL": None, "LABEL_STUDIO_API_KEY": None, "LABELLOOP_RETRAIN_EVERY": "1000",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'labelloop.sqlite3'}",
        })
        ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)

        # Anyone who reaches the port tries to point the project at their host, then to change its policy.
        attack = {"project": f"{project.id}.1", "schema": CONFIG, "hostname": trap_url}
        resp = requests.post(f"{server.url}/setup", json=attack, timeout=10)
        assert resp.status_code == 403 and resp.json()["field"] == "hostname", resp.text
        resp = requests.post(f"{server.url}/setup", timeout=10,
                             json={"project": f"{project.id}.1", "schema": CONFIG, "extra_params": {"queue": "greedy"}})
        assert resp.status_code == 403 and resp.json()["field"] == "extra_params", resp.text
        resp = requests.post(f"{server.url}/setup", timeout=10,
                             json={"project": f"{project.id}.1", "schema": CONFIG, "access_token": "f" * 40})
        assert resp.status_code == 403 and resp.json()["field"] == "access_token", resp.text

        # The next round still reads and writes the real Label Studio with the token it sent.
        requests.post(f"{server.url}/webhook", json={"action": "START_TRAINING", "project": {"id": project.id}},
                      timeout=10).raise_for_status()
        done = wait_for(lambda: [i for i in iterations(server, project.id) if i["status"] in ("succeeded", "failed")],
                        180, "the round")
        assert done[0]["status"] == "succeeded", done[0]["error"]
        assert done[0]["labels_used"] == 8
        policy = requests.get(f"{server.url}/projects/{project.id}/iterations", timeout=10).json()["policy"]
        assert policy["queue"] == "cluster"  # the refused /setup changed nothing
        assert ls.projects.get(id=project.id).model_version == "it-1"
        assert _Trap.seen == [], _Trap.seen
    finally:
        trap.shutdown()

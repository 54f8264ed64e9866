"""Trainers apart from servers, against a real Label Studio and PostgreSQL.

`labelloop serve --no-train` (gunicorn, 2 workers) answers Label Studio and only queues; a separate
`labelloop worker` process trains. A worker killed with SIGKILL in the middle of a round loses nothing:
the next worker fails the dead round within about one lease, retries it once, and publishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests

from tests.integration.test_loop import CONFIG, REPO, choice, iterations, review, wait_for


class Worker:
    """`python -m backend.cli worker` as a subprocess with its own log."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        full = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "backend.cli", "worker"], env=full, cwd=REPO,
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def _by_version(server, project_id: int) -> dict[str, dict]:
    return {it["version"]: it for it in iterations(server, project_id)}


def test_server_queues_worker_trains_and_a_killed_worker_loses_nothing(label_studio, backend_server_factory,
                                                                          tmp_path) -> None:
    ls = label_studio.client()
    project = ls.projects.create(title=f"roles-{uuid.uuid4().hex[:6]}", label_config=CONFIG)
    texts = [review(i) for i in range(400)]  # a pool big enough that a round takes a moment to push
    ls.projects.import_tasks(id=project.id, request=[{"text": t} for t, _ in texts])
    tasks = sorted(ls.tasks.list(project=project.id), key=lambda t: t.id)
    # Later rounds push 100 predictions (the head's floor): in batches of 20 a round's push lasts long enough
    # (five paced calls to Label Studio) for a kill to land in it.
    env = {"LABELLOOP_RETRAIN_EVERY": "8", "LABELLOOP_LEASE_SECONDS": "6", "LABELLOOP_TICK_SECONDS": "1",
           "LABELLOOP_QUEUE": "greedy", "LABELLOOP_PUSH_BATCH_SIZE": "20"}
    server = backend_server_factory(env, extra_args=("--no-train",))
    ls.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)

    for task in tasks[:8]:  # the 8th label queues it-1; nobody on the serving side trains it
        ls.annotations.create(id=task.id, result=choice(dict(texts)[task.data["text"]]))
    queued = wait_for(lambda: _by_version(server, project.id).get("it-1"), 60, "it-1 queued")
    assert queued["status"] == "queued"

    workers = [Worker(server.env, tmp_path / "worker-0.log")]
    try:
        first = wait_for(lambda: (_by_version(server, project.id).get("it-1") or {}).get("status") in
                         ("succeeded", "failed") and _by_version(server, project.id)["it-1"], 180, "it-1 trained")
        assert first["status"] == "succeeded", first["error"]
        assert f":{workers[0].proc.pid}:" in first["worker"]  # trained by the worker process, not the server
        assert ls.projects.get(id=project.id).model_version == "it-1"

        # Kill the worker in the middle of a round (again if a round finishes before the kill lands).
        killed = None
        for attempt in range(5):
            before = len(iterations(server, project.id))
            requests.post(f"{server.url}/webhook", json={"action": "START_TRAINING", "project": {"id": project.id}},
                          timeout=10).raise_for_status()
            # The webhook queues its round just after answering: wait for that round (not the last one) to start.
            newest = wait_for(lambda n=before: (lambda its: its[-1] if len(its) > n and its[-1]["status"] != "queued"
                                                else None)(iterations(server, project.id)), 120, "the round to start",
                              interval=0.02)
            if newest["status"] == "running":
                workers[-1].kill()
                if _by_version(server, project.id)[newest["version"]]["status"] == "running":
                    killed = newest["version"]
                    break
                workers.append(Worker(server.env, tmp_path / f"worker-{attempt + 1}.log"))
            wait_for(lambda: iterations(server, project.id)[-1]["status"] in ("succeeded", "failed"), 120,
                     "the round to finish")
        assert killed is not None, "no kill landed in the middle of a round in 5 attempts"

        t0 = time.monotonic()
        workers.append(Worker(server.env, tmp_path / "worker-restarted.log"))
        lost = wait_for(lambda: _by_version(server, project.id)[killed]["status"] == "failed"
                        and _by_version(server, project.id)[killed], 60, f"{killed} failed as lost")
        assert lost["error"].startswith("worker lost"), lost["error"]
        retry = wait_for(lambda: [i for i in iterations(server, project.id)
                                  if i["trigger"] == "retry" and i["status"] in ("succeeded", "failed")],
                         180, "the retry")[0]
        assert retry["status"] == "succeeded", retry["error"]
        assert time.monotonic() - t0 < 120
        assert ls.projects.get(id=project.id).model_version == retry["version"]
        # The dead round's predictions are gone from Label Studio (it may have pushed some before dying).
        leftovers = wait_for(lambda: not [p for p in ls.predictions.list(project=project.id)
                                          if p.model_version == killed] and "clean", 60, f"{killed} cleaned up")
        assert leftovers == "clean"
    finally:
        for worker in workers:
            worker.stop()

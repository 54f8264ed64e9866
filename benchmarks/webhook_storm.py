"""A webhook storm: how fast labelloop acknowledges 1,000 annotation webhooks sent within 10 seconds.

labelloop under gunicorn (4 workers x 4 threads) on loopback, on the embedded SQLite database or on
PostgreSQL (``--database-url``); 20 sender threads fire ANNOTATION_CREATED webhooks for one project at
a steady total rate. Label Studio waits 1 s for a webhook and never retries, so the ack time is what
matters; every webhook must also be recorded (the project's label counter ends at the number sent).
No Label Studio is needed: the project is set up with `/setup` alone and no round is due.

    .venv/bin/python benchmarks/webhook_storm.py [--webhooks 1000] [--seconds 10] [--database-url URL]

Prints the ack latency p50 / p99 / max, the status counts and how many webhooks were recorded, and the
same storm sent to ``/health`` first (no database): the floor the machine, gunicorn and the 20 sender
threads put under any answer, with the webhook's p99 as a ratio of it.
Target (issue "fast at a real project's size"): p99 under 50 ms, nothing lost.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.backend import BackendServer  # noqa: E402

CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
          '<Choice value="pos"/><Choice value="neg"/></Choices></View>')


def event(n: int, project: int) -> dict:
    return {"action": "ANNOTATION_CREATED", "project": {"id": project}, "task": {"id": n + 1},
            "annotation": {"id": n + 1, "task": n + 1, "result": [
                {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["pos"]}}]}}


def storm(url: str, total: int, seconds: float, project: int, senders: int = 20,
          path: str = "/webhook") -> tuple[list[float], Counter]:
    """Send ``total`` webhooks at an even rate over ``seconds`` from ``senders`` threads.

    ``path="/health"`` sends the same requests to a route that touches no database: the floor this
    machine, gunicorn and the sender threads put under any answer, measured in the same run.
    """
    latencies: list[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    start = time.monotonic() + 0.5

    def send(worker: int) -> None:
        session = requests.Session()
        for n in range(worker, total, senders):
            time.sleep(max(0.0, start + n * seconds / total - time.monotonic()))
            t0 = time.perf_counter()
            try:
                if path == "/health":
                    status = session.get(f"{url}{path}", timeout=10).status_code
                else:
                    status = session.post(f"{url}{path}", json=event(n, project), timeout=10).status_code
            except requests.RequestException:
                status = 0
            with lock:
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[status] += 1

    threads = [threading.Thread(target=send, args=(w,)) for w in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, statuses


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--webhooks", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--database-url", help="default: the embedded SQLite file")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labelloop-storm-"))
    env = {"LABEL_STUDIO_URL": None, "LABEL_STUDIO_API_KEY": None, "MODEL_DIR": str(work / "models"),
           "LABELLOOP_RETRAIN_EVERY": "100000000", "DATABASE_URL": args.database_url}
    project = random.randint(1000, 10**6)  # a project of its own: a reused database holds earlier runs' events
    with BackendServer(env, workers=args.workers, threads=4, log_path=work / "backend.log") as server:
        requests.post(f"{server.url}/setup", json={"project": f"{project}.1", "schema": CONFIG},
                      timeout=10).raise_for_status()
        floor, _ = storm(server.url, args.webhooks, args.seconds, project, path="/health")
        latencies, statuses = storm(server.url, args.webhooks, args.seconds, project)
        projects = requests.get(f"{server.url}/metrics", timeout=10).json()["projects"]
        recorded = next(p["labels_since_iteration"] for p in projects if p["project"] == project)
    lat, base = np.array(latencies), np.array(floor)
    db = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{args.webhooks} webhooks in {args.seconds:g} s, gunicorn {args.workers} workers x 4 threads, {db}: "
          f"ack p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, max {lat.max():.1f} ms; "
          f"statuses {dict(statuses)}; recorded {recorded} of {args.webhooks}")
    print(f"same storm on /health (no database; the machine's floor): p50 {np.percentile(base, 50):.1f} ms, "
          f"p99 {np.percentile(base, 99):.1f} ms; webhook / floor p99 ratio "
          f"{np.percentile(lat, 99) / np.percentile(base, 99):.1f}x")
    print(f"target p99 < 50 ms: {'met' if np.percentile(lat, 99) < 50 else 'MISSED'}; "
          f"nothing lost: {'yes' if recorded == args.webhooks else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

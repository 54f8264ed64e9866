"""/predict throughput through gunicorn vs. the raw in-process model, and webhook latency during training.

Runs everything for real on loopback: a Label Studio 1.23.2 (the tests' venv), labelloop under
gunicorn (2 workers x 4 threads, embedded SQLite), a text project of synthetic reviews.

    .venv/bin/python benchmarks/predict_throughput.py [--tasks 5000] [--labelled 400] [--json out.json]

Prints, for batches of 1, 100 and 1000 tasks: HTTP tasks/s, raw model tasks/s (same texts, same
work: probabilities, labels, uncertainty), and their ratio; then the webhook reply time p50/p99
measured while a training round over the whole project runs. Targets (issue #2): ratio >= 0.5 at
1000-task batches; webhook p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.labelstudio.labelconfig import parse_label_config  # noqa: E402
from backend.service.models import resolve_strategy  # noqa: E402
from backend.store import Store  # noqa: E402
from model import persistence  # noqa: E402
from model.scoring import score  # noqa: E402
from model.uncertainty import get_strategy  # noqa: E402
from tests.support.backend import BackendServer  # noqa: E402
from tests.support.labelstudio import LabelStudioServer  # noqa: E402

CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
    '<Choice value="pos"/><Choice value="neg"/><Choice value="neutral"/></Choices></View>'
)
WORDS = {
    "pos": "great lovely excellent wonderful superb delightful fantastic brilliant moving charming".split(),
    "neg": "awful terrible horrible dreadful dull tedious boring broken clumsy bland".split(),
    "neutral": "film plot actor scene story camera music script ending cast".split(),
}
FILLER = "the a and of to it was this that with for on but as at by an".split()


def make_reviews(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = np.random.default_rng(seed)
    labels = list(WORDS)
    out = []
    for i in range(n):
        label = labels[i % 3]
        words = list(rng.choice(FILLER, size=rng.integers(6, 14)))
        words += list(rng.choice(WORDS[label], size=2)) + list(rng.choice(WORDS["neutral"], size=2))
        words += list(rng.choice(WORDS[labels[(i + 1) % 3]], size=1))  # some noise from another class
        rng.shuffle(words)
        out.append((f"#{i} " + " ".join(words), label))
    return out


def choice(label: str) -> list[dict]:
    return [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def wait_iteration(server: BackendServer, project_id: int, number: int, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        its = requests.get(f"{server.url}/projects/{project_id}/iterations", timeout=10).json()["iterations"]
        match = [i for i in its if i["number"] == number and i["status"] in ("succeeded", "failed")]
        if match:
            if match[0]["status"] != "succeeded":
                raise SystemExit(f"iteration {number} failed: {match[0]['error']}")
            return match[0]
        time.sleep(0.2)
    raise SystemExit(f"iteration {number} did not finish in {timeout}s")


def http_throughput(url: str, project_id: int, items: list[tuple[int, str]], batch: int, min_seconds: float) -> float:
    """Tasks per second through /predict for ``(task id, text)`` items, ``batch`` per request."""
    session = requests.Session()
    tasks = [{"id": tid, "data": {"text": t}, "project": project_id} for tid, t in items]
    body_for = [
        json.dumps({"tasks": tasks[s : s + batch], "project": f"{project_id}.1", "label_config": CONFIG, "params": {}})
        for s in range(0, len(tasks) - batch + 1, batch)
    ]
    session.post(f"{url}/predict", data=body_for[0], headers={"Content-Type": "application/json"}, timeout=60)
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < min_seconds or i < 3:
        resp = session.post(
            f"{url}/predict", data=body_for[i % len(body_for)], headers={"Content-Type": "application/json"},
            timeout=60,
        )
        resp.raise_for_status()
        assert len(resp.json()["results"]) == batch
        done += batch
        i += 1
    return done / (time.perf_counter() - start)


def raw_throughput(estimator, texts: list[str], batch: int, min_seconds: float) -> float:
    """The same work /predict does per batch, minus HTTP/JSON: probabilities, labels, uncertainty."""
    spec = parse_label_config(CONFIG)
    strategy = get_strategy(resolve_strategy("auto", "auto", spec))  # what the server scores with (BALD on text)
    batches = [texts[s : s + batch] for s in range(0, len(texts) - batch + 1, batch)]
    done, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < min_seconds or i < 3:
        scored = score(estimator, strategy, batches[i % len(batches)])
        [spec.prediction(lab, s, "it-1") for lab, s in zip(scored.labels, scored.confidence, strict=True)]
        done += batch
        i += 1
    return done / (time.perf_counter() - start)


def _stats(latencies: list[float]) -> dict:
    lat = np.array(latencies)
    return {"n": len(latencies), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max())}


def _predict_one(session: requests.Session, url: str, project_id: int, item: tuple[int, str]) -> float:
    body = {"tasks": [{"id": item[0], "data": {"text": item[1]}}], "project": f"{project_id}.1"}
    t0 = time.perf_counter()
    session.post(f"{url}/predict", json=body, timeout=60).raise_for_status()
    return (time.perf_counter() - t0) * 1000


def worker_pids(master_pid: int) -> list[int]:
    """The gunicorn workers: children of the master, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == master_pid:
                out.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _memory_mb(pid: int, path: str, field: str) -> float | None:
    try:
        text = Path(f"/proc/{pid}/{path}").read_text()
    except OSError:
        return None
    value = next((line.split()[1] for line in text.splitlines() if line.startswith(field)), None)
    return int(value) / 1024 if value else None


def worker_rss_mb(master_pid: int) -> list[float]:
    """Resident memory of each gunicorn worker (pages shared with the master and siblings included)."""
    return sorted(m for m in (_memory_mb(p, "status", "VmRSS:") for p in worker_pids(master_pid)) if m is not None)


def worker_pss_mb(master_pid: int) -> list[float]:
    """Proportional set size of each worker: its private pages plus its share of the shared ones."""
    return sorted(m for m in (_memory_mb(p, "smaps_rollup", "Pss:") for p in worker_pids(master_pid)) if m is not None)


def predict_latency(url: str, project_id: int, unseen: list[tuple[int, str]], seconds: float) -> dict:
    """/predict of one unseen task, back to back, while nothing else runs."""
    session, latencies, start = requests.Session(), [], time.monotonic()
    while time.monotonic() - start < seconds or len(latencies) < 50:
        latencies.append(_predict_one(session, url, project_id, unseen[len(latencies) % len(unseen)]))
        time.sleep(0.02)
    return _stats(latencies)


def webhook_latency_during_training(server: BackendServer, project_id: int, label_of: dict[int, str],
                                    number: int, unseen: list[tuple[int, str]]) -> tuple[dict, dict]:
    """From the moment training is queued until it finishes: annotation webhooks, each followed by a
    /predict of one unseen task; returns both latency summaries."""
    session = requests.Session()
    resp = session.post(f"{server.url}/webhook", json={"action": "START_TRAINING", "project": {"id": project_id}},
                        timeout=10)
    resp.raise_for_status()
    finished = threading.Event()

    def watch() -> None:
        wait_iteration(server, project_id, number)
        finished.set()

    threading.Thread(target=watch, daemon=True).start()
    latencies: list[float] = []
    predict_ms: list[float] = []
    task_ids = list(label_of)
    i = 0
    deadline = time.monotonic() + 600
    while not finished.is_set() and time.monotonic() < deadline:
        tid = task_ids[i % len(task_ids)]
        payload = {
            "action": "ANNOTATION_UPDATED",
            "project": {"id": project_id},
            "task": {"id": tid},
            "annotation": {"id": 10**6 + i, "task": tid, "was_cancelled": False, "result": choice(label_of[tid])},
        }
        t0 = time.perf_counter()
        r = session.post(f"{server.url}/webhook", json=payload, timeout=10)
        latencies.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
        predict_ms.append(_predict_one(session, server.url, project_id, unseen[i % len(unseen)]))
        i += 1
        time.sleep(0.02)
    return _stats(latencies), _stats(predict_ms)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=5000, help="tasks in the Label Studio project")
    parser.add_argument("--labelled", type=int, default=400, help="of which imported with an annotation")
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum measuring time per figure")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    reviews = make_reviews(args.tasks)
    work = Path(tempfile.mkdtemp(prefix="labelloop-bench-"))
    ls = LabelStudioServer().start()
    server = None
    try:
        client = ls.client()
        project = client.projects.create(title="throughput", label_config=CONFIG)
        payload = []
        for i, (text, label) in enumerate(reviews):
            task: dict = {"data": {"text": text}}
            if i < args.labelled:
                task["annotations"] = [{"result": choice(label)}]
            payload.append(task)
        for s in range(0, len(payload), 1000):
            client.projects.import_tasks(id=project.id, request=payload[s : s + 1000])
        label_of = {t.id: dict(reviews)[t.data["text"]]
                    for t in client.tasks.list(project=project.id, page_size=1000)}
        db_url = f"sqlite:///{work / 'labelloop.sqlite3'}"
        server = BackendServer(
            {
                "LABEL_STUDIO_URL": ls.url,
                "LABEL_STUDIO_API_KEY": ls.token,
                "DATABASE_URL": db_url,
                "MODEL_DIR": str(work / "models"),
                "LABELLOOP_RETRAIN_EVERY": "1000000",  # only START_TRAINING trains here
            },
            log_path=work / "backend.log",
        ).start()
        client.ml.create(url=server.url, project=project.id, title="labelloop", is_interactive=False)

        # Round 1 gives the model to measure; round 2 is the training the webhooks race against.
        t0 = time.perf_counter()
        requests.post(f"{server.url}/webhook", json={"action": "START_TRAINING", "project": {"id": project.id}},
                      timeout=10).raise_for_status()
        first = wait_iteration(server, project.id, 1)
        round_seconds = time.perf_counter() - t0

        labelled_ids = set(list(label_of)[: args.labelled])
        store = Store(db_url)
        state = store.serving_state(project.id)
        estimator = persistence.loads(store.artifact(state.iteration_id).data)
        texts = [t for t, _ in reviews]

        # Pool tasks (the round scored them: answered from its stored rows) and unseen ones (computed).
        pool = [(tid, t) for tid, t in ((t.id, t.data["text"]) for t in client.tasks.list(project=project.id,
                page_size=1000)) if tid not in labelled_ids]
        unseen = [(10**8 + i, t) for i, t in enumerate(texts)]
        rows = []
        for batch in (1, 100, 1000):
            cached = http_throughput(server.url, project.id, pool, batch, args.seconds)
            http = http_throughput(server.url, project.id, unseen, batch, args.seconds)
            raw = raw_throughput(estimator, texts, batch, args.seconds)
            rows.append({"batch": batch, "pool_tasks_per_s": cached, "http_tasks_per_s": http,
                         "raw_tasks_per_s": raw, "ratio": http / raw, "pool_ratio": cached / raw})

        idle = predict_latency(server.url, project.id, unseen, seconds=args.seconds)
        rss = worker_rss_mb(server.pid)
        webhook, during = webhook_latency_during_training(server, project.id, label_of, number=2, unseen=unseen)
        second = wait_iteration(server, project.id, 2)
    finally:
        if server is not None:
            server.stop()
        ls.stop()

    print(f"\nlabelloop /predict throughput (gunicorn 2 workers x 4 threads, SQLite; {args.tasks} tasks, "
          f"{args.labelled} labelled)")
    print(f"{'batch':>6} {'pool tasks/s':>13} {'unseen tasks/s':>15} {'raw tasks/s':>12} {'pool/raw':>9} "
          f"{'unseen/raw':>11}")
    for r in rows:
        print(f"{r['batch']:>6} {r['pool_tasks_per_s']:>13.0f} {r['http_tasks_per_s']:>15.0f} "
              f"{r['raw_tasks_per_s']:>12.0f} {r['pool_ratio']:>9.2f} {r['ratio']:>11.2f}")
    print(f"/predict of one unseen task: p99 {idle['p99_ms']:.1f} ms idle, {during['p99_ms']:.1f} ms while round 2 "
          f"ran ({during['n']} requests): ratio {during['p99_ms'] / idle['p99_ms']:.2f} (target <= 2)")
    print(f"\ntraining round 1: {round_seconds:.1f}s end to end ({first['n_pool']} tasks scored, "
          f"{first['metrics']['label_studio']['pushed']} predictions pushed, "
          f"fit {first['fit_seconds']:.2f}s, validation accuracy {first['accuracy']:.3f})")
    print(f"webhook reply while round 2 ran ({webhook['n']} requests): p50 {webhook['p50_ms']:.1f} ms, "
          f"p99 {webhook['p99_ms']:.1f} ms, max {webhook['max_ms']:.1f} ms")
    print(f"serving workers' RSS after the measurements: {', '.join(f'{m:.0f} MB' for m in rss)}")
    target_ratio = rows[-1]["ratio"] >= 0.5
    target_p99 = webhook["p99_ms"] < 50
    print(f"targets: 1000-batch ratio >= 0.5: {'met' if target_ratio else 'MISSED'}; "
          f"webhook p99 < 50 ms: {'met' if target_p99 else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps({"predict": rows, "webhook_during_training": webhook,
                                         "predict_p99_idle": idle, "predict_p99_during_round": during,
                                         "round_seconds": round_seconds, "round2": second}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

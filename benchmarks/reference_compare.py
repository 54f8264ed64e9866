"""labelloop next to the public reference backend, on the same machine, data and Label Studio, in one run.

The reference is HumanSignal/label-studio-ml-backend's example ``label_studio_ml/examples/sklearn_text_classifier``
(TF-IDF 1-3-grams + LogisticRegression, pickled to MODEL_DIR/model.pkl), run from its own checkout and venv;
nothing of it is imported here. Everything runs for real on loopback: one Label Studio 1.23.2 (the tests'
venv), one text project from benchmarks/datasets.py (``docstrings``: 7 classes) with ``--labels`` annotated
tasks and a ``--pool`` of unlabelled ones, then each backend in turn under gunicorn with the same
``--workers`` x ``--threads`` (only one backend runs at a time):

* labelloop: ``labelloop serve``; /setup; one round with ``python -m backend.cli train --project ID``
  (timed end to end: read, fit, evaluate, score the pool, push the queue's head to Label Studio).
* reference: ``gunicorn --preload --timeout 0 _wsgi:app`` in the example's directory, as its Dockerfile starts
  it; one POST /webhook START_TRAINING (its ``fit`` runs inside the request: reads the labelled tasks from
  Label Studio, fits, pickles; timed until it answers and model.pkl exists). Its Dockerfile defaults to 1 worker
  x 8 threads and its docker-compose to LOG_LEVEL=DEBUG (every request body logged); here it gets the same
  workers x threads as labelloop and LOG_LEVEL=WARNING.

Then, for both, measured the same way after a fresh restart of the server: the first /predict (one task the
model has not seen: its model load included); /predict of ``--batch`` pool tasks (their real ids, as Label
Studio sends them) and of the same texts under ids Label Studio does not have ("unseen": labelloop answers
pool tasks from its round's rows and computes only unseen ones; the reference computes both), median
tasks/s of ``--repeats`` requests; /predict of one task, p50/p99 of ``--single`` requests; every gunicorn
worker's VmRSS and proportional set size (PSS: pages shared with the master and the other
workers divided among them) afterwards; accuracy of the predicted label on the pool tasks (the data set
knows their labels).
Prints one table: reference, labelloop, labelloop / reference. Figures, not assertions.

    .venv/bin/python benchmarks/reference_compare.py [--labels 2000] [--pool 2800] [--workers 2] [--threads 4]

Reference setup (once; the checkout lives inside the venv folder, where --ref-dir looks by default)::

    REF=~/.cache/labelloop-ref-venv
    python3 -m venv $REF
    git clone https://github.com/HumanSignal/label-studio-ml-backend $REF/src/label-studio-ml-backend
    git -C $REF/src/label-studio-ml-backend checkout d02cedf35d0e5d21f2f437c120174c62f66bf57a
    # --no-deps: its requirements.txt names label-studio-sdk as a git URL; the PyPI release is installed below
    $REF/bin/pip install --no-deps -e $REF/src/label-studio-ml-backend
    $REF/bin/pip install 'Flask>2.3' 'colorama~=0.4' 'requests~=2.31' 'semver~=3.0.2' \\
        label-studio-sdk gunicorn==23.0.0 scikit-learn 'pillow~=10.3'

(pip resolves label-studio-sdk to 1.0.18 there: the example's pillow~=10.3 excludes the newer SDKs; scikit-learn
is the newest release, the same as labelloop's.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import datasets  # noqa: E402
from benchmarks.predict_throughput import worker_pss_mb, worker_rss_mb  # noqa: E402
from benchmarks.round_benchmark import label_config, make_project, run_round  # noqa: E402
from tests.support.backend import BackendServer  # noqa: E402
from tests.support.labelstudio import LabelStudioServer  # noqa: E402
from tests.support.proc import free_port, stop_process_group, tail, wait_for_http  # noqa: E402

DEFAULT_REF_VENV = Path("~/.cache/labelloop-ref-venv").expanduser()
REF_EXAMPLE = Path("src/label-studio-ml-backend/label_studio_ml/examples/sklearn_text_classifier")
UNSEEN_ID = 10**8  # task ids Label Studio does not have: every backend has to compute these

Pool = list[tuple[int, str, str]]  # (task id, text, true label)


class ReferenceServer:
    """The reference example under gunicorn from its own venv, started the way its Dockerfile does."""

    def __init__(self, venv: Path, example_dir: Path, env: dict[str, str], workers: int, threads: int,
                 log_path: Path) -> None:
        self.venv, self.example_dir, self.workers, self.threads = venv, example_dir, workers, threads
        self.env, self.log_path = env, log_path
        self.port = free_port()
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> ReferenceServer:
        # Its own environment only: no PYTHONPATH or VIRTUAL_ENV leaking labelloop's packages (both have `model`).
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env.update(self.env)
        cmd = [str(self.venv / "bin" / "python"), "-m", "gunicorn", "--preload", "--bind", f"127.0.0.1:{self.port}",
               "--workers", str(self.workers), "--threads", str(self.threads), "--timeout", "0", "_wsgi:app"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, env=env, cwd=self.example_dir, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_http(f"{self.url}/health", timeout=120, proc=self._proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"reference did not start: {exc}\n{tail(self.log_path)}") from exc
        return self

    def stop(self) -> None:
        stop_process_group(self._proc, grace=10.0)
        self._proc = None

    def __enter__(self) -> ReferenceServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def load_texts(data: str, need: int) -> tuple[list[str], list[str]]:
    texts, labels = datasets.DATASETS[data](max_items=need + 200)  # a few are dropped as duplicates
    if len(texts) < need:
        raise SystemExit(f"data set {data} has {len(texts)} texts; --labels + --pool need {need}")
    order = random.Random(0).sample(range(len(texts)), len(texts))  # the builders group texts by class
    return [texts[i] for i in order], [labels[i] for i in order]


def pool_tasks(ls: Any, project_id: int, truth: dict[str, str], labelled: set[str]) -> Pool:
    """The project's unlabelled tasks as Label Studio numbered them, with their true labels."""
    out = []
    for task in ls.tasks.list(project=project_id, fields="task_only", page_size=1000):
        text = task.data["text"]
        if text not in labelled:
            out.append((int(task.id), text, truth[text]))
    return out


class Client:
    """/predict the way Label Studio calls it: tasks, label_config and "<project id>.<created epoch>"."""

    def __init__(self, url: str, project_id: int, config: str) -> None:
        self.url, self.project, self.config = url, f"{project_id}.1", config
        self.session = requests.Session()

    def body(self, tasks: list[tuple[int, str]]) -> bytes:
        return json.dumps({"tasks": [{"id": tid, "data": {"text": text}} for tid, text in tasks],
                           "project": self.project, "label_config": self.config, "params": {}}).encode()

    def predict(self, body: bytes, expect: int) -> tuple[list[dict], float]:
        """The results and the request's seconds."""
        t0 = time.perf_counter()
        resp = self.session.post(f"{self.url}/predict", data=body, headers={"Content-Type": "application/json"},
                                 timeout=600)
        seconds = time.perf_counter() - t0
        resp.raise_for_status()
        results = resp.json()["results"]
        if len(results) != expect:
            raise RuntimeError(f"/predict answered {len(results)} results for {expect} tasks: {resp.text[:300]}")
        return results, seconds


def predicted_label(result: dict) -> str | None:
    try:
        return result["result"][0]["value"]["choices"][0]
    except (KeyError, IndexError, TypeError):
        return None


def measure_serving(client: Client, master_pid: int, pool: Pool, args: argparse.Namespace) -> dict[str, float]:
    """What both backends get measured on, right after a fresh start; the same calls in the same order."""
    out: dict[str, float] = {}
    unseen = [(UNSEEN_ID + i, text) for i, (_, text, _) in enumerate(pool)]
    _, seconds = client.predict(client.body(unseen[:1]), 1)  # the first request of a fresh worker loads the model
    out["first_ms"] = seconds * 1000
    for _ in range(2 * args.workers):  # every worker loads its model before anything is timed
        client.predict(client.body(unseen[1:2]), 1)
    batch = min(args.batch, len(pool))
    for name, items in (("pool", [(tid, text) for tid, text, _ in pool]), ("unseen", unseen)):
        body = client.body(items[:batch])
        client.predict(body, batch)  # warm-up
        rates = [batch / client.predict(body, batch)[1] for _ in range(args.repeats)]
        out[f"batch_{name}_tps"] = statistics.median(rates)
        ms = [client.predict(client.body(items[i % len(items) : i % len(items) + 1]), 1)[1] * 1000
              for i in range(args.single)]
        out[f"single_{name}_p50_ms"] = float(np.percentile(ms, 50))
        out[f"single_{name}_p99_ms"] = float(np.percentile(ms, 99))
    right = 0
    for start in range(0, len(pool), 1000):  # accuracy over every pool task
        chunk = pool[start : start + 1000]
        results, _ = client.predict(client.body([(tid, text) for tid, text, _ in chunk]), len(chunk))
        right += sum(predicted_label(r) == label for r, (_, _, label) in zip(results, chunk, strict=True))
    out["accuracy"] = right / len(pool)
    rss, pss = worker_rss_mb(master_pid), worker_pss_mb(master_pid)
    out["rss_max_mb"], out["rss_sum_mb"], out["workers_seen"] = max(rss), sum(rss), len(rss)
    out["pss_max_mb"] = max(pss) if pss else float("nan")
    return out


def labelloop_side(ls_server: LabelStudioServer, project_id: int, config: str, pool: Pool, work: Path,
                   args: argparse.Namespace) -> dict[str, float]:
    env = {"LABEL_STUDIO_URL": ls_server.url, "LABEL_STUDIO_API_KEY": ls_server.token,
           "MODEL_DIR": str(work / "labelloop-models"), "LABELLOOP_RETRAIN_EVERY": "1000000"}

    def server() -> BackendServer:
        return BackendServer(env, log_path=work / "labelloop.log", workers=args.workers, threads=args.threads)

    with server() as srv:
        requests.post(f"{srv.url}/setup", json={"project": f"{project_id}.1", "schema": config},
                      timeout=30).raise_for_status()
        iteration, wall = run_round(srv, project_id)
    if iteration["status"] != "succeeded":
        raise RuntimeError(f"labelloop round failed: {iteration['error']}")
    timings = iteration["metrics"]["timings"]
    out = {"train_s": wall, "train_core_s": sum(timings.get(k, 0.0) for k in ("read", "fit", "save"))}
    print(f"  labelloop: round {wall:.1f} s (steps: "
          + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()) + ")", flush=True)
    with server() as srv:
        assert srv.pid is not None
        out.update(measure_serving(Client(srv.url, project_id, config), srv.pid, pool, args))
    return out


def reference_side(ls_server: LabelStudioServer, project_id: int, config: str, pool: Pool, work: Path,
                   args: argparse.Namespace) -> dict[str, float]:
    model_dir = work / "reference-models"
    env = {"LABEL_STUDIO_HOST": ls_server.url,  # what the example reads
           "LABEL_STUDIO_URL": ls_server.url,  # what label_studio_ml's base class reads
           "LABEL_STUDIO_API_KEY": ls_server.token, "MODEL_DIR": str(model_dir), "LOG_LEVEL": "WARNING",
           "PYTHONUNBUFFERED": "1"}

    def server() -> ReferenceServer:
        return ReferenceServer(args.ref_venv, args.ref_dir, env, args.workers, args.threads,
                               work / "reference.log")

    # Label Studio's own START_TRAINING payload has no "annotation"; the example's fit() reads the project id
    # from data["annotation"]["project"], so it is given here (an ANNOTATION_CREATED webhook carries it).
    payload = {"action": "START_TRAINING", "project": {"id": project_id, "label_config": config},
               "annotation": {"project": project_id}}
    with server() as srv:
        t0 = time.perf_counter()
        resp = requests.post(f"{srv.url}/webhook", json=payload, timeout=1800)
        wall = time.perf_counter() - t0
        if resp.status_code >= 400 or resp.json().get("status") != "ok":
            raise RuntimeError(f"reference training failed: HTTP {resp.status_code} {resp.text[:300]}\n"
                               f"{tail(work / 'reference.log')}")
    if not (model_dir / "model.pkl").exists():
        raise RuntimeError(f"reference training left no {model_dir / 'model.pkl'}\n{tail(work / 'reference.log')}")
    print(f"  reference: fit {wall:.1f} s (model.pkl {(model_dir / 'model.pkl').stat().st_size / 1e6:.1f} MB)",
          flush=True)
    out = {"train_s": wall, "train_core_s": wall}
    with server() as srv:
        out.update(measure_serving(Client(srv.url, project_id, config), srv.pid, pool, args))
    return out


ROWS: list[tuple[str, str, Callable[[float], str]]] = [
    ("train_s", "training, trigger to model served, s (labelloop: whole round)", lambda v: f"{v:.2f}"),
    ("train_core_s", "training: read + fit + save only, s", lambda v: f"{v:.2f}"),
    ("first_ms", "first /predict after a fresh start (1 task, model load), ms", lambda v: f"{v:.0f}"),
    ("batch_pool_tps", "/predict {batch} pool tasks, tasks/s (median)", lambda v: f"{v:.0f}"),
    ("batch_unseen_tps", "/predict {batch} unseen tasks, tasks/s (median)", lambda v: f"{v:.0f}"),
    ("single_pool_p50_ms", "/predict 1 pool task, p50 ms", lambda v: f"{v:.1f}"),
    ("single_pool_p99_ms", "/predict 1 pool task, p99 ms", lambda v: f"{v:.1f}"),
    ("single_unseen_p50_ms", "/predict 1 unseen task, p50 ms", lambda v: f"{v:.1f}"),
    ("single_unseen_p99_ms", "/predict 1 unseen task, p99 ms", lambda v: f"{v:.1f}"),
    ("rss_max_mb", "largest worker VmRSS, MB", lambda v: f"{v:.0f}"),
    ("rss_sum_mb", "all workers' VmRSS, MB", lambda v: f"{v:.0f}"),
    ("pss_max_mb", "largest worker PSS (its share of shared pages), MB", lambda v: f"{v:.0f}"),
    ("accuracy", "accuracy on the pool tasks", lambda v: f"{v:.3f}"),
]


def print_table(ref: dict[str, float], ll: dict[str, float], args: argparse.Namespace, n_pool: int) -> None:
    batch = min(args.batch, n_pool)
    print(f"\nreference (sklearn_text_classifier) vs labelloop: {args.labels} labels, {n_pool} pool tasks, "
          f"gunicorn {args.workers} workers x {args.threads} threads each; ratio = labelloop / reference")
    header = f"{'':64} {'reference':>10} {'labelloop':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for key, name, fmt in ROWS:
        r, v = ref[key], ll[key]
        ratio = f"{v / r:.2f}" if r else "-"
        print(f"{name.format(batch=batch):64} {fmt(r):>10} {fmt(v):>10} {ratio:>7}")
    print(f"(workers measured: reference {ref['workers_seen']:.0f}, labelloop {ll['workers_seen']:.0f}; "
          f"{args.repeats} batch requests, {args.single} single requests each)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, default=2000, help="annotated tasks in the project")
    parser.add_argument("--pool", type=int, default=2800, help="unlabelled tasks in the project")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, the same for both backends")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker, the same for both backends")
    parser.add_argument("--batch", type=int, default=1000, help="tasks per /predict in the throughput rows")
    parser.add_argument("--repeats", type=int, default=5, help="timed batch requests (the median is shown)")
    parser.add_argument("--single", type=int, default=50, help="timed one-task requests for p50/p99")
    parser.add_argument("--data", default="docstrings", help="a data set of benchmarks/datasets.py")
    parser.add_argument("--ref-venv", type=Path, default=DEFAULT_REF_VENV, help="the reference's venv")
    parser.add_argument("--ref-dir", type=Path, default=None,
                        help="the reference example's directory (default: REF_VENV/" + str(REF_EXAMPLE) + ")")
    parser.add_argument("--json", type=Path, help="also write both sides' figures here")
    args = parser.parse_args()
    args.ref_venv = args.ref_venv.expanduser()
    args.ref_dir = (args.ref_dir or args.ref_venv / REF_EXAMPLE).expanduser().resolve()
    if not (args.ref_dir / "_wsgi.py").exists() or not (args.ref_venv / "bin" / "python").exists():
        raise SystemExit(f"reference not set up ({args.ref_dir}/_wsgi.py, {args.ref_venv}/bin/python): "
                         "see this script's docstring")

    texts, labels = load_texts(args.data, args.labels + args.pool)
    truth = dict(zip(texts, labels, strict=True))
    config = label_config(sorted(set(labels)))
    work = Path(tempfile.mkdtemp(prefix="labelloop-refcmp-"))
    ls_server = LabelStudioServer().start()
    try:
        ls = ls_server.client()
        project_id = make_project(ls, texts, labels, args.labels, args.pool)
        pool = pool_tasks(ls, project_id, truth, set(texts[: args.labels]))
        print(f"project {project_id}: {args.labels} labelled, {len(pool)} pool tasks; logs in {work}", flush=True)
        ll = labelloop_side(ls_server, project_id, config, pool, work, args)
        ref = reference_side(ls_server, project_id, config, pool, work, args)
    finally:
        ls_server.stop()
    print_table(ref, ll, args, len(pool))
    if args.json:
        args.json.write_text(json.dumps({"reference": ref, "labelloop": ll, "args": {
            k: str(v) for k, v in vars(args).items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""One training round at a real project's size, step by step, against a real Label Studio.

Everything runs for real on loopback: Label Studio 1.23.2 (the tests' venv), labelloop under gunicorn
on the embedded SQLite database, a text project built from real text on this machine
(benchmarks/datasets.py). For each size, a fresh project gets ``labels`` annotated tasks and ``pool``
unlabelled ones (imported with their annotations in bulk), then ``labelloop train`` runs ``--rounds``
rounds in the foreground, ``--more-labels`` tasks annotated through the API before each later one. The
first round reads every task from Label Studio; later ones read the labelled tasks and only the tasks
Label Studio changed (backend/service/reading.py). The round's own step times come from its history
row (metrics.timings: read, split, fit, evaluate, score, order, stopping, save, push), next to the wall
time of the whole command.

    .venv/bin/python benchmarks/round_benchmark.py [--data docstrings] [--sizes 500:2500,1000:5000,2000:10000]

Prints one row per size and round: labels, pool, the read mode, each step's seconds, the round's total,
the time into the round at which Label Studio served the new order (the queue's head pushed and the
version set; the rest of the push only adds pre-labels), the command's wall time, and how the total
grew against labels + pool (1.0 = linear; against the same round of the smallest size). Figures, not assertions.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import datasets  # noqa: E402
from tests.support.backend import BackendServer  # noqa: E402
from tests.support.labelstudio import LabelStudioServer  # noqa: E402

STEPS = ("read", "split", "fit", "read_pool", "evaluate", "score", "order", "stopping", "save", "push")


def label_config(classes: list[str]) -> str:
    choices = "".join(f'<Choice value="{c}"/>' for c in classes)
    return f'<View><Text name="text" value="$text"/><Choices name="label" toName="text">{choices}</Choices></View>'


def make_project(ls, texts: list[str], labels: list[str], n_labelled: int, n_pool: int) -> int:
    """A project with ``n_labelled`` annotated tasks and ``n_pool`` unlabelled ones, imported in bulk."""
    classes = sorted(set(labels))
    project = ls.projects.create(title=f"round-{n_labelled}-{uuid.uuid4().hex[:6]}", label_config=label_config(classes))
    tasks = []
    for i in range(n_labelled + n_pool):
        task: dict = {"data": {"text": texts[i]}}
        if i < n_labelled:
            task["annotations"] = [{"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                                "value": {"choices": [labels[i]]}}]}]
        tasks.append(task)
    for start in range(0, len(tasks), 2000):
        ls.projects.import_tasks(id=project.id, request=tasks[start : start + 2000])
    return int(project.id)


def label_more(ls, project_id: int, texts: list[str], labels: list[str], n_labelled: int, count: int,
               round_no: int) -> None:
    """Annotate ``count`` more pool tasks (the next ones by id) through the API, as annotators would."""
    unlabelled = ls.tasks.list(project=project_id, fields="task_only", page_size=count, query=json.dumps(
        {"filters": {"conjunction": "and", "items": [{"filter": "filter:tasks:total_annotations",
                                                      "operator": "equal", "type": "Number", "value": 0}]}}))
    task_ids = [int(t.id) for t in itertools.islice(unlabelled, count)]
    first_id = int(next(iter(ls.tasks.list(project=project_id, fields="task_only", page_size=1))).id)  # id order
    for task_id in task_ids[:count]:
        label = labels[task_id - first_id]
        ls.annotations.create(id=task_id, result=[{"from_name": "label", "to_name": "text", "type": "choices",
                                                   "value": {"choices": [label]}}])


def run_round(server: BackendServer, project_id: int) -> tuple[dict, float]:
    """`labelloop train --project` in the foreground; returns the round's history row and the wall time."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "backend.cli", "train", "--project", str(project_id)],
                         env={**os.environ, **{k: v for k, v in server.env.items() if v is not None}}, cwd=REPO,
                         capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"labelloop train failed:\n{out.stdout}\n{out.stderr}")
    history = requests.get(f"{server.url}/projects/{project_id}/iterations", timeout=30).json()["iterations"]
    return history[-1], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="docstrings", help="a data set of benchmarks/datasets.py")
    parser.add_argument("--sizes", default="500:2500,1000:5000,2000:10000", help="labels:pool,...")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds per size: the first reads every task, later ones only what changed")
    parser.add_argument("--more-labels", type=int, default=50, help="tasks labelled between rounds")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in size.split(":")) for size in args.sizes.split(",")]
    need = max(a + b for a, b in sizes)
    texts, labels = datasets.DATASETS[args.data](max_items=need + 200)  # a few are dropped as duplicates
    if len(texts) < need:
        raise SystemExit(f"data set {args.data} has {len(texts)} texts; the sizes need {need}")
    order = random.Random(0).sample(range(len(texts)), len(texts))  # the builders group texts by class
    texts, labels = [texts[i] for i in order], [labels[i] for i in order]

    work = Path(tempfile.mkdtemp(prefix="labelloop-round-"))
    ls_server = LabelStudioServer().start()
    rows = []
    try:
        ls = ls_server.client()
        env = {"LABEL_STUDIO_URL": ls_server.url, "LABEL_STUDIO_API_KEY": ls_server.token,
               "MODEL_DIR": str(work / "models"), "LABELLOOP_RETRAIN_EVERY": "1000000"}
        with BackendServer(env, log_path=work / "backend.log") as server:
            for n_labelled, n_pool in sizes:
                project_id = make_project(ls, texts, labels, n_labelled, n_pool)
                requests.post(f"{server.url}/setup", json={"project": f"{project_id}.1",
                                                           "schema": label_config(sorted(set(labels)))},
                              timeout=30).raise_for_status()
                for round_no in range(1, args.rounds + 1):
                    if round_no > 1:  # the crowd labelled a few more tasks since the last round
                        label_more(ls, project_id, texts, labels, n_labelled, args.more_labels, round_no)
                    it, wall = run_round(server, project_id)
                    if it["status"] != "succeeded":
                        raise RuntimeError(f"round failed: {it['error']}")
                    timings = it["metrics"]["timings"]
                    read = it["metrics"].get("read", {})
                    rows.append({"labels": it["labels_used"], "pool": it["n_pool"], "round": round_no,
                                 "read_mode": read.get("mode", "?"), "steps": timings,
                                 "round_s": sum(timings.values()), "wall_s": wall, "accuracy": it["accuracy"],
                                 # the round's steps until Label Studio served its order (head pushed, version set)
                                 "order_live_s": sum(timings.values()) - timings.get("push", 0.0)
                                 + it["metrics"]["label_studio"].get("order_live_after_s", timings.get("push", 0.0))})
                    print(f"  {it['labels_used']} labels + {it['n_pool']} pool, round {round_no} "
                          f"({rows[-1]['read_mode']} read): round {rows[-1]['round_s']:.1f} s (wall {wall:.1f} s)",
                          flush=True)
    finally:
        ls_server.stop()
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


def print_table(rows: list[dict]) -> None:
    head = ["labels", "pool", "round", "mode", *STEPS, "round s", "order live s", "wall s", "growth"]
    print(" | ".join(head))
    for row in rows:
        base = next(r for r in rows if r["round"] == row["round"])  # growth: against the same kind of round
        size_ratio = (row["labels"] + row["pool"]) / (base["labels"] + base["pool"])
        growth = (row["round_s"] / base["round_s"]) / size_ratio
        cells = [str(row["labels"]), str(row["pool"]), str(row["round"]), row["read_mode"],
                 *(f"{row['steps'].get(s, 0.0):.2f}" for s in STEPS),
                 f"{row['round_s']:.1f}", f"{row['order_live_s']:.1f}", f"{row['wall_s']:.1f}", f"{growth:.2f}"]
        print(" | ".join(cells))


if __name__ == "__main__":
    main()

"""What pushing predictions costs in a real Label Studio, by call size and by project size.

Label Studio 1.23's prediction import (``POST /api/projects/<id>/import/predictions``, with its feature
flags at their defaults) recounts the annotations and predictions of every task in the project after
each call, whatever the call holds. So a call's cost is a fixed part that grows with the project plus
a little per prediction, and a round's push costs least as one call: that is why
``LABELLOOP_PUSH_BATCH_SIZE`` defaults to the push limit (500).

For each project size (a real text project from benchmarks/datasets.py, a tenth of it labelled), the
script times calls of 1, 100 and 500 predictions, a single prediction through ``POST /api/predictions``,
and the same 500 predictions pushed as 5 calls of 100 against 1 call of 500 (the ratio is printed).

    .venv/bin/python benchmarks/push_cost.py [--sizes 1200,12000] [--repeats 2]

Figures, not assertions.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import datasets  # noqa: E402
from benchmarks.round_benchmark import make_project  # noqa: E402
from tests.support.labelstudio import LabelStudioServer  # noqa: E402


def prediction(task_id: int, label: str, version: str) -> dict:
    return {"task": task_id, "model_version": version, "score": random.random(),
            "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]}


def timed_push(ls, project_id: int, batch: list[dict], batch_size: int) -> float:
    """Seconds to push ``batch`` in calls of ``batch_size``."""
    began = time.perf_counter()
    for start in range(0, len(batch), batch_size):
        ls.projects.import_predictions(id=project_id, request=batch[start : start + batch_size])
    return time.perf_counter() - began


def measure(ls, project_id: int, pool: list[int], label: str, repeats: int) -> dict[str, float]:
    """Median seconds per case; every case pushes to tasks under a fresh model version."""
    versions = iter(range(10**6))

    def batch(n: int) -> list[dict]:
        version = f"probe-{next(versions)}"
        return [prediction(t, label, version) for t in pool[:n]]

    out: dict[str, float] = {}
    for size in (1, 100, 500):
        out[f"one call of {size}"] = statistics.median(
            timed_push(ls, project_id, batch(size), size) for _ in range(repeats))
    http = ls._client_wrapper.httpx_client  # noqa: SLF001 - the SDK has no public wrapper for this route
    singles = []
    for _ in range(max(3, repeats)):
        began = time.perf_counter()
        http.request("api/predictions/", method="POST", json=batch(1)[0]).raise_for_status()
        singles.append(time.perf_counter() - began)
    out["POST /api/predictions, one"] = statistics.median(singles)
    for calls, size in ((5, 100), (1, 500)):
        out[f"500 as {calls} call(s) of {size}"] = statistics.median(
            timed_push(ls, project_id, batch(500), size) for _ in range(repeats))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1200,12000", help="project sizes (tasks), comma-separated")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", default="docstrings", help="a data set of benchmarks/datasets.py")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    texts, labels = datasets.DATASETS[args.data](max_items=max(sizes) + 200)
    order = random.Random(0).sample(range(len(texts)), len(texts))
    texts, labels = [texts[i] for i in order], [labels[i] for i in order]
    server = LabelStudioServer().start()
    results: dict[int, dict[str, float]] = {}
    try:
        ls = server.client()
        for size in sizes:
            n_labelled = size // 10
            project_id = make_project(ls, texts, labels, n_labelled, size - n_labelled)
            ids = sorted(int(t.id) for t in ls.tasks.list(project=project_id, fields="task_only", page_size=1000))
            results[size] = measure(ls, project_id, ids[n_labelled:], labels[0], args.repeats)
            print(f"  project of {size} tasks measured", flush=True)
    finally:
        server.stop()
    cases = list(next(iter(results.values())))
    print(f"{'case (seconds, median)':32s}" + "".join(f"{f'{s} tasks':>14s}" for s in sizes))
    for case in cases:
        print(f"{case:32s}" + "".join(f"{results[s][case]:14.3f}" for s in sizes))
    print(f"{'ratio 5x100 / 1x500':32s}" + "".join(
        f"{results[s]['500 as 5 call(s) of 100'] / results[s]['500 as 1 call(s) of 500']:14.2f}" for s in sizes))


if __name__ == "__main__":
    main()

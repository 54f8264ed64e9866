"""The live loop: a simulated crowd labels from Label Studio's ``/next`` (labelloop's order) against a random order.

Everything runs for real on loopback: one Label Studio 1.23.2 on its default SQLite database (as a team
would run it), one ``labelloop serve`` under gunicorn (2 workers, the default role that serves *and*
trains, embedded SQLite), and real text data sets built from this machine (``benchmarks/datasets.py``).

Per data set and seed, ``--pool`` texts and a disjoint held-out set of ``--test`` texts are drawn (seeded,
uniformly). Two Label Studio projects get the same pool, and both are connected to labelloop as their ML
backend (auto-created webhooks; a round every ``--retrain-every`` labels, the server's default policy:
margin + cluster queue, logistic model, 20 % random validation stream). The two arms run at the same time:

``active``
    the crowd asks ``GET /api/projects/{id}/next`` for each task; labelloop's rounds push a confidence
    score for the head of their queue and switch the project to *Uncertainty sampling*, so Label Studio
    serves the lowest score of the current version (before the first round: Label Studio's random fallback).
``random``
    the control: the crowd picks a uniformly random unlabelled task (seeded) and opens it with
    ``GET /api/tasks/{id}/``. Same model kind, same rounds; only the order differs.

The crowd submits the true label with ``POST /api/tasks/{id}/annotations/`` at ``--pace`` labels a second
(per arm; one annotator each), label by label. Any non-2xx answer (or timeout) of Label Studio to ``/next``,
a task fetch or a submit is an *annotator-visible error*: it is counted, and the call is retried with
backoff (a failed submit is retried only after checking that the annotation was not stored).

At each budget (``--budgets``) the arm's crowd pauses. The benchmark waits until labelloop has no round
queued or running and its newest round holds all ``budget`` labels: labels short of ``--retrain-every`` are
trained on by the server itself once no label came for ``--idle-train`` seconds (an "idle" round). Only if
that round does not come within 20 s more does it ask for one through Label Studio's *Start training*
(``POST /api/ml/{id}/train``) -- a "forced" round, counted. Then the held-out texts go
through labelloop's ``/predict`` in one batch (the serving model) and the crowd carries on.

Run it (the real configuration took 50 min on 2 shared cores, 100 min with the older full-read rounds; the smoke
run ~1-2 min)::

    .venv/bin/python benchmarks/live_loop.py --data manpages,docstrings --seeds 3 --budgets 50,150,300 \\
        --pace 5 --pool 1200 --test 600 [--json live_loop.json]
    .venv/bin/python benchmarks/live_loop.py --smoke          # = --budgets 30 --seeds 1 --pool 300 --test 200

It prints one row per (data set, seed, budget) and arm pair:

- ``acc act`` / ``acc rnd``: held-out accuracy of each arm's serving model; ``gap``: active - random, points;
- ``rounds``: rounds that succeeded up to then (active/random), ``forced``: of those, asked for at a budget;
- ``served@b``: labels the serving model held when the crowd submitted its ``b``-th label (what the
  annotators were being ordered by; ``-`` = no model yet);
- ``busy%``: share of the active arm's labels submitted while one of its rounds was running;
- ``lag``: mean number of labels the active arm's order was behind when the crowd fetched a task (labels
  submitted so far minus the labels of the version that ordered it); ``unord``: tasks fetched before any
  version existed (Label Studio's random fallback); ``head%``: share of the other fetches that got the head of
  labelloop's queue (its first still-unlabelled task, in the serving version or the one being published):
  whether Label Studio served labelloop's order at all;
- ``top%``: share of the most-picked class among the labels (active/random), ``errs``: annotator-visible
  errors so far (active/random).

Then a summary per data set and budget: mean gap +- std over seeds, the smallest gap, the number of seeds
where active >= random, mean accuracies and staleness; the pace the crowd actually got, Label Studio's latency
per call and the rounds' durations and step times; every annotator-visible error by call and status; from
Label Studio's log, the requests it answered 5xx and its "database is locked" conflicts by request (on SQLite
it re-runs those requests itself, up to 15 times, so an annotator mostly sees a slow answer); the labelloop
commit; the wall time. ``--json FILE`` writes the configuration, the rows, the summary, each label's
timeline and every error. Figures, not assertions: nothing here is tuned for the active arm to win.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import datasets  # noqa: E402
from tests.support.backend import BackendServer  # noqa: E402
from tests.support.labelstudio import LabelStudioServer  # noqa: E402

FROM_NAME, TO_NAME = "label", "text"
#: How often one call is tried before the arm gives up (each failure is one annotator-visible error).
MAX_ATTEMPTS = 12
REQUEST_TIMEOUT = 60.0


def label_config(classes: list[str]) -> str:
    choices = "".join(f'<Choice value="{c}"/>' for c in classes)
    return (f'<View><Text name="{TO_NAME}" value="$text"/>'
            f'<Choices name="{FROM_NAME}" toName="{TO_NAME}">{choices}</Choices></View>')


def error_detail(resp: requests.Response) -> str:
    """A short reason: JSON bodies as they are, an HTML error page by its title."""
    text = resp.text.strip()
    if text.startswith("<"):
        title = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
        return f"HTML page: {title.group(1).strip() if title else '(no title)'}"[:300]
    return text[:300].replace("\n", " ")


#: What a Label Studio traceback's frames say about the request that hit SQLite's lock.
LOCK_SITES = (
    ("next_task.py", "annotator GET /next"),
    ("tasks/api.py:perform_create", "annotator POST annotation"),
    ("evaluate_predictions", "annotator GET task (Label Studio asks labelloop /predict)"),
    ("delete_predictions", "labelloop DELETE model-versions (pruning old predictions)"),
    ("data_import/", "labelloop POST import/predictions"),
    ("ml/models.py:train", "operator Start training"),
)


def server_errors(log_text: str) -> dict[str, Counter[str]]:
    """Label Studio's own record of trouble, from its log (every line is logged twice; repeats are dropped).

    ``locked``: "database is locked" errors by the request that hit them. On SQLite, Label Studio's
    DatabaseIsLockedRetryMiddleware re-runs such a request up to 15 times (sleeping 1 s, x1.5 each time), so
    most of them reach the caller as a slow answer, not as an error. ``answered_5xx``: requests Label Studio
    did answer with a 5xx, by method and path.
    """
    raw = log_text.splitlines()
    lines = [line for i, line in enumerate(raw) if i == 0 or line != raw[i - 1]]
    locked: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    i = 0
    while i < len(lines):
        line = lines[i]
        request = re.search(r'"(\w+) (/[^ ?"]*)\S* HTTP/[\d.]+" (\d{3})', line)
        if request and int(request.group(3)) >= 500:
            path = re.sub(r"/\d+", "/N", request.group(2))
            answered[f"{request.group(1)} {path} -> {request.group(3)}"] += 1
        if "custom_exception_handler" in line and "database is locked" in line:
            frames = []
            i += 1
            while i < len(lines) and not lines[i].startswith("["):
                frame = re.search(r'label_studio/([\w/]+\.py)", line \d+, in (\w+)', lines[i])
                if frame:
                    frames.append(f"{frame.group(1)}:{frame.group(2)}")
                i += 1
            trace = " ".join(frames)
            site = next((name for key, name in LOCK_SITES if key in trace), frames[0] if frames else "(unknown)")
            locked[site] += 1
            continue
        i += 1
    return {"locked": locked, "answered_5xx": answered}


def code_version() -> str:
    """The commit the labelloop server runs (and whether files differ from it): others edit backend/ concurrently."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "backend", "model")
    return head + (" + uncommitted changes in backend/ or model/" if dirty else "")


def parse_time(value: str | None) -> float | None:
    """An ISO timestamp from labelloop's history as epoch seconds (naive values are UTC)."""
    if not value:
        return None
    stamp = datetime.fromisoformat(value)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


# ------------------------------------------------------------------------------------------- records
@dataclass
class ErrorRecord:
    """One non-2xx answer (or transport failure) the crowd saw."""

    arm: str
    call: str  # next | fetch | submit
    status: int | None  # None: timeout / connection error
    detail: str
    at: float


@dataclass
class LabelRecord:
    """One label: which task, when it was fetched and submitted."""

    n: int
    task_id: int
    label: str
    fetched_at: float
    submitted_at: float


@dataclass
class Measurement:
    """An arm at one budget."""

    budget: int
    accuracy: float
    version: str
    version_labels: int
    rounds: int
    forced: int
    failed_rounds: int
    served_at_budget: int | None  # labels of the version serving when the budget-th label was submitted
    busy_labels: int  # labels submitted while a round of this project was running
    mean_lag: float  # labels the ordering version was behind at fetch time (over fetches with a version)
    unordered: int  # fetches before any version existed
    top_class_share: float
    errors: int
    settle_seconds: float
    settle_timed_out: bool
    idle_rounds: int = 0  # rounds the server started on its own after a quiet spell (LABELLOOP_IDLE_TRAIN)
    control: dict[str, Any] | None = None  # the serving round's own "active vs random" (--control-fraction)
    head_fetches: int = 0  # active arm: fetches that got the head of labelloop's queue (see Arm.head_share)
    ordered_fetches: int = 0  # fetches made while some version was serving


@dataclass
class ArmResult:
    arm: str
    project_id: int
    measurements: list[Measurement] = field(default_factory=list)
    labels: list[LabelRecord] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)
    labelling_seconds: float = 0.0
    call_seconds: dict[str, list[float]] = field(default_factory=dict)  # successful calls' latency by kind
    iterations: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None


class CrowdError(RuntimeError):
    """A call kept failing after every retry."""


# ------------------------------------------------------------------------------------------- the crowd
class Arm:
    """One simulated annotator on one project: fetch, think, submit; pause and measure at each budget."""

    def __init__(self, arm: str, ls_url: str, ls_headers: dict[str, str], backend_url: str, project_id: int,
                 ml_id: int, truth: dict[int, str], test: tuple[list[str], list[str]], budgets: list[int],
                 pace: float, seed: int, settle_timeout: float, log: Callable[[str], None],
                 idle_train: float = 10.0) -> None:
        self.arm = arm
        self.ls_url = ls_url
        self.backend_url = backend_url
        self.project_id = project_id
        self.ml_id = ml_id
        self.truth = truth
        self.test_texts, self.test_labels = test
        self.budgets = budgets
        self.interval = 1.0 / pace
        self.rng = random.Random(seed)
        self.settle_timeout = settle_timeout
        self.log = log
        self.session = requests.Session()
        self.session.headers.update(ls_headers)
        self.result = ArmResult(arm=arm, project_id=project_id)
        self.unlabelled = sorted(truth)
        self._unlabelled_set = set(self.unlabelled)
        self.forced = 0
        self.idle_train = idle_train
        self.queues: dict[int, list[int]] = {}

    # -- HTTP with error counting ---------------------------------------------------------------
    def call(self, kind: str, method: str, url: str, *, before_retry: Callable[[], bool] | None = None,
             **kwargs: Any) -> requests.Response | None:
        """The call, retried with backoff; every failed attempt is one annotator-visible error.

        ``before_retry`` returning True means the effect already happened (returns None).
        """
        for attempt in range(MAX_ATTEMPTS):
            try:
                t0 = time.perf_counter()
                resp = self.session.request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
                if 200 <= resp.status_code < 300:
                    self.result.call_seconds.setdefault(kind, []).append(time.perf_counter() - t0)
                    return resp
                self.result.errors.append(ErrorRecord(self.arm, kind, resp.status_code, error_detail(resp),
                                                      time.time()))
            except requests.RequestException as exc:
                self.result.errors.append(ErrorRecord(self.arm, kind, None, f"{type(exc).__name__}: {exc}"[:300],
                                                      time.time()))
            time.sleep(min(0.25 * 2 ** attempt, 5.0))
            if before_retry is not None and before_retry():
                return None
        last = self.result.errors[-1]
        raise CrowdError(f"{self.arm}: {kind} {url} failed {MAX_ATTEMPTS} times (last: {last.status} {last.detail})")

    def annotated(self, task_id: int) -> bool:
        """Whether the task holds an annotation (checked before re-submitting; not an annotator's call)."""
        try:
            resp = self.session.get(f"{self.ls_url}/api/tasks/{task_id}/annotations/", timeout=REQUEST_TIMEOUT)
            return resp.status_code == 200 and bool(resp.json())
        except (requests.RequestException, ValueError):
            return False

    # -- one label ------------------------------------------------------------------------------
    def fetch(self) -> int:
        if self.arm == "active":
            resp = self.call("next", "GET", f"{self.ls_url}/api/projects/{self.project_id}/next/")
            assert resp is not None
            task_id = int(resp.json()["id"])
            if task_id not in self.truth or task_id not in self._unlabelled_set:
                raise CrowdError(f"/next served task {task_id}, which is not an unlabelled pool task")
        else:
            task_id = self.unlabelled[self.rng.randrange(len(self.unlabelled))]
            self.call("fetch", "GET", f"{self.ls_url}/api/tasks/{task_id}/")
        return task_id

    def submit(self, task_id: int, lead_time: float) -> None:
        body = {"result": [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
                            "value": {"choices": [self.truth[task_id]]}}], "lead_time": lead_time}
        self.call("submit", "POST", f"{self.ls_url}/api/tasks/{task_id}/annotations/", json=body,
                  before_retry=lambda: self.annotated(task_id))

    # -- labelloop ------------------------------------------------------------------------------
    def iterations(self) -> list[dict[str, Any]]:
        resp = requests.get(f"{self.backend_url}/projects/{self.project_id}/iterations", timeout=30)
        if resp.status_code == 404:
            return []
        resp.raise_for_status()
        return list(resp.json()["iterations"])

    def settle(self, budget: int) -> tuple[bool, float]:
        """Wait until no round is pending and the newest succeeded one holds ``budget`` labels (forcing one if
        needed). Returns (timed out, seconds waited)."""
        t0 = time.monotonic()
        asked_at = -1.0
        forced_here = 0
        while time.monotonic() - t0 < self.settle_timeout:
            its = self.iterations()
            pending = any(it["status"] in ("queued", "running") for it in its)
            done = [it for it in its if it["status"] == "succeeded"]
            newest = max(done, key=lambda it: it["number"]) if done else None
            if not pending:
                if newest is not None and newest["labels_used"] >= budget:
                    return False, time.monotonic() - t0
                # The server trains on waiting labels after LABELLOOP_IDLE_TRAIN quiet seconds; only if
                # that round does not come, ask for one as an operator would (Start training).
                if (time.monotonic() - t0 > self.idle_train + 20.0 and time.monotonic() - asked_at > 15.0
                        and forced_here < 3):
                    resp = self.session.post(f"{self.ls_url}/api/ml/{self.ml_id}/train", json={},
                                             timeout=REQUEST_TIMEOUT)
                    asked_at = time.monotonic()
                    forced_here += 1
                    self.forced += 1
                    self.log(f"{self.arm}: no round holds {budget} labels (newest "
                             f"{newest['labels_used'] if newest else '-'}): Start training -> HTTP {resp.status_code}")
            time.sleep(1.0)
        return True, time.monotonic() - t0

    def accuracy(self) -> tuple[float, str]:
        tasks = [{"data": {"text": t}} for t in self.test_texts]
        resp = requests.post(f"{self.backend_url}/predict", json={"project": self.project_id, "tasks": tasks},
                             timeout=300)
        resp.raise_for_status()
        body = resp.json()
        results = body["results"]
        if len(results) != len(tasks):
            raise RuntimeError(f"{self.arm}: /predict answered {len(results)} results for {len(tasks)} tasks "
                               f"(model_version {body.get('model_version')})")
        right = sum(r["result"][0]["value"]["choices"] == [y] for r, y in zip(results, self.test_labels, strict=True))
        return right / len(tasks), str(body["model_version"])

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> ArmResult:
        try:
            self._run()
        except Exception as exc:  # reported with the partial result; the other arm carries on
            self.result.failure = f"{type(exc).__name__}: {exc}"
            self.log(f"{self.arm}: FAILED: {self.result.failure}")
        try:
            self.result.iterations = self.iterations()
        except requests.RequestException:
            pass
        return self.result

    def _run(self) -> None:
        last_submit = time.monotonic()
        segment_start = time.monotonic()
        for n in range(1, max(self.budgets) + 1):
            fetched = time.time()
            task_id = self.fetch()
            # Think time: one label every 1/pace seconds of labelling (slow calls eat into it).
            wait = last_submit + self.interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self.submit(task_id, lead_time=time.time() - fetched)
            last_submit = time.monotonic()
            self.result.labels.append(LabelRecord(n, task_id, self.truth[task_id], fetched, time.time()))
            self.unlabelled.remove(task_id)
            self._unlabelled_set.discard(task_id)
            if n in self.budgets:
                self.result.labelling_seconds += time.monotonic() - segment_start
                self.result.measurements.append(self.measure(n))
                m = self.result.measurements[-1]
                self.log(f"{self.arm}: {n} labels -> accuracy {m.accuracy:.3f} ({m.version}, "
                         f"{m.rounds} rounds, settled in {m.settle_seconds:.0f} s)")
                last_submit = segment_start = time.monotonic()

    def measure(self, budget: int) -> Measurement:
        timed_out, waited = self.settle(budget)
        acc, version = self.accuracy()
        its = self.iterations()
        labels = self.result.labels[:budget]
        stats = staleness(labels, its)
        head, ordered = (self.head_share(labels, its) if self.arm == "active" else (0, 0))
        version_labels = next((it["labels_used"] for it in its if it["version"] == version), -1)
        top = Counter(r.label for r in labels).most_common(1)[0][1] / len(labels)
        return Measurement(
            budget=budget, accuracy=acc, version=version, version_labels=version_labels,
            rounds=sum(it["status"] == "succeeded" for it in its),
            forced=sum(it["status"] == "succeeded" and it["trigger"] == "START_TRAINING" for it in its),
            idle_rounds=sum(it["status"] == "succeeded" and it["trigger"] == "idle" for it in its),
            failed_rounds=sum(it["status"] == "failed" for it in its),
            served_at_budget=stats["served_at_last"], busy_labels=stats["busy"], mean_lag=stats["mean_lag"],
            unordered=stats["unordered"], top_class_share=top, errors=len(self.result.errors),
            settle_seconds=waited, settle_timed_out=timed_out, head_fetches=head, ordered_fetches=ordered,
            control=control_of(its, version),
        )

    def queue(self, number: int) -> list[int]:
        """Iteration ``number``'s queue (task ids by rank), from labelloop's history; cached."""
        if number not in self.queues:
            resp = requests.get(f"{self.backend_url}/projects/{self.project_id}/iterations/{number}/scores",
                                params={"limit": len(self.truth)}, timeout=60)
            resp.raise_for_status()
            rows = sorted(resp.json()["scores"], key=lambda r: r["rank"])
            self.queues[number] = [int(r["task_id"]) for r in rows]
        return self.queues[number]

    def head_share(self, labels: list[LabelRecord], its: list[dict[str, Any]]) -> tuple[int, int]:
        """(fetches that got the head of labelloop's queue, fetches made while some version served).

        The head is the first task of the queue still unlabelled at the fetch, in the version serving then or
        in the next one (Label Studio switches during that round's push, before the round is recorded done).
        """
        done = sorted((parse_time(it["finished_at"]) or 0.0, it["number"]) for it in its
                       if it["status"] == "succeeded")
        labelled: set[int] = set()
        head = ordered = 0
        for r in labels:
            idx = [i for i, (t, _) in enumerate(done) if t <= r.fetched_at]
            if idx:
                ordered += 1
                candidates = [done[idx[-1]][1]] + ([done[idx[-1] + 1][1]] if idx[-1] + 1 < len(done) else [])
                for number in candidates:
                    first = next((t for t in self.queue(number) if t not in labelled), None)
                    if first == r.task_id:
                        head += 1
                        break
            labelled.add(r.task_id)
        return head, ordered


def control_of(its: list[dict[str, Any]], version: str) -> dict[str, Any] | None:
    """The serving round's control-stream comparison (``metrics.control``), when the stream is on."""
    it = next((it for it in its if it["version"] == version), None)
    return ((it or {}).get("metrics") or {}).get("control")


def print_control(rows: list[dict[str, Any]]) -> None:
    """What labelloop's own control stream said at each budget, next to what the two arms measured.

    In the random arm the "active" labels are random too: its comparison is a placebo and should hover at 0.
    """
    print()
    print("control stream (the serving round's own comparison; gap in points with its 95 % interval, n labels each)")
    print(f"{'data':<11} {'seed':>4} {'budget':>6} {'measured gap':>12} "
          f"{'active arm says':>26} {'random arm says':>26}")
    for row in rows:
        cells = []
        for arm in ("active", "random"):
            c = row[arm].get("control") or {}
            cells.append(f"skipped: {c['skipped'][:16]}" if "skipped" in c else "-" if not c else
                         f"{100 * c['gap']:+.1f} [{100 * c['gap_low']:+.1f},{100 * c['gap_high']:+.1f}] n={c['n']}")
        print(f"{row['data']:<11} {row['seed']:>4} {row['budget']:>6} {100 * row['gap']:>+12.1f} "
              f"{cells[0]:>26} {cells[1]:>26}")


def staleness(labels: list[LabelRecord], its: list[dict[str, Any]]) -> dict[str, Any]:
    """From the label timeline and the rounds' timestamps: labels submitted while a round ran, how far behind
    the serving version was at each fetch, and what served when the last label was submitted.

    "Serving" = the newest round that had finished (succeeded) by then; Label Studio switches its
    model_version during the round's push, a moment before the round is recorded as finished.
    """
    runs = [(parse_time(it["started_at"]), parse_time(it["finished_at"]) or float("inf"))
            for it in its if it["started_at"]]
    published = sorted((parse_time(it["finished_at"]) or 0.0, it["labels_used"])
                       for it in its if it["status"] == "succeeded")

    def serving(at: float) -> int | None:
        held = [n for t, n in published if t <= at]
        return held[-1] if held else None

    busy = sum(any(s is not None and s <= r.submitted_at < f for s, f in runs) for r in labels)
    lags, unordered = [], 0
    for i, r in enumerate(labels):
        held = serving(r.fetched_at)
        if held is None:
            unordered += 1
        else:
            lags.append(max(0, i - held))  # i labels were submitted before this fetch
    return {"busy": busy, "mean_lag": statistics.fmean(lags) if lags else float("nan"), "unordered": unordered,
            "served_at_last": serving(labels[-1].submitted_at) if labels else None}


# ------------------------------------------------------------------------------------------- one seed
def run_seed(ls_server: LabelStudioServer, backend: BackendServer, name: str, texts: list[str], labels: list[str],
             seed: int, args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, ArmResult]:
    rng = random.Random(zlib.crc32(f"{name}:{seed}".encode()))
    idx = rng.sample(range(len(texts)), args.pool + args.test)
    pool, test = idx[: args.pool], idx[args.pool:]
    classes = sorted(set(labels))
    ls = ls_server.client()
    test_set = ([texts[i] for i in test], [labels[i] for i in test])
    arms: dict[str, Arm] = {}
    projects = []
    try:
        for arm in ("active", "random"):
            project = ls.projects.create(title=f"live-{name}-{seed}-{arm}-{uuid.uuid4().hex[:4]}",
                                         label_config=label_config(classes))
            projects.append(int(project.id))
            ls.projects.import_tasks(id=project.id, request=[{"text": texts[i]} for i in pool])
            label_of = {texts[i]: labels[i] for i in pool}
            truth = {int(t.id): label_of[t.data["text"]] for t in ls.tasks.list(project=project.id)}
            if len(truth) != args.pool:
                raise RuntimeError(f"project {project.id} holds {len(truth)} tasks, expected {args.pool}")
            ml = ls.ml.create(url=backend.url, project=project.id, title="labelloop", is_interactive=False)
            if ls.ml.get(id=ml.id).state != "CO":
                raise RuntimeError(f"labelloop did not connect to project {project.id}")
            arms[arm] = Arm(arm, ls_server.url, ls_server.headers, backend.url, int(project.id), int(ml.id), truth,
                            test_set, args.budget_list, args.pace, seed, args.settle_timeout,
                            lambda msg, n=name, s=seed: log(f"[{n} seed {s}] {msg}"), args.idle_train)
        results: dict[str, ArmResult] = {}
        if args.sequential:
            for arm, runner in arms.items():
                results[arm] = runner.run()
        else:
            threads = [threading.Thread(target=lambda a=a, r=r: results.__setitem__(a, r.run()), name=f"arm-{a}")
                       for a, r in arms.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return results
    finally:
        if not args.keep_projects:
            for pid in projects:
                try:
                    requests.delete(f"{ls_server.url}/api/projects/{pid}/", headers=ls_server.headers, timeout=300)
                except requests.RequestException as exc:
                    log(f"could not delete project {pid}: {exc}")


# ------------------------------------------------------------------------------------------- report
def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


ROW_HEAD = (f"{'data':<11} {'seed':>4} {'budget':>6} {'acc act':>7} {'acc rnd':>7} {'gap':>6} {'rounds':>7} "
            f"{'forced':>6} {'served@b':>9} {'busy%':>5} {'lag':>5} {'unord':>5} {'head%':>5} {'top%':>9} {'errs':>7}")


def row_of(name: str, seed: int, act: Measurement, rnd: Measurement) -> dict[str, Any]:
    return {"data": name, "seed": seed, "budget": act.budget, "active": asdict(act), "random": asdict(rnd),
            "gap": act.accuracy - rnd.accuracy}


def print_row(row: dict[str, Any]) -> None:
    a, r = row["active"], row["random"]
    head = 100 * a["head_fetches"] / a["ordered_fetches"] if a["ordered_fetches"] else None
    served = f"{a['served_at_budget'] if a['served_at_budget'] is not None else '-'}/" \
             f"{r['served_at_budget'] if r['served_at_budget'] is not None else '-'}"
    print(f"{row['data']:<11} {row['seed']:>4} {row['budget']:>6} {a['accuracy']:>7.3f} {r['accuracy']:>7.3f} "
          f"{100 * row['gap']:>+6.1f} {a['rounds']:>3}/{r['rounds']:<3} {a['forced']:>2}/{r['forced']:<3} "
          f"{served:>9} {100 * a['busy_labels'] / row['budget']:>5.0f} {fmt(a['mean_lag'], '5.1f'):>5} "
          f"{a['unordered']:>5} {fmt(head, '5.0f'):>5} "
          f"{100 * a['top_class_share']:>4.0f}/{100 * r['top_class_share']:<4.0f} "
          f"{a['errors']:>3}/{r['errors']:<3}"
          + ("  SETTLE TIMEOUT" if a["settle_timed_out"] or r["settle_timed_out"] else ""), flush=True)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    keys = sorted({(r["data"], r["budget"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for name, budget in keys:
        sel = [r for r in rows if r["data"] == name and r["budget"] == budget]
        gaps = [r["gap"] for r in sel]
        out.append({
            "data": name, "budget": budget, "seeds": len(sel),
            "gap_mean": statistics.fmean(gaps), "gap_std": statistics.stdev(gaps) if len(gaps) > 1 else 0.0,
            "gap_min": min(gaps), "active_ge_random": sum(g >= 0 for g in gaps),
            "acc_active": statistics.fmean(r["active"]["accuracy"] for r in sel),
            "acc_random": statistics.fmean(r["random"]["accuracy"] for r in sel),
            "busy_share": statistics.fmean(r["active"]["busy_labels"] / budget for r in sel),
            "lag": statistics.fmean(r["active"]["mean_lag"] for r in sel),
            "head_share": (sum(r["active"]["head_fetches"] for r in sel)
                           / max(1, sum(r["active"]["ordered_fetches"] for r in sel))),
            "rounds_active": statistics.fmean(r["active"]["rounds"] for r in sel),
            "rounds_random": statistics.fmean(r["random"]["rounds"] for r in sel),
            "forced": sum(r["active"]["forced"] + r["random"]["forced"] for r in sel),
            "idle_rounds": sum(r["active"].get("idle_rounds", 0) + r["random"].get("idle_rounds", 0) for r in sel),
        })
    return out


def print_summary(summary: list[dict[str, Any]]) -> None:
    print()
    print(f"{'data':<11} {'budget':>6} {'seeds':>5} {'gap mean +- std':>16} {'min gap':>7} {'act>=rnd':>8} "
          f"{'acc act':>7} {'acc rnd':>7} {'busy%':>5} {'lag':>5} {'head%':>5} {'rounds a/r':>10} {'idle/forced':>11}")
    for s in summary:
        print(f"{s['data']:<11} {s['budget']:>6} {s['seeds']:>5} "
              f"{100 * s['gap_mean']:>+7.1f} +- {100 * s['gap_std']:<5.1f} {100 * s['gap_min']:>+7.1f} "
              f"{s['active_ge_random']:>4}/{s['seeds']:<3} {s['acc_active']:>7.3f} {s['acc_random']:>7.3f} "
              f"{100 * s['busy_share']:>5.0f} {fmt(s['lag'], '5.1f'):>5} {100 * s['head_share']:>5.0f} "
              f"{s['rounds_active']:>4.1f}/{s['rounds_random']:<4.1f} {s['idle_rounds']:>5}/{s['forced']:<5}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def print_load(runs: list[dict[str, Any]]) -> None:
    """What the crowd actually got: pace, Label Studio's latency per call, and how long rounds took."""
    print()
    for arm in ("active", "random"):
        results = [run["arms"][arm] for run in runs if arm in run["arms"]]
        n_labels = sum(len(r["labels"]) for r in results)
        seconds = sum(r["labelling_seconds"] for r in results)
        calls: dict[str, list[float]] = {}
        for r in results:
            for kind, values in r["call_seconds"].items():
                calls.setdefault(kind, []).extend(values)
        rounds = [it for r in results for it in r["iterations"] if it["status"] == "succeeded"]
        durations = [(parse_time(it["finished_at"]) or 0.0) - (parse_time(it["started_at"]) or 0.0) for it in rounds]
        steps = {k: statistics.median(it["metrics"]["timings"].get(k, 0.0) for it in rounds)
                 for k in ("read", "fit", "score", "order", "push")} if rounds else {}
        latency = ", ".join(f"{k} median {statistics.median(v):.2f} s / p90 {percentile(v, 0.9):.2f} s"
                            for k, v in sorted(calls.items()))
        print(f"{arm:<6}: {n_labels} labels at {n_labels / seconds if seconds else float('nan'):.2f} labels/s "
              f"(asked {runs[0]['pace'] if runs else '?'}); Label Studio latency: {latency}")
        if rounds:
            print(f"        {len(rounds)} rounds, median {statistics.median(durations):.1f} s (p90 "
                  f"{percentile(durations, 0.9):.1f} s); median step s: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in steps.items()))


def print_errors(errors: list[ErrorRecord]) -> None:
    print()
    if not errors:
        print("annotator-visible errors: none")
        return
    print(f"annotator-visible errors: {len(errors)}")
    counts = Counter((e.arm, e.call, e.status, e.detail[:90]) for e in errors)
    for (arm, call, status, detail), n in counts.most_common():
        print(f"  {n:>4} x {arm:<6} {call:<6} {status if status is not None else 'no answer'}: {detail}")


# ------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--data", default="manpages,docstrings",
                        help=f"comma-separated data sets of benchmarks/datasets.py ({', '.join(datasets.DATASETS)})")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (each: new pool / test draw)")
    parser.add_argument("--budgets", default="50,150,300", help="label counts at which both arms are measured")
    parser.add_argument("--pace", type=float, default=5.0, help="labels a second per arm (one annotator each)")
    parser.add_argument("--pool", type=int, default=1200, help="tasks per project")
    parser.add_argument("--test", type=int, default=600, help="held-out texts scored through /predict")
    parser.add_argument("--retrain-every", type=int, default=10, help="LABELLOOP_RETRAIN_EVERY")
    parser.add_argument("--idle-train", type=int, default=10,
                        help="LABELLOOP_IDLE_TRAIN: seconds without a label before waiting labels are trained on")
    parser.add_argument("--strategy", default=None,
                        help="LABELLOOP_STRATEGY for both arms (default: the server's own default)")
    parser.add_argument("--control-fraction", type=float, default=0.0,
                        help="LABELLOOP_CONTROL_FRACTION: each round's own active-vs-random comparison (0 = off)")
    parser.add_argument("--settle-timeout", type=float, default=900.0,
                        help="seconds to wait at a budget for the round holding every label")
    parser.add_argument("--sequential", action="store_true", help="run the two arms one after the other")
    parser.add_argument("--keep-projects", action="store_true", help="do not delete each seed's projects")
    parser.add_argument("--smoke", action="store_true",
                        help="a quick end-to-end check: --budgets 30 --seeds 1 --pool 300 --test 200 --data manpages")
    parser.add_argument("--json", type=Path, help="also write everything as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.budgets, args.seeds, args.pool, args.test, args.data = "30", 1, 300, 200, "manpages"
    args.budget_list = sorted({int(b) for b in args.budgets.split(",") if b.strip()})
    args.data_list = [d.strip() for d in args.data.split(",") if d.strip()]
    if max(args.budget_list) > args.pool:
        parser.error("the largest budget exceeds the pool")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.monotonic()
    lock = threading.Lock()

    def log(msg: str) -> None:
        with lock:
            print(f"  [{time.monotonic() - started:6.0f} s] {msg}", file=sys.stderr, flush=True)

    data = {}
    for name in args.data_list:
        texts, labels = datasets.load(name)
        if len(texts) < args.pool + args.test:
            raise SystemExit(f"data set {name} has {len(texts)} texts; --pool + --test need {args.pool + args.test}")
        data[name] = (texts, labels)
        log(f"{name}: {len(texts)} texts, {len(set(labels))} classes")

    version = code_version()
    log(f"labelloop code: {version}")
    work = Path(tempfile.mkdtemp(prefix="labelloop-live-"))
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LABELLOOP_") or k == "DATABASE_URL"}
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    errors: list[ErrorRecord] = []
    ls_server = LabelStudioServer()
    try:
        ls_server.start()
        log(f"Label Studio on {ls_server.url} (pid {ls_server.pid}, data {ls_server.data_dir})")
        env.update({"LABEL_STUDIO_URL": ls_server.url, "LABEL_STUDIO_API_KEY": ls_server.token,
                    "MODEL_DIR": str(work / "models"), "LABELLOOP_RETRAIN_EVERY": str(args.retrain_every),
                    "LABELLOOP_IDLE_TRAIN": str(args.idle_train),
                    "LABELLOOP_CONTROL_FRACTION": str(args.control_fraction)})
        if args.strategy:
            env["LABELLOOP_STRATEGY"] = args.strategy
        with BackendServer(env, log_path=work / "backend.log", workers=2) as backend:
            log(f"labelloop on {backend.url} (pid {backend.pid}, log {backend.log_path})")
            print(ROW_HEAD, flush=True)
            for name, (texts, labels) in data.items():
                for seed in range(args.seeds):
                    t0 = time.monotonic()
                    res = run_seed(ls_server, backend, name, texts, labels, seed, args, log)
                    act, rnd = res["active"], res["random"]
                    errors += act.errors + rnd.errors
                    runs.append({"data": name, "seed": seed, "seconds": time.monotonic() - t0, "pace": args.pace,
                                 "arms": {a: asdict(r) for a, r in res.items()}})
                    for ma, mr in zip(act.measurements, rnd.measurements, strict=False):
                        rows.append(row_of(name, seed, ma, mr))
                        print_row(rows[-1])
                    for r in (act, rnd):
                        if r.failure:
                            print(f"{name:<11} {seed:>4} {r.arm} arm FAILED: {r.failure}", flush=True)
                        pace = len(r.labels) / r.labelling_seconds if r.labelling_seconds else float("nan")
                        log(f"{r.arm}: effective pace {pace:.2f} labels/s while labelling")
    finally:
        ls_log = ls_server.log_text()
        (work / "label-studio.log").write_text(ls_log)
        ls_server.stop()
    summary = summarise(rows) if rows else []
    if summary:
        print_summary(summary)
    if args.control_fraction > 0 and rows:
        print_control(rows)
    print_load(runs)
    print_errors(errors)
    ls_errors = server_errors(ls_log)
    print(f"Label Studio's log: {sum(ls_errors['answered_5xx'].values())} requests answered 5xx"
          + "".join(f"\n  {n:>4} x {what}" for what, n in ls_errors["answered_5xx"].most_common()))
    print(f"Label Studio's log: {sum(ls_errors['locked'].values())} 'database is locked' errors, retried inside "
          "Label Studio (up to 15 times, 1 s then x1.5: the caller sees a slow answer, not an error), by request:"
          + "".join(f"\n  {n:>4} x {what}" for what, n in ls_errors["locked"].most_common()))
    print(f"logs: {work}/label-studio.log, {work}/backend.log")
    wall = time.monotonic() - started
    print(f"\nwall time {wall / 60:.1f} min ({len(runs)} data set x seed runs, pace {args.pace}/s per arm, "
          f"pool {args.pool}, test {args.test}, retrain every {args.retrain_every}, "
          f"strategy {args.strategy or 'default'}; labelloop at {version})")
    if args.json:
        config = {**{k: v for k, v in vars(args).items() if k != "json"}, "code": version}
        args.json.write_text(json.dumps({"config": config, "wall_seconds": wall, "rows": rows, "summary": summary,
                                         "errors": [asdict(e) for e in errors],
                                         "label_studio_log": {k: dict(v) for k, v in ls_errors.items()},
                                         "runs": runs}, indent=1,
                                        default=str) + "\n")


if __name__ == "__main__":
    main()

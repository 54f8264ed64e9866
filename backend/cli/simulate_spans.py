"""`labelloop simulate-spans`: offline active-learning replay for span (NER) labelling, against random picks.

    labelloop simulate-spans --data spans.jsonl [--strategies least_confidence,mnlp] [--seeds 5]
    labelloop simulate-spans --data export.json      # a Label Studio JSON export of a <Labels> project
    labelloop simulate-spans --dataset synthetic     # templated documents with exact spans

The replay is :mod:`model.spans.simulation` (the server's own tagger, span heuristics and queue);
this module is the command around it: reading the data, running arms x seeds (``--jobs`` processes),
and reporting -- tables, a PNG of the learning curves, a JSON file.

Labelling cost is counted two ways, because a span heuristic may prefer long documents: documents
labelled (the grid every arm shares) and tokens labelled (what the annotators read). Every figure is
given on both axes: exact-span F1 and token-overlap F1 at document budgets and at token budgets, the
paired area vs random per seed (wins / ties / losses) on each axis, and the documents and tokens an
arm needed before its mean F1 reached a share of the full-pool F1 (a tagger trained once on each
seed's whole pool). Fit and predict times are per document.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model.spans import simulation
from model.spans.simulation import RANDOM

DEFAULT_STRATEGIES = "least_confidence,mnlp,token_entropy,token_entropy_mean"
DEFAULT_REPORT_AT = (20, 50, 100, 150, 200, 300, 500)
#: Token budgets default to these shares of the fewest tokens any arm labelled in any seed.
TOKEN_SHARES = (0.25, 0.5, 0.75, 1.0)

EPILOG = """\
data (--data FILE, the format is read from the content):
  JSONL                one {"text": "...", "spans": [{"start": 0, "end": 5, "label": "PER"}]} per line;
                       character offsets, end exclusive (Label Studio's convention)
  Label Studio export  the JSON export of a project with <Labels> over <Text>: each task's newest usable
                       annotation (ground truth first), its labels results; tasks without one are skipped

strategies (comma-separated; `random` is always added as the control arm):
  least_confidence     1 - P(best path): the chance the document needs any correction (the server's default)
  mnlp                 least confidence per tag decision (length-normalised)
  token_entropy        the summed token entropy: favours long, unsure documents
  token_entropy_mean   the mean token entropy
  (classification names map onto these: margin -> least_confidence, entropy -> token_entropy)

example:
  labelloop simulate-spans --data spans.jsonl --seeds 10 --budget 200 --test-size 400 \\
      --jobs 2 --plot curves.png --json curves.json
"""


class SimulationInputError(ValueError):
    """The data or the options cannot be simulated; the message says what to change."""


@dataclass
class SpanData:
    """Fully labelled documents: texts, their spans (character offsets), the label set."""

    name: str
    texts: list[str]
    spans: list[list[dict[str, Any]]]
    labels: list[str]
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- data


def synthetic_data(n: int = 600, seed: int = 0, language: str = "en", ambiguity: float = 0.1) -> SpanData:
    """Templated documents with exact spans (:func:`model.spans.synthetic.make_documents`)."""
    from model.spans.synthetic import LABELS, make_documents

    texts, spans = make_documents(n, seed=seed, language=language, ambiguity=ambiguity)
    return SpanData(f"synthetic-{language}", texts, spans, list(LABELS))


def load_span_file(path: Path, from_name: str | None = None) -> SpanData:
    """A JSONL file of ``{"text", "spans"}`` records or a Label Studio JSON export, told apart by content."""
    if not path.is_file():
        raise SimulationInputError(f"--data {path}: no such file")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SimulationInputError(f"--data {path}: not UTF-8 text ({exc})") from None
    try:
        payload: Any = json.loads(content)
    except json.JSONDecodeError:
        payload = None  # several JSON values: JSONL
    if isinstance(payload, dict) and isinstance(payload.get("tasks"), list):
        payload = payload["tasks"]
    if isinstance(payload, list):
        return spans_from_label_studio(path.name, payload, from_name)
    return spans_from_jsonl(path.name, content)


def spans_from_jsonl(name: str, content: str) -> SpanData:
    """One ``{"text", "spans": [{start, end, label}]}`` object per line; a bad line is refused with its number."""
    texts, targets = [], []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SimulationInputError(f"{name}:{number}: not valid JSON: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise SimulationInputError(f"{name}:{number}: expected an object with a string 'text' and a list "
                                       "'spans' (or a Label Studio JSON export: a list of tasks)")
        raw = record.get("spans", [])
        if not isinstance(raw, list):
            raise SimulationInputError(f"{name}:{number}: 'spans' must be a list")
        spans = [_checked_span(s, record["text"], f"{name}:{number}: spans[{k}]") for k, s in enumerate(raw)]
        texts.append(record["text"])
        targets.append(sorted(spans, key=lambda s: (s["start"], s["end"], s["label"])))
    if not texts:
        raise SimulationInputError(f"{name}: no documents")
    labels = sorted({s["label"] for doc in targets for s in doc})
    return SpanData(name, texts, targets, labels)


def _checked_span(span: Any, text: str, where: str) -> dict[str, Any]:
    if not isinstance(span, dict):
        raise SimulationInputError(f"{where} must be an object with start, end and label")
    start, end, label = span.get("start"), span.get("end"), span.get("label")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise SimulationInputError(f"{where}: start and end must be integer character offsets, got {start!r}, {end!r}")
    if not 0 <= start < end <= len(text):
        raise SimulationInputError(f"{where}: offsets {start}..{end} do not lie inside the text "
                                   f"({len(text)} characters; end is exclusive)")
    if not isinstance(label, str) or not label:
        raise SimulationInputError(f"{where}: label must be a non-empty string, got {label!r}")
    return {"start": start, "end": end, "label": label}


def spans_from_label_studio(name: str, tasks: Sequence[Any], from_name: str | None = None) -> SpanData:
    """A Label Studio export of a ``<Labels>`` project: each task's annotation as the server picks it.

    The annotation is :func:`backend.labelstudio.tasks.pick_annotation`'s (not cancelled, ground
    truth first, then the newest); its ``labels`` results of the one Labels control (``from_name``
    when the export has several) are the spans, a region with several labels one span per label.
    The text is the data field the results point to (``to_name``), or the tasks' only field.
    Tasks without a usable annotation are skipped and counted in the notes.
    """
    from backend.labelstudio.tasks import pick_annotation

    if not tasks or not all(isinstance(t, dict) for t in tasks):
        raise SimulationInputError(f"{name}: expected a JSON list of Label Studio tasks")
    picked = [(t, pick_annotation(t.get("annotations") or [])) for t in tasks]
    control = _labels_control(name, [a for _, a in picked if a is not None], from_name)
    texts, targets, unlabelled = [], [], 0
    for task, annotation in picked:
        if annotation is None:
            unlabelled += 1
            continue
        where = f"{name}: task {task.get('id')}"
        text = _task_text(task, control[1], where)
        spans = []
        for k, item in enumerate(annotation.get("result") or []):
            if isinstance(item, dict) and item.get("type") == "labels" and item.get("from_name") == control[0]:
                spans.extend(_region_spans(item.get("value"), text, f"{where} result[{k}]"))
        texts.append(text)
        targets.append(sorted(spans, key=lambda s: (s["start"], s["end"], s["label"])))
    if not texts:
        raise SimulationInputError(f"{name}: no task has a usable annotation")
    notes = [f"{unlabelled} task(s) without a usable annotation skipped"] if unlabelled else []
    labels = sorted({s["label"] for doc in targets for s in doc})
    return SpanData(name, texts, targets, labels, notes)


def _labels_control(name: str, annotations: list[dict[str, Any]], from_name: str | None) -> tuple[str, str]:
    """(from_name, to_name) of the export's Labels control; several without ``--from-name`` is an error."""
    controls = {(str(r.get("from_name")), str(r.get("to_name"))) for a in annotations for r in a.get("result") or []
                if isinstance(r, dict) and r.get("type") == "labels"}
    if from_name is not None:
        controls = {c for c in controls if c[0] == from_name}
    if not controls:
        wanted = f" named {from_name!r}" if from_name else ""
        raise SimulationInputError(f"{name}: no 'labels' (span) results{wanted} in the annotations; "
                                   "is this an export of a <Labels> project?")
    if len(controls) > 1:
        raise SimulationInputError(f"{name}: several Labels controls ({', '.join(sorted(c[0] for c in controls))}); "
                                   "choose one with --from-name")
    return next(iter(controls))


def _task_text(task: dict[str, Any], to_name: str, where: str) -> str:
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    value = data.get(to_name)
    if value is None and len(data) == 1:
        value = next(iter(data.values()))
    if not isinstance(value, str):
        raise SimulationInputError(f"{where}: data has no text field {to_name!r} (fields: {sorted(data)})")
    return value


def _region_spans(value: Any, text: str, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, dict) or not isinstance(value.get("labels"), list) or not value["labels"]:
        raise SimulationInputError(f"{where}: value must hold start, end and a non-empty labels list")
    start, end = value.get("start"), value.get("end")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
        raise SimulationInputError(f"{where}: start and end must be character offsets (HyperText regions with "
                                   f"XPath offsets cannot be replayed), got {start!r}, {end!r}")
    return [_checked_span({"start": start, "end": end, "label": label}, text, where)
            for label in dict.fromkeys(value["labels"])]


# ----------------------------------------------------------------------------- running


@dataclass
class Plan:
    """What to run: the data, the arms and the settings every curve shares."""

    data: SpanData
    arms: list[str]
    seeds: list[int]
    initial: int
    batch_size: int
    budget: int
    test_size: float | int
    queue: str = "greedy"
    tagger_params: dict[str, Any] = field(default_factory=dict)
    full_pool: bool = True

    def curve_args(self) -> dict[str, Any]:
        return {"initial": self.initial, "batch_size": self.batch_size, "budget": self.budget,
                "test_size": self.test_size, "labels": self.data.labels, "tagger_params": self.tagger_params,
                "queue": self.queue}


def make_plan(data: SpanData, strategies: Sequence[str], seeds: int, initial: int, batch_size: int, budget: int,
              test_size: float | int, queue: str = "greedy", tagger_params: dict[str, Any] | None = None,
              full_pool: bool = True) -> Plan:
    """A checked :class:`Plan` (random always among the arms); SimulationInputError says what is wrong."""
    from model.queue import QUEUES
    from model.simulation import label_grid
    from model.spans.uncertainty import span_strategy_name

    arms = list(dict.fromkeys([*(s.strip() for s in strategies if s.strip()), RANDOM]))
    for arm in arms:
        try:
            span_strategy_name(arm)
        except ValueError as exc:
            raise SimulationInputError(str(exc)) from None
    if queue not in QUEUES:
        raise SimulationInputError(f"--queue {queue!r}: choose from {', '.join(sorted(QUEUES))}")
    if seeds < 1:
        raise SimulationInputError("--seeds must be >= 1")
    if not any(data.spans):
        raise SimulationInputError(f"{data.name}: no document has a span; nothing to learn")
    try:
        pool, _ = simulation.split_documents(len(data.texts), test_size, 0)
        label_grid(initial, batch_size, budget, len(pool))
    except ValueError as exc:
        raise SimulationInputError(f"{exc} (--initial, --batch-size, --budget, --test-size)") from None
    return Plan(data, arms, list(range(seeds)), initial, batch_size, budget, test_size, queue,
                dict(tagger_params or {}), full_pool)


_WORKER: dict[str, Any] = {}


def _init_worker(plan: Plan) -> None:
    from threadpoolctl import threadpool_limits

    _WORKER["plan"] = plan
    # One BLAS thread per process (the cluster queue's SVD / k-means): --jobs parallelises over curves.
    _WORKER["limits"] = threadpool_limits(limits=1)


def _job(kind: str, arm: str, seed: int) -> dict[str, Any]:
    plan: Plan = _WORKER["plan"]
    data = plan.data
    started = time.perf_counter()
    if kind == "full":
        out = simulation.full_pool_scores(data.texts, data.spans, seed=seed, test_size=plan.test_size,
                                          labels=data.labels, tagger_params=plan.tagger_params)
    else:
        out = simulation.run_span_curve(data.texts, data.spans, arm, seed=seed, **plan.curve_args())
    out["seconds"] = time.perf_counter() - started
    return out


def run_plan(plan: Plan, jobs: int = 1, log: Callable[[str], None] | None = None
             ) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, float]]]:
    """Every arm x seed, and the full-pool tagger per seed: ({arm: curves in seed order}, full-pool scores)."""
    work = [("full", "", s) for s in plan.seeds] if plan.full_pool else []  # the longest fits go first
    work += [("curve", arm, s) for s in plan.seeds for arm in plan.arms]
    results: dict[tuple[str, str, int], dict[str, Any]] = {}

    def done(key: tuple[str, str, int], out: dict[str, Any]) -> None:
        results[key] = out
        if log is not None:
            what = "full pool" if key[0] == "full" else key[1]
            f1 = out["f1"] if key[0] == "full" else out["f1"][-1]
            log(f"seed {key[2]} {what:>18}: F1 {f1:.3f}, {out['seconds']:.1f} s  [{len(results)}/{len(work)}]")

    if jobs <= 1:
        _init_worker(plan)
        try:
            for key in work:
                done(key, _job(*key))
        finally:
            _WORKER.pop("limits").restore_original_limits()
    else:
        import multiprocessing

        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                                 initargs=(plan,)) as executor:
            futures = {executor.submit(_job, *key): key for key in work}
            for future in as_completed(futures):
                done(futures[future], future.result())
    curves = {arm: [results[("curve", arm, s)] for s in plan.seeds] for arm in plan.arms}
    return curves, [results[("full", "", s)] for s in plan.seeds] if plan.full_pool else []


# ----------------------------------------------------------------------------- report


def token_budgets(curves: dict[str, list[dict[str, Any]]], shares: Sequence[float] = TOKEN_SHARES) -> list[int]:
    """Token budgets every arm reached in every seed: shares of the smallest final token count, rounded
    down to two significant digits, and no lower than the largest first round (where every arm starts)."""
    last = min(c["tokens_labelled"][-1] for arm in curves.values() for c in arm)
    first = max(c["tokens_labelled"][0] for arm in curves.values() for c in arm)
    out = []
    for share in shares:
        value = share * last
        digits = 10 ** max(int(math.floor(math.log10(value))) - 1, 0) if value >= 1 else 1
        rounded = int(value // digits * digits)
        if rounded >= first and rounded not in out:
            out.append(rounded)
    return out or [last]


def _mean_std(values: Sequence[float | None]) -> dict[str, Any]:
    kept = [float(v) for v in values if v is not None]
    if not kept or len(kept) < len(values):
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(kept)), "std": float(np.std(kept, ddof=1)) if len(kept) > 1 else 0.0}


def _area(differences: Sequence[float | None], tie: float) -> dict[str, Any]:
    from model.simulation import wins_ties_losses

    kept = [d for d in differences if d is not None]
    return {**_mean_std(kept), "per_seed": list(differences), **wins_ties_losses(kept, tie)}


def build_report(plan: Plan, curves: dict[str, list[dict[str, Any]]], full_pool: Sequence[dict[str, float]],
                 report_at: Sequence[int] | None = None, report_tokens: Sequence[int] | None = None,
                 share: float = 0.9, tie: float = 0.005, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document: the config, the full-pool ceiling and per arm its curves and headline figures."""
    from model.simulation import labels_to_reach

    aggregated = {arm: simulation.aggregate_span_curves(c) for arm, c in curves.items()}
    grid = aggregated[RANDOM]["labels"]
    wanted = report_at or [b for b in DEFAULT_REPORT_AT if b < grid[-1]] + [grid[-1]]
    # each budget on the grid (the last round within it), so a column says what it shows
    report_at = list(dict.fromkeys(max(n for n in grid if n <= b) for b in wanted if b >= grid[0]))
    report_tokens = list(report_tokens or token_budgets(curves))
    full = {key: _mean_std([f[key] for f in full_pool]) for key in ("f1", "token_f1", "fit_seconds")}
    target = share * full["f1"]["mean"] if full_pool else None
    arms: dict[str, Any] = {}
    for arm, agg in aggregated.items():
        entry: dict[str, Any] = dict(agg)
        for metric in ("f1", "token_f1"):
            per_doc = np.asarray(agg[f"{metric}_per_seed"])
            entry[f"{metric}_at_documents"] = {str(b): _mean_std(per_doc[:, grid.index(b)]) for b in report_at}
            entry[f"{metric}_at_tokens"] = {
                str(t): _mean_std(simulation.values_at_tokens(agg, t, metric)) for t in report_tokens}
            if arm != RANDOM:
                for axis in ("documents", "tokens"):
                    differences = simulation.area_differences(agg, aggregated[RANDOM], metric, axis)
                    entry[f"{metric}_area_vs_random_{axis}"] = _area(differences, tie)
        reached = None if target is None else labels_to_reach(grid, agg["f1_mean"], target)
        entry["to_full_share"] = {
            "documents": reached,
            "tokens": None if reached is None else agg["tokens_labelled_mean"][grid.index(reached)]}
        entry["seconds"] = float(sum(c["seconds"] for c in curves[arm]))
        arms[arm] = entry
    n_test = len(simulation.split_documents(len(plan.data.texts), plan.test_size, 0)[1])
    config = {
        "dataset": plan.data.name, "n_documents": len(plan.data.texts), "n_test": n_test,
        "n_pool": len(plan.data.texts) - n_test, "labels": plan.data.labels,
        "n_spans": sum(len(s) for s in plan.data.spans), "arms": plan.arms, "seeds": plan.seeds,
        "initial": plan.initial, "batch_size": plan.batch_size, "budget": plan.budget,
        "test_size": plan.test_size, "queue": plan.queue, "tagger_params": plan.tagger_params,
        "report_at": report_at, "report_tokens": report_tokens, "tie_below": tie, "full_share": share,
        "notes": plan.data.notes, **(extra or {}),
    }
    return {"config": config, "full_pool": {**full, "per_seed": list(full_pool)}, "arms": arms}


def _cell(value: dict[str, Any] | None, scale: float = 100.0, signed: bool = False) -> str:
    if not value or value.get("mean") is None:
        return "-"
    sign = "+" if signed else ""
    return f"{scale * value['mean']:{sign}.1f} ±{scale * value['std']:.1f}"


def report_tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report as plain tables, (title, header, rows): F1 and token F1 at document and token budgets
    with the area vs random and W/T/L on that axis, then what reaching the full-pool share cost."""
    config, arms = report["config"], report["arms"]
    tables = []
    for metric, metric_name in (("f1", "exact-span F1"), ("token_f1", "token F1")):
        for axis, budgets, unit in (("documents", config["report_at"], "docs"),
                                    ("tokens", config["report_tokens"], "tokens")):
            header = ["arm", *(f"@{b} {unit}" for b in budgets), "area vs random", "W/T/L"]
            rows = []
            for arm, entry in arms.items():
                row = [arm, *(_cell(entry[f"{metric}_at_{axis}"][str(b)]) for b in budgets)]
                area = entry.get(f"{metric}_area_vs_random_{axis}")
                row += ["-", "-"] if area is None else [
                    _cell(area, signed=True), f"{area['wins']}/{area['ties']}/{area['losses']}"]
                rows.append(row)
            tables.append((f"{metric_name} (%) against {axis} labelled", header, rows))
    full = report["full_pool"]["f1"]
    share = f"{100 * config['full_share']:g} %"
    header = ["arm", f"docs to {share} of full", "tokens then", f"tokens @{config['budget']} docs",
              f"spans @{config['budget']} docs", "fit ms/doc", "predict ms/doc", f"fit s @{config['budget']} docs"]
    rows = []
    for arm, entry in arms.items():
        reach = entry["to_full_share"]
        rows.append([arm, str(reach["documents"]) if reach["documents"] is not None else f">{config['budget']}",
                     f"{reach['tokens']:.0f}" if reach["tokens"] is not None else "-",
                     f"{entry['tokens_labelled_mean'][-1]:.0f} ±{entry['tokens_labelled_std'][-1]:.0f}",
                     f"{entry['spans_labelled_mean'][-1]:.0f}",
                     f"{np.mean(entry['fit_ms_per_doc_mean']):.1f}", f"{np.mean(entry['predict_ms_per_doc_mean']):.2f}",
                     f"{entry['fit_seconds_mean'][-1]:.2f}"])
    title = "cost" + (f" (full-pool F1 {_cell(full)} %)" if full["mean"] is not None else "")
    tables.append((title, header, rows))
    return tables


def caption(report: dict[str, Any]) -> str:
    """What the tables' figures mean, in one paragraph."""
    config = report["config"]
    tie = 100 * config["tie_below"]
    reach = (f" docs to {100 * config['full_share']:g} % of full: first document count whose mean F1 reaches that "
             "share of the full-pool tagger's F1 (trained once per seed on its whole pool); tokens then: mean "
             "tokens labelled by then." if report["full_pool"]["per_seed"] else "")
    return (f"mean ±std over {len(config['seeds'])} seeds; area vs random: per seed, the arm's mean F1 over the "
            "shared axis (documents: the grid; tokens: linear between rounds, up to the smaller final count) "
            f"minus random's on the same split and start, in points; W/T/L: seeds >= +{tie:g}, within ±{tie:g}, "
            f"<= -{tie:g} points. @N tokens: the F1 of the last round within N tokens.{reach} fit / predict ms "
            "per document: mean over rounds (fit: per training document).")


def render_rich(report: dict[str, Any]) -> list[Any]:
    """rich Tables for the terminal."""
    from rich.table import Table

    config = report["config"]
    out = []
    for title, header, rows in report_tables(report):
        table = Table(title=f"{config['dataset']}: {title}")
        for k, name in enumerate(header):
            table.add_column(name, justify="left" if k == 0 else "right", no_wrap=k == 0)
        for row in rows:
            table.add_row(*row)
        out.append(table)
    return out


def render_markdown(report: dict[str, Any]) -> str:
    """The tables as Markdown (for the docs), each under a bold title."""
    parts = []
    for title, header, rows in report_tables(report):
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["--:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def headline(report: dict[str, Any]) -> str:
    config = report["config"]
    full = report["full_pool"]["f1"]
    ceiling = f", full-pool F1 {_cell(full)} %" if full["mean"] is not None else ""
    return (f"{config['dataset']}: {config['n_pool']} pool / {config['n_test']} test documents, "
            f"{len(config['labels'])} labels, {config['initial']} initial + batches of {config['batch_size']} "
            f"to {config['budget']}, queue {config['queue']}, {len(config['seeds'])} seeds{ceiling}")


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Exact-span F1 against documents and against tokens labelled: mean per arm, ±1 std band over seeds."""
    import logging

    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    config = report["config"]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    by_docs, by_tokens = fig.subplots(1, 2, sharey=True)
    for arm, entry in report["arms"].items():
        mean, std = np.asarray(entry["f1_mean"]), np.asarray(entry["f1_std"])
        style = {"color": "0.35", "linestyle": "--"} if arm == RANDOM else {}
        for ax, x in ((by_docs, np.asarray(entry["labels"])), (by_tokens, np.asarray(entry["tokens_labelled_mean"]))):
            (line,) = ax.plot(x, mean, label=arm, linewidth=1.6, **style)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.12, linewidth=0)
    full = report["full_pool"]["f1"]["mean"]
    for ax, xlabel in ((by_docs, "documents labelled"), (by_tokens, "tokens labelled (mean over seeds)")):
        if full is not None:
            ax.axhline(full, color="0.6", linestyle=":", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    by_docs.set_ylabel("exact-span F1 (test)")
    by_tokens.legend(loc="lower right", fontsize="small")
    seeds = len(config["seeds"])
    fig.suptitle(f"{config['dataset']}: mean ± std over {seeds} seed{'s' if seeds != 1 else ''}"
                 + (" (dotted: full pool)" if full is not None else ""), fontsize="medium")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


# ----------------------------------------------------------------------------- command


def _test_size(text: str) -> float | int:
    """``0.25`` is a share of the documents, ``400`` a count."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share in (0, 1) or a document count, got {text!r}") from None
    if 0 < value < 1:
        return value
    if value >= 1 and value.is_integer():
        return int(value)
    raise argparse.ArgumentTypeError(f"expected a share in (0, 1) or a document count, got {text!r}")


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _tagger_param(text: str) -> tuple[str, Any]:
    from model.simulation import parse_value

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), parse_value(value.strip())


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, metavar="FILE",
                        help="JSONL of {text, spans} records, or a Label Studio JSON export of a <Labels> project")
    source.add_argument("--dataset", choices=["synthetic"], help="templated documents with exact spans")
    parser.add_argument("--from-name", help="the Labels control to read when an export has several")
    parser.add_argument("--documents", type=int, default=600, help="synthetic documents (default %(default)s)")
    parser.add_argument("--language", choices=["en", "ja", "zh"], default="en",
                        help="synthetic documents' language (default %(default)s)")
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES,
                        help="comma-separated span heuristics; random is always added (default %(default)s)")
    from backend.config import ProjectPolicy

    parser.add_argument("--queue", default=ProjectPolicy().queue,
                        help="how the scored pool becomes a queue: greedy (most uncertain first), cluster (k-means "
                             "round-robin), explore, power (default %(default)s: the server's default queue)")
    parser.add_argument("--seeds", type=int, default=5, help="repetitions, seeds 0..N-1 (default %(default)s)")
    parser.add_argument("--initial", type=int, default=10, help="random documents to start from (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=10, help="documents per round (default %(default)s)")
    parser.add_argument("--budget", type=int, default=200, help="documents per curve (default %(default)s)")
    parser.add_argument("--test-size", type=_test_size, default=0.25,
                        help="held-out documents: a share (0.25) or a count (400) (default %(default)s)")
    parser.add_argument("--report-at", type=_ints, help="document budgets of the tables (default: 20,50,100,...)")
    parser.add_argument("--report-tokens", type=_ints,
                        help="token budgets of the tables (default: 25/50/75/100 %% of the fewest tokens any "
                             "arm labelled)")
    parser.add_argument("--full-pool-share", type=float, default=0.9,
                        help="report documents and tokens to reach this share of the full-pool F1 (one extra "
                             "fit per seed on the whole pool); 0 = skip (default %(default)s)")
    parser.add_argument("--tie", type=float, default=0.005,
                        help="W/T/L: an area difference below this F1 (0.005 = half a point) is a tie "
                             "(default %(default)s)")
    parser.add_argument("--tagger-param", type=_tagger_param, action="append", default=[], metavar="KEY=VALUE",
                        help="SpanTagger parameter for every arm, e.g. c1=0.1 or max_iterations=50 (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes over curves (default %(default)s)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="write the learning curves here")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure here as JSON")
    parser.add_argument("--quiet", action="store_true", help="no line per finished curve on stderr")
    return parser


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the `simulate-spans` subcommand."""
    parser = sub.add_parser(
        "simulate-spans", help="replay active learning for span (NER) labelling offline, against random picks",
        description=__doc__.split("\n")[0].split(": ", 1)[1], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser).set_defaults(func=command)


def plan_from_args(args: argparse.Namespace) -> Plan:
    if args.dataset == "synthetic":
        data = synthetic_data(args.documents, language=args.language)
    else:
        data = load_span_file(args.data, args.from_name)
    if not 0 <= args.full_pool_share <= 1:
        raise SimulationInputError("--full-pool-share must be in [0, 1]")
    return make_plan(data, args.strategies.split(","), args.seeds, args.initial, args.batch_size, args.budget,
                     args.test_size, args.queue, dict(args.tagger_param), full_pool=args.full_pool_share > 0)


def run(plan: Plan, args: argparse.Namespace, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the plan and build its report (wall time and source in the config)."""
    started = time.perf_counter()
    log = None if args.quiet else (lambda line: print(f"simulate-spans: {line}", file=sys.stderr, flush=True))
    curves, full_pool = run_plan(plan, jobs=args.jobs, log=log)
    seconds = round(time.perf_counter() - started, 1)
    return build_report(plan, curves, full_pool, args.report_at, args.report_tokens,
                        share=args.full_pool_share, tie=args.tie,
                        extra={"seconds": seconds, "jobs": args.jobs, **(extra or {})})


def command(args: argparse.Namespace, settings: Any = None) -> int:
    """`labelloop simulate-spans`: run, print the tables, write --plot / --json. Returns the exit status."""
    from rich.console import Console

    try:
        plan = plan_from_args(args)
    except (SimulationInputError, OSError) as exc:
        print(f"labelloop simulate-spans: {exc}", file=sys.stderr)
        return 2
    for note in plan.data.notes:
        print(f"labelloop simulate-spans: note: {note}", file=sys.stderr)
    report = run(plan, args, {"source": str(args.data) if args.data else args.dataset})
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(headline(report))
    for table in render_rich(report):
        console.print(table)
    console.print(caption(report))
    console.print(f"wall time {report['config']['seconds']:.0f} s with --jobs {args.jobs}")
    if args.plot:
        write_plot(report, args.plot)
        console.print(f"learning curves: {args.plot}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        console.print(f"figures: {args.json}")
    return 0

"""`labelloop simulate`: offline active-learning replay on fully labelled data, with a random control arm.

The replay itself is :mod:`model.simulation` (the server's own estimator, acquisition and queue
code); this module is the command around it: loading data (scikit-learn's digits, JSONL / CSV
files, Label Studio JSON exports through the server's own adapters), running arms x seeds with a
progress bar, and reporting -- a table, a learning-curve PNG, a JSON file.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model import simulation
from model.crowd.profiles import AnnotatorProfile, noise_profile, parse_profile
from model.simulation import RANDOM, Arm
from model.uncertainty import AUTO

DEFAULT_REPORT_AT = (30, 50, 100, 150, 200, 300, 500)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")

EPILOG = """\
strategy specs (comma-separated in --strategies; `random` is always added as the control arm):
  auto                    the server's default for the data: bald on text, margin on images
  margin                  acquisition function `margin`, queue from --queue (default: the server's, cluster)
  margin+cluster          margin, ordered by the `cluster` queue (k-means round-robin)
  margin+cluster:warmup=3 cold start: typical tasks of distinct clusters first while there are
                          fewer than 3 labels per class, handing over to the queue as labels grow
  entropy+explore:fraction=0.2   queue parameters as :key=value after the queue name
  bald                    MC-dropout MLP (the estimator follows the strategy, as on the server)
  random                  uniform random picks, trained with the plain logistic model
  random@bald             uniform random picks, trained with bald's estimator (MLP)

noisy labels (the test split keeps the truth; every arm of a seed sees the same wrong labels):
  --noise 0.1             a tenth of the labels flipped to another class
  --annotators 0.9,0.9,0.7,spam   each task labelled by one of these annotators, drawn at random:
                          accuracy 0.9 / 0.7 (else another class), `spam` = a uniformly random class

example:
  labelloop simulate --dataset digits --strategies margin,entropy,bald --seeds 10 \\
      --plot curve.png --json curve.json
"""


class SimulationInputError(ValueError):
    """The data or the options cannot be simulated; the message says what to change."""


@dataclass
class Dataset:
    """A fully labelled dataset: model inputs, their single labels, the label set, the modality."""

    name: str
    inputs: list[Any]
    labels: list[str]
    classes: list[str]
    modality: str
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- data loading


def load_digits_dataset() -> Dataset:
    """scikit-learn's bundled 8x8 digits: 1,797 grey images, 0..16 scaled to uint8 0..255."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = [np.rint(image * (255.0 / 16.0)).astype(np.uint8) for image in digits.images]
    labels = [str(int(v)) for v in digits.target]
    return Dataset("digits", images, labels, [str(i) for i in range(10)], "image")


def load_data_file(path: Path, label_config: Path | None = None, modality: str | None = None,
                   label_studio_url: str | None = None, label_studio_api_key: str | None = None) -> Dataset:
    """Load ``.jsonl`` / ``.csv`` records or a Label Studio JSON export (``.json``)."""
    if not path.is_file():
        raise SimulationInputError(f"--data {path}: no such file")
    suffix = path.suffix.lower()
    load_image = make_image_loader(path.parent, label_studio_url, label_studio_api_key)
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            records = list(csv.DictReader(fh))
        return dataset_from_records(path.name, records, modality, load_image)
    if suffix in (".jsonl", ".ndjson"):
        records = []
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        records.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise SimulationInputError(f"{path}:{number}: not valid JSON: {exc}") from exc
        return dataset_from_records(path.name, records, modality, load_image)
    if suffix == ".json":
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise SimulationInputError(f"{path}: not valid JSON: {exc}") from exc
        if isinstance(payload, dict) and isinstance(payload.get("tasks"), list):
            payload = payload["tasks"]
        if not isinstance(payload, list) or not payload or not all(isinstance(t, dict) for t in payload):
            raise SimulationInputError(f"{path}: expected a JSON list of Label Studio tasks (or of records)")
        if any("annotations" in t or "data" in t for t in payload):
            config = label_config.read_text(encoding="utf-8") if label_config else None
            return dataset_from_label_studio(path.name, payload, config, modality, load_image)
        return dataset_from_records(path.name, payload, modality, load_image)
    raise SimulationInputError(f"--data {path}: unsupported file type {suffix!r}; use .jsonl, .csv or .json")


def make_image_loader(base_dir: Path, label_studio_url: str | None = None,
                      label_studio_api_key: str | None = None) -> Callable[[str], np.ndarray]:
    """``ref -> uint8 array``: local files (relative to ``base_dir``), then the server's ImageFetcher.

    Data URIs and http(s) URLs, and Label Studio-hosted ``/data/...`` paths when LABEL_STUDIO_URL
    and LABEL_STUDIO_API_KEY are set, go through :class:`backend.images.ImageFetcher`, exactly as
    when the server trains.
    """
    from backend.labelstudio.images import ImageFetcher, decode_image

    headers = None
    if label_studio_url and label_studio_api_key:
        gateway: list[Any] = []

        def headers() -> Any:  # the SDK resolves the token kind; only built when an image needs it
            if not gateway:
                from backend.labelstudio.gateway import LabelStudioGateway

                gateway.append(LabelStudioGateway(label_studio_url, label_studio_api_key))
            return gateway[0].auth_headers()

    fetcher = ImageFetcher(label_studio_url, headers)

    def load(ref: str) -> np.ndarray:
        if not ref.startswith(("data:", "http://", "https://")):
            local = Path(ref) if Path(ref).is_absolute() else base_dir / ref
            if local.is_file():
                return decode_image(local.read_bytes(), str(local))
        return fetcher(ref)

    return load


def dataset_from_records(name: str, records: Sequence[dict[str, Any]], modality: str | None,
                         load_image: Callable[[str], np.ndarray]) -> Dataset:
    """Records with a ``label`` and a ``text`` (text) or ``image`` (file path / URL) field."""
    from backend.labelstudio.tasks import BadInput

    columns = set().union(*(r.keys() for r in records)) if records else set()
    if "label" not in columns:
        raise SimulationInputError(f"{name}: no 'label' column/field (found: {sorted(columns)})")
    if modality is None:
        if "text" in columns and "image" in columns:
            raise SimulationInputError(f"{name}: has both 'text' and 'image'; choose one with --modality")
        if "text" not in columns and "image" not in columns:
            raise SimulationInputError(f"{name}: needs a 'text' or an 'image' column (found: {sorted(columns)})")
        modality = "text" if "text" in columns else "image"
    key = "text" if modality == "text" else "image"
    inputs: list[Any] = []
    labels: list[str] = []
    skipped = 0
    for number, record in enumerate(records, 1):
        label, value = record.get("label"), record.get(key)
        if label is None or str(label).strip() == "" or value is None or value == "":
            skipped += 1
            continue
        if modality == "text":
            inputs.append(str(value))
        else:
            try:
                inputs.append(load_image(str(value)))
            except BadInput as exc:
                raise SimulationInputError(f"{name}: row {number}: {exc}") from exc
        labels.append(str(label).strip())
    notes = [f"{skipped} row(s) without a label or {key} skipped"] if skipped else []
    return Dataset(name, inputs, labels, sorted(set(labels)), modality, notes)


def infer_choice_spec(tasks: Sequence[dict[str, Any]], modality: str | None = None) -> Any:
    """A :class:`backend.labelstudio.tasktypes.ChoicesTask` guessed from an export's annotations (no config given).

    The ``choices`` results name the control (``from_name``) and its object (``to_name``); the
    labels are every choice that occurs; the data field is the one named like ``to_name``, or the
    tasks' only field; images are recognised by data URIs, URLs / paths with an image extension
    and Label Studio's ``/data/`` paths. Anything ambiguous asks for ``--label-config``.
    """
    from backend.labelstudio.tasktypes import ChoicesTask

    controls: dict[tuple[str, str], set[str]] = {}
    multi = False
    for task in tasks:
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            for item in annotation.get("result") or []:
                value = item.get("value") if isinstance(item, dict) else None
                choices = value.get("choices") if isinstance(value, dict) else None
                if not isinstance(choices, list):
                    continue
                key = (str(item.get("from_name")), str(item.get("to_name")))
                controls.setdefault(key, set()).update(str(c) for c in choices)
                multi = multi or len(choices) > 1
    if not controls:
        raise SimulationInputError("the export has no 'choices' annotations to learn from")
    if len(controls) > 1:
        names = ", ".join(f"{f}->{t}" for f, t in sorted(controls))
        raise SimulationInputError(f"the export has several Choices controls ({names}); pass --label-config FILE")
    (from_name, to_name), labels = next(iter(controls.items()))
    if multi:
        raise SimulationInputError("multi-label (several choices per annotation) is not supported by simulate yet")
    keys = [set((t.get("data") or {}).keys()) for t in tasks]
    common = set.intersection(*keys) if keys else set()
    if to_name in common:
        data_key = to_name
    elif len(common) == 1:
        data_key = next(iter(common))
    else:
        raise SimulationInputError(
            f"cannot tell which data field <{to_name}> reads (fields: {sorted(common)}); pass --label-config FILE"
        )
    if modality is None:
        values = [str((t.get("data") or {}).get(data_key, "")) for t in tasks[:50]]
        modality = "image" if values and all(_looks_like_image(v) for v in values) else "text"
    return ChoicesTask(from_name=from_name, to_name=to_name, data_key=data_key, modality=modality,
                      labels=tuple(sorted(labels)), multi_label=False)


def _looks_like_image(value: str) -> bool:
    lowered = value.lower().split("?")[0]
    return value.startswith("data:image/") or value.startswith("/data/") or lowered.endswith(IMAGE_SUFFIXES)


def dataset_from_label_studio(name: str, tasks: Sequence[dict[str, Any]], label_config: str | None,
                              modality: str | None, load_image: Callable[[str], np.ndarray]) -> Dataset:
    """A Label Studio JSON export, read with the server's own adapters (labelconfig + tasks + collect)."""
    from backend.labelstudio.families import family_of
    from backend.labelstudio.labelconfig import parse_label_config
    from backend.labelstudio.tasks import BadInput, task_input
    from backend.service.training import collect

    if label_config is not None:
        spec = parse_label_config(label_config)
        if modality is not None and modality != spec.modality:
            raise SimulationInputError(f"--modality {modality} contradicts the label config ({spec.modality})")
    else:
        spec = infer_choice_spec(tasks, modality)
    family = family_of(spec)
    if family.replay_elsewhere:
        raise SimulationInputError(f"`labelloop simulate --data` replays classification exports; for {family.name} "
                                   f"use {family.replay_elsewhere}")
    if spec.multi_label:
        raise SimulationInputError("multi-label Choices (choice=\"multiple\") are not supported by simulate yet")
    data = collect(tasks, spec)
    inputs: list[Any] = []
    labels: list[str] = []
    bad = 0
    for task, task_labels in data.labelled:
        try:
            inputs.append(task_input(task, spec, load_image if spec.modality == "image" else None))
        except BadInput:
            bad += 1
            continue
        labels.append(task_labels[0])
    notes = []
    if data.pool:
        notes.append(f"{len(data.pool)} task(s) without a usable annotation skipped")
    if data.skipped or bad:
        notes.append(f"{len(data.skipped) + bad} task(s) with unusable annotations or inputs skipped")
    return Dataset(name, inputs, labels, list(spec.labels), spec.modality, notes)


# ----------------------------------------------------------------------------- running


@dataclass
class Plan:
    """What to run: the dataset, the arms and the shared settings of every curve."""

    data: Dataset
    arms: list[Arm]
    seeds: list[int]
    initial: int
    batch_size: int
    budget: int
    control_budget: int
    test_size: float
    model_params: dict[str, Any]
    annotators: AnnotatorProfile | None = None

    def budget_of(self, arm: Arm) -> int:
        return self.control_budget if arm.is_random else self.budget


_WORKER: dict[str, Any] = {}


def _init_worker(plan: Plan, threads: int) -> None:
    _WORKER["plan"] = plan
    _limit_threads(threads, plan)


def _limit_threads(threads: int, plan: Plan) -> Callable[[], None]:
    """Cap BLAS / OpenMP (and torch, when an MLP is trained) threads; returns a function undoing it.

    On shared machines a multi-threaded BLAS fighting for busy cores makes small logistic fits
    10-20x slower; one thread per process is the fast setting for the many small fits of a
    simulation, and ``--jobs`` parallelises over curves instead.
    """
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=threads)
    if not _uses_mlp(plan):
        return limiter.restore_original_limits
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)

    def restore() -> None:
        limiter.restore_original_limits()
        torch.set_num_threads(before)

    return restore


def _uses_mlp(plan: Plan) -> bool:
    from model.uncertainty import get_strategy

    if "model" in plan.model_params:
        return plan.model_params["model"] == "mlp"
    return any(get_strategy(a.estimator_strategy).model == "mlp" for a in plan.arms)


def run_one(plan: Plan, arm: Arm, seed: int, on_round: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """One curve: split by ``seed``, replay ``arm``; adds the wall time in seconds."""
    data = plan.data
    pool, test = simulation.split_indices(data.labels, plan.test_size, seed)
    started = time.perf_counter()
    curve = simulation.run_curve(
        [data.inputs[i] for i in pool], [data.labels[i] for i in pool],
        [data.inputs[i] for i in test], [data.labels[i] for i in test],
        data.classes, arm, initial=plan.initial, batch_size=plan.batch_size, budget=plan.budget_of(arm),
        seed=seed, modality=data.modality, estimator_params=plan.model_params, on_round=on_round,
        annotators=plan.annotators,
    )
    curve["seconds"] = time.perf_counter() - started
    return curve


def _run_in_worker(arm: Arm, seed: int) -> dict[str, Any]:
    return run_one(_WORKER["plan"], arm, seed)


def run_plan(
    plan: Plan, jobs: int = 1, threads: int = 1, show_progress: bool = True
) -> dict[str, list[dict[str, Any]]]:
    """Every arm x seed; returns arm name -> curves in seed order. Progress goes to stderr."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    pool_size = len(plan.data.labels) - _test_count(len(plan.data.labels), plan.test_size)
    rounds = {a.name: len(simulation.label_grid(plan.initial, plan.batch_size, plan.budget_of(a), pool_size))
              for a in plan.arms}
    total = sum(rounds[a.name] for a in plan.arms) * len(plan.seeds)
    curves: dict[str, dict[int, dict[str, Any]]] = {a.name: {} for a in plan.arms}
    progress = Progress(
        TextColumn("[bold]simulate[/bold] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("rounds"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), disable=not show_progress, transient=False,
    )
    with progress:
        task = progress.add_task("", total=total)
        if jobs <= 1:
            restore = _limit_threads(threads, plan)
            try:
                for arm in plan.arms:
                    for seed in plan.seeds:
                        progress.update(task, description=f"{arm.name} seed {seed}")
                        curves[arm.name][seed] = run_one(
                            plan, arm, seed, on_round=lambda _n, _acc: progress.advance(task)
                        )
            finally:
                restore()
        else:
            import multiprocessing

            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                                     initargs=(plan, threads)) as executor:
                futures = {executor.submit(_run_in_worker, arm, seed): (arm, seed)
                           for arm in plan.arms for seed in plan.seeds}
                for future in as_completed(futures):
                    arm, seed = futures[future]
                    curves[arm.name][seed] = future.result()
                    progress.update(task, description=f"{arm.name} seed {seed} done")
                    progress.advance(task, rounds[arm.name])
    return {name: [by_seed[s] for s in plan.seeds] for name, by_seed in curves.items()}


def full_pool_accuracies(plan: Plan, threads: int = 1) -> list[float]:
    """Per seed, the test accuracy of the control model trained on the whole pool of that seed's split.

    One fit per seed (the pool is at most a few thousand rows), serial; the ceiling against which
    "labels to 90 % of full-pool accuracy" is measured.
    """
    data = plan.data
    restore = _limit_threads(threads, plan)
    try:
        out = []
        for seed in plan.seeds:
            pool, test = simulation.split_indices(data.labels, plan.test_size, seed)
            out.append(simulation.full_pool_accuracy(
                [data.inputs[i] for i in pool], [data.labels[i] for i in pool],
                [data.inputs[i] for i in test], [data.labels[i] for i in test], data.classes,
                seed=seed, modality=data.modality, estimator_params=plan.model_params,
            ))
        return out
    finally:
        restore()


def _test_count(n: int, test_size: float) -> int:
    # What train_test_split gives for a float test_size.
    import math

    return math.ceil(test_size * n) if 0 < test_size < 1 else int(test_size)


def build_report(plan: Plan, curves: dict[str, list[dict[str, Any]]], targets: Sequence[float],
                 report_at: Sequence[int], gap_from: int, extra_config: dict[str, Any],
                 full_pool: Sequence[float] | None = None, full_share: float = 0.9,
                 tie: float = 0.005) -> dict[str, Any]:
    """The JSON document: config + per arm the aggregated curve and the headline figures.

    ``full_pool`` (per seed, :func:`full_pool_accuracies`) adds ``labels_to_full_share``; ``tie``
    is the area difference below which a seed counts as a tie with random.
    """
    aggregated = {name: simulation.aggregate(arm_curves) for name, arm_curves in curves.items()}
    full_mean = float(np.mean(full_pool)) if full_pool else None
    summary = simulation.summarise(aggregated, targets, report_at, control=RANDOM, gap_from=gap_from,
                                   full_pool=full_mean, full_share=full_share, tie=tie)
    strategies: dict[str, Any] = {}
    for arm in plan.arms:
        entry = summary[arm.name]
        strategies[arm.name] = {
            "strategy": arm.strategy,
            "queue": arm.queue if not arm.is_random else None,
            "queue_params": arm.queue_params,
            "warmup": arm.warmup,
            "estimator_of": arm.estimator_strategy,
            "seconds": sum(c["seconds"] for c in curves[arm.name]),
            "wrong_labels_per_seed": [c.get("wrong", [0])[-1] for c in curves[arm.name]],
            **entry,
        }
    n = len(plan.data.labels)
    config = {
        "dataset": plan.data.name,
        "modality": plan.data.modality,
        "n_rows": n,
        "n_test": _test_count(n, plan.test_size),
        "n_pool": n - _test_count(n, plan.test_size),
        "classes": plan.data.classes,
        "strategies": [a.name for a in plan.arms],
        "initial": plan.initial,
        "batch_size": plan.batch_size,
        "budget": plan.budget,
        "control_budget": plan.control_budget,
        "seeds": plan.seeds,
        "test_size": plan.test_size,
        "split": "stratified by label, re-drawn per seed",
        "targets": [float(t) for t in targets],
        "report_at": list(report_at),
        "gap_from": gap_from,
        "full_pool_accuracy": {"mean": full_mean, "per_seed": list(full_pool or []), "share": full_share},
        "tie_below": tie,
        "model_params": plan.model_params,
        "annotators": plan.annotators.describe() if plan.annotators else None,
        "expected_label_error": (plan.annotators.expected_error(len(plan.data.classes))
                                 if plan.annotators else 0.0),
        "notes": plan.data.notes,
        **extra_config,
    }
    return {"config": config, "strategies": strategies}


# ----------------------------------------------------------------------------- output


def _pct(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" + (f" ±{100 * std:.1f}" if std is not None else "")


def render_table(report: dict[str, Any]) -> Any:
    """A rich Table of the report: accuracy at budgets, labels to reach targets, saving vs random."""
    from rich.table import Table

    config = report["config"]
    seeds = len(config["seeds"])
    table = Table(
        title=(f"labelloop simulate - {config['dataset']} ({config['n_pool']} pool / {config['n_test']} test, "
               f"{len(config['classes'])} classes), {config['initial']} initial + batches of "
               f"{config['batch_size']}, mean of {seeds} seed{'s' if seeds != 1 else ''}" + _noise_title(config)),
        caption=("accuracy: mean test accuracy in % ± std over seeds; labels to reach: first label count whose mean "
                 "accuracy reaches the target; saving: labels random needs / labels the strategy needs; "
                 f"worst vs random: lowest (strategy - random) mean accuracy in points from {config['gap_from']} "
                 "labels on; area vs random: per seed, mean accuracy over the shared label axis (trapezoids) "
                 "minus random's on the same split and start, mean ± std over seeds, in points; W/T/L: seeds "
                 f"where that difference is >= +{100 * config['tie_below']:g}, within ±{100 * config['tie_below']:g}"
                 f", <= -{100 * config['tie_below']:g} points" + _full_caption(config)),
    )
    table.add_column("strategy", no_wrap=True)
    table.add_column("queue")
    table.add_column("model")
    for budget in config["report_at"]:
        table.add_column(f"acc @{budget}", justify="right")
    keys = [simulation.target_key(t) for t in config["targets"]]
    for key in keys:
        table.add_column(f"labels to {_target_label(key)}", justify="right")
    for key in keys:
        table.add_column(f"saving @{_target_label(key)}", justify="right")
    table.add_column("worst vs random", justify="right")
    table.add_column("area vs random", justify="right")
    table.add_column("W/T/L", justify="right")
    full = config["full_pool_accuracy"]["mean"]
    if full is not None:
        table.add_column(f"labels to {_target_label(str(config['full_pool_accuracy']['share']))} of full",
                         justify="right")
    for name, entry in report["strategies"].items():
        labels, std = entry["labels"], entry["accuracy_std"]
        std_at = dict(zip(labels, std, strict=True))
        cells = [name, entry["queue"] or "-", _model_name(entry, config)]
        for budget in config["report_at"]:
            value = entry["accuracy_at"][str(budget)]
            snapped = max((n for n in labels if n <= budget), default=None)
            cells.append(_pct(value, std_at.get(snapped)) if snapped is not None and budget <= labels[-1] else "-")
        for key in keys:
            reached = entry["labels_to_reach"][key]
            cells.append(str(reached) if reached is not None else f">{labels[-1]}")
        for key in keys:
            cells.append(_saving(entry, key))
        gap = entry.get("worst_gap_vs_random")
        control = entry["strategy"] == RANDOM and name == RANDOM
        cells.append("-" if gap is None or control else f"{100 * gap:+.1f}")
        cells.extend(_area_cells(entry, control))
        if full is not None:
            reached = entry.get("labels_to_full_share")
            cells.append(str(reached) if reached is not None else f">{labels[-1]}")
        table.add_row(*cells)
    return table


def _noise_title(config: dict[str, Any]) -> str:
    if not config.get("annotators"):
        return ""
    return (f"; noisy labels: annotators {config['annotators']} "
            f"(~{100 * config['expected_label_error']:.0f} % wrong, test split clean)")


def _area_cells(entry: dict[str, Any], control: bool) -> list[str]:
    area, record = entry.get("area_vs_random") or {}, entry.get("wins_ties_losses")
    if control or area.get("mean") is None or record is None:
        return ["-", "-"]
    return [f"{100 * area['mean']:+.1f} ±{100 * area['std']:.1f}",
            f"{record['wins']}/{record['ties']}/{record['losses']}"]


def _full_caption(config: dict[str, Any]) -> str:
    full = config["full_pool_accuracy"]
    if full["mean"] is None:
        return ""
    return (f"; labels to {_target_label(str(full['share']))} of full: first label count whose mean accuracy "
            f"reaches {full['share']:g} x {_pct(full['mean'])} % (the control model trained on the whole pool, "
            "mean over seeds)")


def _target_label(key: str) -> str:
    return f"{100 * float(key):g}%"


def _model_name(entry: dict[str, Any], config: dict[str, Any]) -> str:
    from model.uncertainty import get_strategy

    explicit = config["model_params"].get("model")
    return str(explicit or get_strategy(entry["estimator_of"]).model)


def _saving(entry: dict[str, Any], key: str) -> str:
    saving = (entry.get("saving_vs_random") or {}).get(key)
    if saving is not None:
        return f"{saving:.2f}x"
    at_least = (entry.get("saving_vs_random_at_least") or {}).get(key)
    return f">{at_least:.2f}x" if at_least is not None else "n/a"


def write_plot(report: dict[str, Any], path: Path) -> None:
    """Learning curves: mean test accuracy per arm with a ±1 std band over seeds; targets dotted."""
    import logging

    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # not its font-cache chatter at INFO

    config = report["config"]
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    lowest = 1.0
    for name, entry in report["strategies"].items():
        labels = np.asarray(entry["labels"])
        mean = np.asarray(entry["accuracy_mean"])
        std = np.asarray(entry["accuracy_std"])
        style = {"color": "0.35", "linestyle": "--"} if entry["strategy"] == RANDOM and name == RANDOM else {}
        (line,) = ax.plot(labels, mean, label=name, linewidth=1.8, **style)
        ax.fill_between(labels, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
        after_start = mean[labels >= min(config.get("gap_from", 0), labels[-1])]
        lowest = min(lowest, float(after_start.min()) if after_start.size else float(mean.min()))
    for target in config["targets"]:
        ax.axhline(target, color="0.6", linestyle=":", linewidth=1)
    ax.set_ylim(max(0.0, lowest - 0.05), 1.0)
    ax.set_xlabel("labels used")
    ax.set_ylabel("test accuracy")
    seeds = len(config["seeds"])
    ax.set_title(f"{config['dataset']}: mean ± std over {seeds} seed{'s' if seeds != 1 else ''} "
                 f"({config['initial']} initial, batches of {config['batch_size']})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


# ----------------------------------------------------------------------------- command


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"targets must be accuracies in (0, 1], got {text!r}")
    return values


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _noise_rate(text: str) -> AnnotatorProfile | None:
    try:
        rate = float(text)
        return noise_profile(rate) if rate > 0 else None  # 0 = the truth, the run without the option
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share of flipped labels in [0, 1), got {text!r}") from None


def _profile(text: str) -> AnnotatorProfile:
    try:
        return parse_profile(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _model_param(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), simulation.parse_value(value.strip())


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the `simulate` subcommand."""
    parser = sub.add_parser(
        "simulate",
        help="replay active learning offline on labelled data, against random sampling",
        description=("Replay active learning on a fully labelled dataset with the server's own model code, "
                     "with random sampling as the control arm, and report the labels it saves."),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=["digits"], help="a bundled dataset (scikit-learn's 8x8 digits)")
    source.add_argument("--data", type=Path, metavar="FILE",
                        help="JSONL / CSV with label + text (or image path) columns, or a Label Studio JSON export")
    parser.add_argument("--label-config", type=Path, metavar="FILE",
                        help="label config XML for a Label Studio export (default: inferred from its annotations)")
    parser.add_argument("--modality", choices=["text", "image"], help="override the inferred input type of --data")
    # Defaults are the server's (backend.config.ProjectPolicy), so a bare run measures what labelloop serves.
    from backend.config import ProjectPolicy

    server = ProjectPolicy()
    parser.add_argument("--strategies", default=f"{server.strategy},random",
                        help="comma-separated strategy specs (see below); `random` is always added "
                             "(default %(default)s: the server's default strategy)")
    parser.add_argument("--queue", default=server.queue,
                        help="queue of specs without +QUEUE (default %(default)s: the server's default queue)")
    parser.add_argument("--initial", type=int, default=10, help="random labels to start from (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=10, help="labels per round (default %(default)s)")
    parser.add_argument("--budget", type=int, default=300, help="labels per curve (default %(default)s)")
    parser.add_argument("--control-budget", type=int, default=None,
                        help="longer budget for the random arm(s) only, to see where random reaches the targets "
                             "(default: --budget)")
    parser.add_argument("--seeds", type=int, default=5, help="repetitions, seeds 0..N-1 (default %(default)s)")
    parser.add_argument("--test-size", type=float, default=0.3, help="held-out share (default %(default)s)")
    parser.add_argument("--targets", type=_floats, default=[0.9, 0.95], help="accuracies to reach (default 0.9,0.95)")
    parser.add_argument("--report-at", type=_ints, default=None,
                        help="label budgets for the accuracy columns "
                             "(default: 30,50,100,150,200,300,500 up to --budget)")
    parser.add_argument("--gap-from", type=int, default=30,
                        help="'worst vs random' looks at label counts >= this (default %(default)s)")
    parser.add_argument("--full-pool-share", type=_share, default=0.9,
                        help="report labels to reach this share of the full-pool accuracy (the control model "
                             "trained on the whole pool, one extra fit per seed); 0 = skip (default %(default)s)")
    parser.add_argument("--tie", type=float, default=0.005,
                        help="W/T/L: an area difference vs random below this (accuracy, 0.005 = half a point) "
                             "is a tie (default %(default)s)")
    noise = parser.add_mutually_exclusive_group()
    noise.add_argument("--noise", type=_noise_rate, metavar="RATE",
                       help="flip this share of the revealed labels to another class, e.g. 0.1 (default: none)")
    noise.add_argument("--annotators", type=_profile, metavar="PROFILE",
                       help="each task is labelled by one of these simulated annotators, drawn at random: "
                            "accuracies and `spam`, e.g. 0.9,0.9,0.9,0.9,0.7,spam (default: the truth)")
    parser.add_argument("--model-param", type=_model_param, action="append", default=[], metavar="KEY=VALUE",
                        help="estimator parameter for every arm, e.g. C=1.0 or model=mlp (repeatable)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="write the learning curves here")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every figure here as JSON")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes over curves (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/torch threads per process (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=command)


def _resolve_auto(spec: str, modality: str, model_params: Sequence[tuple[str, Any]]) -> str:
    """``auto[+QUEUE...]`` becomes the strategy the server would use on this data (resolve_strategy)."""
    head, sep, rest = spec.partition("+")
    if head != AUTO:
        return spec
    from backend.service.models import strategy_for

    model = str(dict(model_params).get("model", "auto"))
    return strategy_for(head, model, modality) + sep + rest


def _plan_from_args(args: argparse.Namespace, settings: Any) -> Plan:
    if args.dataset == "digits":
        data = load_digits_dataset()
    else:
        url = getattr(settings, "label_studio_url", None)
        key = getattr(settings, "label_studio_api_key", None)
        data = load_data_file(args.data, args.label_config, args.modality, url, key)
    if len(set(data.labels)) < 2:
        raise SimulationInputError(f"{data.name}: needs at least 2 distinct labels, found {sorted(set(data.labels))}")
    specs = [_resolve_auto(s.strip(), data.modality, args.model_param) for s in args.strategies.split(",") if s.strip()]
    if RANDOM not in specs:
        specs.append(RANDOM)
    arms: list[Arm] = []
    for spec in specs:
        arm = simulation.parse_arm(spec, default_queue=args.queue)
        if arm.name in {a.name for a in arms}:
            continue
        arms.append(arm)
    if args.seeds < 1:
        raise SimulationInputError("--seeds must be >= 1")
    if not 0 < args.test_size < 1:
        raise SimulationInputError("--test-size must be between 0 and 1")
    control_budget = max(args.budget, args.control_budget or args.budget)
    plan = Plan(data=data, arms=arms, seeds=list(range(args.seeds)), initial=args.initial,
                batch_size=args.batch_size, budget=args.budget, control_budget=control_budget,
                test_size=args.test_size, model_params=dict(args.model_param),
                annotators=args.annotators or args.noise)
    pool_size = len(data.labels) - _test_count(len(data.labels), args.test_size)
    simulation.label_grid(args.initial, args.batch_size, args.budget, pool_size)  # validates the numbers
    from model.custom import BringYourOwn, FactoryError, make_user_estimator

    estimator = simulation.arm_estimator(arms[0].estimator_strategy, data.modality, data.classes, 0,
                                         plan.model_params)
    if isinstance(estimator, BringYourOwn):  # a factory that cannot build is refused before any curve runs
        try:
            make_user_estimator(estimator.factory)
        except FactoryError as exc:
            raise SimulationInputError(str(exc)) from exc
    return plan


def command(args: argparse.Namespace, settings: Any = None) -> int:
    """`labelloop simulate`: run, print the table, write --plot / --json. Returns the exit status."""
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 240)
    try:
        plan = _plan_from_args(args, settings)
    except (SimulationInputError, ValueError, TypeError, OSError) as exc:
        print(f"labelloop simulate: {exc}", file=sys.stderr)
        return 2
    for note in plan.data.notes:
        print(f"labelloop simulate: note: {note}", file=sys.stderr)
    started = time.perf_counter()
    curves = run_plan(plan, jobs=args.jobs, threads=args.threads, show_progress=not args.no_progress)
    full_pool = full_pool_accuracies(plan, threads=args.threads) if args.full_pool_share > 0 else None
    elapsed = time.perf_counter() - started
    report_at = args.report_at or [b for b in DEFAULT_REPORT_AT if b <= args.budget] or [args.budget]
    report = build_report(plan, curves, args.targets, report_at, args.gap_from,
                          {"seconds": round(elapsed, 1), "source": str(args.data) if args.data else args.dataset},
                          full_pool=full_pool, full_share=args.full_pool_share, tie=args.tie)
    console.print(render_table(report))
    if args.plot:
        write_plot(report, args.plot)
        console.print(f"learning curves: {args.plot}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        console.print(f"figures: {args.json}")
    return 0

"""Does the auto-labelling threshold hold its target precision on tasks it has never seen?

A labelling project replayed per (data set, seed, label budget B): B tasks drawn at random are
labelled; as on the server, 20 % of them form the validation split and the model (the project's
default: strategy "auto", i.e. BALD's MLP for text and margin's logistic model for digits, with
``calibration="auto"``) trains on the rest, and tasks are scored as the server scores them. The
threshold is picked from labelled rows only, by one of these rules:

``point``         the lowest threshold whose validation rows *measure* the target (the old default);
``guaranteed``    model.thresholds' default: fixed-sequence Clopper-Pearson testing at 95 %
                  confidence, on the validation rows;
``guaranteed+cf`` the same on the validation rows joined by the training rows' cross-fitted rows
                  (model.crossfit, 5 folds): every label stands behind the bound;
``top+cf``        (not run by default) as ``guaranteed+cf`` but the walk starts at the most
                  confident candidate (``start="top"``) instead of the confidence-guided start.

It is then applied to every task nobody labelled -- the pool auto-labelling acts on, never used to
pick the threshold -- and what a team would get is measured there against the truth: precision of
the auto-labelled tasks and coverage (the share auto-labelled). Data: scikit-learn's digits and
the real text sets of benchmarks/datasets.py (their JSONL copies in benchmarks/data when written).

    .venv/bin/python benchmarks/autolabel_precision.py [--data digits,manpages,gcloud,docstrings]
        [--budgets 100,300,600] [--seeds 5] [--targets 0.9,0.95] [--rules point,guaranteed,guaranteed+cf]
        [--jobs 2]

Prints one row per (data set, budget, rule, target): mean and worst test precision (over runs that
labelled anything), mean coverage, the share of runs that missed the target (test precision <
target while auto-labelling something), the share that auto-labelled nothing and their median
estimate of the labels still needed; then the same pooled per (rule, target), and the elapsed time. Figures,
not assertions: at 95 % confidence the guaranteed rules may miss in up to ~5 % of runs by design.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from model.crossfit import cross_fitted_confidence
from model.estimators import make_estimator
from model.thresholds import precision_threshold
from model.uncertainty import decision_confidence, get_strategy, uncertainty_for

#: Threshold rules: (rule, start) of model.thresholds.precision_threshold and whether cross-fitted rows join.
RULES: dict[str, tuple[str, str, bool]] = {
    "point": ("point", "guided", False),
    "guaranteed": ("guaranteed", "guided", False),
    "guaranteed+cf": ("guaranteed", "guided", True),
    "top+cf": ("guaranteed", "top", True),
}
DEFAULT_RULES = "point,guaranteed,guaranteed+cf"
VALIDATION_FRACTION = 0.2  # the server's default (backend/config.py)
N_FOLDS = 5


def load(name: str) -> tuple[list[Any], list[str], str]:
    """``(inputs, labels, modality)`` of a data set: ``digits`` or a name of benchmarks/datasets.py."""
    if name == "digits":
        from sklearn.datasets import load_digits

        data = load_digits()
        images = [np.rint(image * (255.0 / 16.0)).astype(np.uint8) for image in data.images]
        return images, [str(int(v)) for v in data.target], "image"
    # benchmarks/ is no package: load its datasets.py by path (a plain "import datasets" could find another).
    path = Path(__file__).with_name("datasets.py")
    spec = importlib.util.spec_from_file_location("labelloop_benchmark_datasets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    texts, labels = module.load(name)
    return texts, labels, "text"


def run_one(name: str, seed: int, budgets: Sequence[int], targets: Sequence[float], rules: Sequence[str],
            calibration: str, strategy_spec: str = "auto") -> list[dict[str, Any]]:
    """Every (budget, rule, target) outcome of one data set and seed (run in a worker process)."""
    from threadpoolctl import threadpool_limits

    from backend.service.models import calibration_for, strategy_for

    with threadpool_limits(1):  # one process per core: BLAS threads would only fight over them
        inputs, labels, modality = load(name)
        strategy = strategy_for(strategy_spec, "auto", modality)  # the server's choice for this input
        acquisition = get_strategy(strategy)
        classes = sorted(set(labels))
        truth = np.asarray(labels)
        out = []
        for budget in budgets:
            rng = np.random.default_rng([seed, budget])
            labelled = rng.choice(len(labels), size=min(budget, len(labels) - 1), replace=False)
            n_val = int(round(VALIDATION_FRACTION * len(labelled)))
            val, train = labelled[:n_val], labelled[n_val:]
            pool = np.setdiff1d(np.arange(len(labels)), labelled)

            def make(seed: int = seed) -> Any:
                return make_estimator(strategy, modality, classes, False, random_state=seed,
                                      calibration=calibration_for(calibration, strategy))

            model = make().fit([inputs[i] for i in train], list(truth[train]))
            val_conf, val_ok = _scored(model, acquisition, inputs, truth, val)
            pool_conf, pool_ok = _scored(model, acquisition, inputs, truth, pool)
            cf_conf, cf_ok = np.zeros(0), np.zeros(0, dtype=bool)
            if any(RULES[r][2] for r in rules):
                cf_conf, cf_ok, _ = cross_fitted_confidence(make, [inputs[i] for i in train], list(truth[train]),
                                                            n_folds=N_FOLDS, seed=seed, strategy=acquisition)
            for rule_name in rules:
                rule, start, with_cf = RULES[rule_name]
                conf = np.r_[cf_conf, val_conf] if with_cf else val_conf
                ok = np.r_[cf_ok, val_ok] if with_cf else val_ok
                for target in targets:
                    found = precision_threshold(conf, ok, target, rule=rule, start=start)
                    picked = pool_conf >= found.threshold if found.threshold is not None else np.zeros(len(pool), bool)
                    precision = float(pool_ok[picked].mean()) if picked.any() else None
                    out.append({"data": name, "seed": seed, "budget": budget, "rule": rule_name, "target": target,
                                "precision": precision, "coverage": float(picked.mean()), "n": found.n,
                                "accuracy": float(pool_ok.mean()), "more": found.more_labels_estimate})
        return out


def _scored(model: Any, acquisition: Any, inputs: Sequence[Any], truth: np.ndarray,
            rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(decision confidence, correct) of ``model`` on ``rows``, scored as the server scores tasks."""
    proba = uncertainty_for(model, acquisition, [inputs[i] for i in rows])[0]
    return decision_confidence(proba), model.classes_[proba.argmax(axis=1)] == truth[rows]


def summarise(results: list[dict[str, Any]], order: Sequence[tuple[str, int, str, float]]) -> list[str]:
    """The table, one line per (data set, budget, rule, target) in ``order``, then pooled per (rule, target)."""
    header = (f"{'data':>10} {'labels':>6} {'acc':>5} {'rule':>13} {'target':>6} {'rows':>5} | {'precision':>9} "
              f"{'worst':>5} {'coverage':>8} {'missed':>6} {'nothing':>7} {'more':>5}")
    lines = [header, "-" * len(header)]
    for data, budget, rule, target in order:
        runs = [r for r in results if (r["data"], r["budget"], r["rule"], r["target"]) == (data, budget, rule, target)]
        if runs:
            lines.append(f"{data:>10} {budget:>6} {np.mean([r['accuracy'] for r in runs]):>5.3f} {rule:>13} "
                         f"{target:>6.2f} {np.mean([r['n'] for r in runs]):>5.0f} | {_figures(runs, target)}")
    lines += ["", "pooled over data sets and budgets:"]
    for rule, target in dict.fromkeys((r, t) for _, _, r, t in order):
        runs = [r for r in results if (r["rule"], r["target"]) == (rule, target)]
        lines.append(f"{'all':>10} {'':>6} {'':>5} {rule:>13} {target:>6.2f} {'':>5} | {_figures(runs, target)}"
                     f"   ({len(runs)} runs)")
    return lines


def _figures(runs: list[dict[str, Any]], target: float) -> str:
    precisions = [r["precision"] for r in runs if r["precision"] is not None]
    precision = f"{np.mean(precisions):.3f}" if precisions else "-"
    worst = f"{min(precisions):.3f}"[1:] if precisions else "-"
    missed = sum(p < target for p in precisions) / len(runs)
    nothing = 1.0 - len(precisions) / len(runs)
    estimates = [r["more"] for r in runs if r["precision"] is None and r["more"] is not None]
    more = f"{np.median(estimates):.0f}" if estimates else "-"
    return (f"{precision:>9} {worst:>5} {np.mean([r['coverage'] for r in runs]):>8.1%} {missed:>6.0%} "
            f"{nothing:>7.0%} {more:>5}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="digits,manpages,gcloud,docstrings")
    parser.add_argument("--budgets", default="100,300,600")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--targets", default="0.9,0.95")
    parser.add_argument("--rules", default=DEFAULT_RULES, help=f"comma-separated, of {', '.join(RULES)}")
    parser.add_argument("--calibration", default="auto", help="ChoiceClassifier calibration (server default: auto)")
    parser.add_argument("--strategy", default="auto", help="the project's strategy (server default: auto)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    args = parser.parse_args(argv)
    names = args.data.split(",")
    budgets = [int(b) for b in args.budgets.split(",")]
    targets = [float(t) for t in args.targets.split(",")]
    rules = args.rules.split(",")
    unknown = [r for r in rules if r not in RULES]
    if unknown:
        parser.error(f"unknown rule(s) {unknown}; choose from {list(RULES)}")

    t0 = time.perf_counter()
    jobs = [(name, seed) for name in names for seed in range(args.seeds)]
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_one, name, seed, budgets, targets, rules, args.calibration, args.strategy)
                   for name, seed in jobs]
        for done, future in enumerate(futures, 1):
            results.extend(future.result())
            print(f"  {done}/{len(jobs)} runs done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)

    print(f"auto-labelling precision on unlabelled tasks: {args.seeds} seeds per (data set, budget); "
          f"{VALIDATION_FRACTION:.0%} of the labels validate, the rest train "
          f"(strategy={args.strategy}, calibration={args.calibration})")
    order = [(n, b, r, t) for n in names for b in budgets for r in rules for t in targets]
    print("\n".join(summarise(results, order)))
    print("acc: the model's accuracy on the unlabelled tasks; rows: labelled rows the threshold was chosen on "
          "(validation, + cross-fitted training rows for +cf); precision: share correct among the auto-labelled "
          "unlabelled tasks (mean over runs that labelled any), worst: its minimum; coverage: share of unlabelled "
          "tasks auto-labelled; missed: runs whose test precision fell below the target while auto-labelling "
          "something; nothing: runs that auto-labelled nothing; more: median more_labels_estimate of those (rough; "
          "in rows of the kind used: validation rows for point/guaranteed, labels for +cf)")
    print(f"elapsed: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

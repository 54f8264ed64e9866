"""Is the confidence annotators read in Label Studio a probability they can believe, early in a project?

What Label Studio shows per region is the probability that the shown label is right (a round's
``Scored.display``: the model's probability softened by a temperature fitted on the round's validation
split, ``model.calibration.shown_temperature``; ``--raw`` shows the model's own); the task-level ``score``
orders the queue and is not a confidence. This replays "a fresh project at N labels" per (data set, seed): N tasks drawn
at random are labelled, 20 % of them held out as the server's validation split, the project's default
model (strategy "auto": BALD's MLP on text, margin's logistic model for a named logreg) is fitted on
the rest exactly as a round builds it (``backend.service.models.build_estimator``), and every task
nobody labelled is scored as the round scores its pool. On those tasks, against the truth:

- the share shown with confidence >= 0.9 and how often they are right (the target: >= 80 %);
- the same per confidence band, and the expected calibration error (15 bins).

Data: the real text sets of benchmarks/datasets.py; ``--classes 8`` keeps each set's 8 largest classes
(a set with fewer keeps all of them, and the table says how many).

    .venv/bin/python benchmarks/shown_confidence.py [--data gcloud,docstrings,manpages] [--labels 40]
        [--seeds 10] [--classes 8] [--pool 1500] [--strategies auto,margin]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.config import ProjectPolicy  # noqa: E402
from backend.labelstudio.tasktypes import ChoicesTask  # noqa: E402
from backend.service.models import build_estimator, resolve_strategy  # noqa: E402
from benchmarks import datasets  # noqa: E402
from model.calibration import expected_calibration_error  # noqa: E402
from model.scoring import score  # noqa: E402

SHOWN = 0.9
BANDS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0001)
PAIRS = list(zip(BANDS[:-1], BANDS[1:], strict=True))


def shown_ece(shown: np.ndarray, right: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of what is shown (top-label confidence against being right), 15 bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(shown, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(right[which == b].mean() - shown[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def keep_largest(texts: list[str], labels: list[str], n_classes: int) -> tuple[list[str], list[str]]:
    top = {c for c, _ in Counter(labels).most_common(n_classes)}
    pairs = [(t, y) for t, y in zip(texts, labels, strict=True) if y in top]
    return [t for t, _ in pairs], [y for _, y in pairs]


def one_run(texts: list[str], labels: list[str], classes: list[str], n_labels: int, seed: int, pool: int,
            strategy: str, raw: bool = False) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))[: n_labels + pool]
    labelled, rest = order[:n_labels], order[n_labels:]
    cut = int(round(n_labels * 0.8))  # the validation split (20 %) is held out as on the server
    train, validation = labelled[:cut], labelled[cut:]
    spec = ChoicesTask(from_name="c", to_name="t", data_key="text", modality="text", labels=tuple(classes))
    policy = ProjectPolicy(strategy=strategy)
    estimator = build_estimator(policy, spec, random_state=0)
    estimator.fit([texts[i] for i in train], [labels[i] for i in train])
    name = resolve_strategy(strategy, "auto", spec)
    if not raw:  # as a round does (evaluate_split): soften what is shown on the validation split
        val = score(estimator, name, [texts[i] for i in validation])
        spec.calibrate_shown(estimator, val.probs, [[labels[i]] for i in validation])
    scored = score(estimator, name, [texts[i] for i in rest])
    shown = scored.display
    right = np.array([scored.labels[k][0] == labels[i] for k, i in enumerate(rest)])
    truth = np.array([classes.index(labels[i]) for i in rest])
    high = shown >= SHOWN
    return {
        "high_share": float(high.mean()),
        "high_right": float(right[high].mean()) if high.any() else float("nan"),
        "n_high": int(high.sum()),
        "accuracy": float(right.mean()),
        "ece": float(expected_calibration_error(scored.probs, truth)),
        "ece_shown": shown_ece(shown, right),
        "max_shown": float(shown.max()),
        **{f"band_{lo:g}": float(right[(shown >= lo) & (shown < hi)].mean())
           if ((shown >= lo) & (shown < hi)).any() else float("nan") for lo, hi in PAIRS},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="gcloud,docstrings,manpages")
    parser.add_argument("--labels", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--pool", type=int, default=1500)
    parser.add_argument("--strategies", default="auto,margin")
    parser.add_argument("--raw", action="store_true", help="show the model's own probabilities (no validation "
                        "softening), as before the round calibrated what is shown")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"fresh project at {args.labels} labels (80 % train / 20 % validation), {args.seeds} seeds; "
          f"shown = the probability Label Studio shows per region; 'right' = share of shown-confidence >= {SHOWN} "
          "tasks whose label is right")
    print(f"{'set':<12}{'classes':>8}{'strategy':>10}{'accuracy':>10}{'>=0.9 share':>13}{'>=0.9 right':>13}"
          f"{'worst seed':>12}{'ECE model':>11}{'ECE shown':>11}")
    for name in args.data.split(","):
        texts, labels = keep_largest(*datasets.load(name), args.classes)
        classes = sorted(set(labels))
        for strategy in args.strategies.split(","):
            runs = [one_run(texts, labels, classes, args.labels, seed, args.pool, strategy, args.raw)
                    for seed in range(args.seeds)]
            right = [r["high_right"] for r in runs if r["n_high"]]
            pooled = sum(r["high_right"] * r["n_high"] for r in runs if r["n_high"]) / max(
                1, sum(r["n_high"] for r in runs))
            print(f"{name:<12}{len(classes):>8}{strategy:>10}{np.mean([r['accuracy'] for r in runs]):>10.3f}"
                  f"{np.mean([r['high_share'] for r in runs]):>13.3f}"
                  f"{(pooled if right else float('nan')):>13.3f}{(min(right) if right else float('nan')):>12.3f}"
                  f"{np.mean([r['ece'] for r in runs]):>11.3f}{np.mean([r['ece_shown'] for r in runs]):>11.3f}")
            bands = "  ".join(f"[{lo:g},{hi:g}): {np.nanmean([r[f'band_{lo:g}'] for r in runs]):.2f}"
                              for lo, hi in PAIRS if any(not np.isnan(r[f'band_{lo:g}']) for r in runs))
            print(f"{'':<12}right per shown band: {bands}")
    print(f"elapsed {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`labelloop simulate-detection`: active learning for object detection on synthetic scenes, against random picks.

    labelloop simulate-detection [--seeds 3] [--budget 80] [--strategies entropy,localization]
    .venv/bin/python benchmarks/detection_simulate.py ...     # the same, as a benchmark script

Generates ``--images`` labelled synthetic scenes (:func:`model.detection.synthetic.make_scenes`),
and for every seed replays a labelling project per arm with
:func:`model.detection.simulation.run_detection_curve`: ``--initial`` random images, then rounds of
``--batch`` images picked by the arm's strategy (``random``: uniformly), a ``BoxDetector`` trained
each round -- from scratch in the first, then (``--warm-steps``, default 100) fine-tuned from the
previous round's weights, in every arm alike -- and scored on the held-out test split. Every arm of
a seed shares the split and the initial images.

Prints, per label budget, mean +- standard deviation over seeds of mAP@0.5 per arm and each
arm's gap to random; the mean mAP@0.5:0.95 at the final budget; the images each arm needs to reach
the mAP targets; and the cost: fit seconds per round and predict milliseconds per image. Figures
only, no assertions. ``--json PATH`` also writes the curves.

The default run (3 seeds, 3 arms, budget 80) takes roughly 10-15 minutes on two busy CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from model.detection.simulation import RANDOM, aggregate_curves, labels_to_reach, run_detection_curve
from model.detection.synthetic import SHAPES, make_scenes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return add_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0])).parse_args(argv)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the `simulate-detection` subcommand."""
    parser = sub.add_parser("simulate-detection", help="replay active learning for object detection on generated "
                            "scenes, against random picks", description=__doc__.split("\n")[0])
    add_arguments(parser).set_defaults(func=lambda args, settings: (_report(args), 0)[1])


def _report(args: argparse.Namespace) -> None:
    result = run(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--seeds", type=int, default=3, help="replays per arm (each: its own split and start)")
    parser.add_argument("--budget", type=int, default=80, help="images labelled at the end")
    parser.add_argument("--initial", type=int, default=10, help="random images labelled before the first round")
    parser.add_argument("--batch", type=int, default=10, help="images labelled per round")
    parser.add_argument("--images", type=int, default=450, help="synthetic scenes generated (pool + test)")
    parser.add_argument("--test-size", type=int, default=150, help="held-out test images")
    parser.add_argument("--classes", type=int, default=len(SHAPES), help=f"shape classes used (1-{len(SHAPES)})")
    parser.add_argument("--strategies", default="entropy,localization", help="active arms, comma-separated")
    parser.add_argument("--aggregate", default=None, help="aggregate parameter of the class strategies")
    parser.add_argument("--image-size", type=int, default=None, help="BoxDetector image_size (default: its own)")
    parser.add_argument("--epochs", type=int, default=None, help="BoxDetector epochs (default: its own)")
    parser.add_argument("--warm-steps", type=int, default=100,
                        help="rounds after the first fine-tune the previous round's detector for this many steps "
                             "(0: every round trains from scratch, several times slower)")
    parser.add_argument("--targets", default="0.2,0.3,0.4", help="mAP@0.5 targets for 'images to reach'")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic scenes")
    parser.add_argument("--json", type=Path, help="also write the curves here")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    images, targets = make_scenes(args.images, seed=args.data_seed, classes=SHAPES[: args.classes])
    n_boxes = sum(len(t) for t in targets)
    print(f"{len(images)} synthetic scenes, {n_boxes} boxes, {args.classes} classes "
          f"({time.perf_counter() - started:.1f} s to generate)", flush=True)
    detector_params = {k: v for k, v in (("image_size", args.image_size), ("epochs", args.epochs)) if v is not None}
    arms = [RANDOM, *[s.strip() for s in args.strategies.split(",") if s.strip()]]
    curves: dict[str, list[dict[str, Any]]] = {arm: [] for arm in arms}
    for seed in range(args.seeds):
        for arm in arms:
            strategy_params = {"aggregate": args.aggregate} if args.aggregate and arm in ("entropy", "margin",
                                                                                         "least_confidence") else None
            t0 = time.perf_counter()
            curve = run_detection_curve(
                images, targets, arm, seed=seed, initial=args.initial, batch_size=args.batch, budget=args.budget,
                test_size=args.test_size, detector_params=detector_params, strategy_params=strategy_params,
                classes=SHAPES[: args.classes], warm_start_steps=args.warm_steps or None,
            )
            curves[arm].append(curve)
            trail = " ".join(f"{n}:{m:.3f}" for n, m in zip(curve["labels"], curve["map50"], strict=True))
            print(f"seed {seed} {arm:>14}  {time.perf_counter() - t0:6.1f} s  mAP@0.5 {trail}", flush=True)
    summary = {arm: aggregate_curves(c) for arm, c in curves.items()}
    report(summary, [float(t) for t in args.targets.split(",") if t.strip()])
    print(f"total {time.perf_counter() - started:.0f} s", flush=True)
    return {"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary,
            "curves": {arm: c for arm, c in curves.items()}}


def report(summary: dict[str, dict[str, Any]], targets: list[float]) -> None:
    """Print the per-budget table, images to reach each target, and costs."""
    arms = list(summary)
    labels = summary[RANDOM]["labels"]
    reference = np.asarray(summary[RANDOM]["map50_mean"])
    print("\nmAP@0.5, mean +- std over seeds (gap = arm - random)")
    print("images  " + "  ".join(f"{arm:>22}" for arm in arms))
    for i, n in enumerate(labels):
        cells = []
        for arm in arms:
            mean, std = summary[arm]["map50_mean"][i], summary[arm]["map50_std"][i]
            gap = "" if arm == RANDOM else f" ({mean - reference[i]:+.3f})"
            cells.append(f"{mean:.3f}+-{std:.3f}{gap}".rjust(22))
        print(f"{n:>6}  " + "  ".join(cells))
    print("\nmAP@0.5:0.95 at the final budget: " + ", ".join(
        f"{arm} {summary[arm]['map50_95_mean'][-1]:.3f}+-{summary[arm]['map50_95_std'][-1]:.3f}" for arm in arms))
    print("\nimages to reach mAP@0.5 (mean curve; '-' = not within the budget)")
    for target in targets:
        reach = {arm: labels_to_reach(summary[arm], target) for arm in arms}
        text = ", ".join(f"{arm} {reach[arm] if reach[arm] is not None else '-'}" for arm in arms)
        base, extra = reach[RANDOM], ""
        if base is not None:
            extra = "  " + ", ".join(f"{arm} saves {base - reach[arm]}" for arm in arms[1:] if reach[arm] is not None)
        print(f"  {target:.2f}: {text}{extra}")
    print("\ncost per round (mean over seeds and rounds)")
    for arm in arms:
        fit, predict = np.asarray(summary[arm]["fit_seconds"]), np.asarray(summary[arm]["predict_ms"])
        print(f"  {arm:>14}: fit {fit.mean():.1f} s (first round {fit[0]:.1f} s, last {fit[-1]:.1f} s), "
              f"predict {predict.mean():.1f} ms / image")


def main(argv: list[str] | None = None) -> None:
    _report(parse_args(argv))

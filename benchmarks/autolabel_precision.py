"""Does the auto-labelling threshold hold its target precision on tasks it has never seen?

On scikit-learn's bundled digits (offline), per seed: a stratified split into a label pool (60 %),
a validation split (20 %) and a test set (20 %). For each label budget, fit the default image model
on a random sample of the pool, with and without calibration; pick the auto-labelling threshold on the
validation split exactly as `labelloop autolabel` does (model.thresholds.precision_threshold over
model.uncertainty.decision_confidence); then apply it to the test set and measure what a team gets:
the precision of the auto-labelled test tasks and the coverage (share auto-labelled). Also the
expected calibration error on the test set.

    .venv/bin/python benchmarks/autolabel_precision.py [--seeds 5] [--budgets 100,300,600] [--targets 0.95,0.99]

Prints one row per (budget, calibration, target, threshold rule): mean over seeds of test precision, coverage, the
share of seeds whose test precision met the target, and test ECE. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from model.calibration import expected_calibration_error
from model.estimators import ChoiceClassifier
from model.thresholds import precision_threshold
from model.uncertainty import decision_confidence

#: Threshold rules compared: the measured precision, or its 95 % lower confidence bound, must reach the target.
RULES = {"point": None, "lower95": 0.95}


def digits() -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    data = load_digits()
    images = [np.rint(image * (255.0 / 16.0)).astype(np.uint8) for image in data.images]
    return images, np.array([str(int(v)) for v in data.target]), [str(i) for i in range(10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--budgets", default="100,300,600")
    parser.add_argument("--targets", default="0.95,0.99")
    parser.add_argument("--calibrations", default="none,auto")
    args = parser.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")]
    targets = [float(t) for t in args.targets.split(",")]
    calibrations = args.calibrations.split(",")

    images, labels, classes = digits()
    index = {c: i for i, c in enumerate(classes)}
    rows: dict[tuple[int, str, float, str], list[tuple[float | None, float, bool, float]]] = {}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        ids = np.arange(len(labels))
        pool, rest = train_test_split(ids, train_size=0.6, stratify=labels, random_state=seed)
        val, test = train_test_split(rest, train_size=0.5, stratify=labels[rest], random_state=seed)
        rng = np.random.default_rng(seed)
        for budget in budgets:
            chosen = rng.choice(pool, size=min(budget, len(pool)), replace=False)
            for calibration in calibrations:
                model = ChoiceClassifier(modality="image", classes=classes, random_state=seed, calibration=calibration)
                model.fit([images[i] for i in chosen], list(labels[chosen]))
                val_p = model.predict_proba([images[i] for i in val])
                test_p = model.predict_proba([images[i] for i in test])
                val_ok = np.array(classes)[val_p.argmax(1)] == labels[val]
                test_ok = np.array(classes)[test_p.argmax(1)] == labels[test]
                test_conf = decision_confidence(test_p)
                ece = expected_calibration_error(test_p, np.array([index[v] for v in labels[test]]))
                for target in targets:
                    for rule, level in RULES.items():
                        found = precision_threshold(decision_confidence(val_p), val_ok, target, confidence_level=level)
                        if found.threshold is None:
                            picked = np.zeros(len(test), dtype=bool)
                        else:
                            picked = test_conf >= found.threshold
                        precision = float(test_ok[picked].mean()) if picked.any() else None
                        met = precision is None or precision >= target  # labelling nothing breaks no promise
                        rows.setdefault((budget, calibration, target, rule), []).append(
                            (precision, float(picked.mean()), met, float(ece))
                        )

    print(f"digits: {len(labels)} images; per seed 60/20/20 pool/validation/test; {args.seeds} seeds; "
          f"{time.perf_counter() - t0:.0f} s")
    header = (f"{'labels':>6} {'calibration':>11} {'target':>6} {'rule':>8} | {'test precision':>14} "
              f"{'coverage':>8} {'met':>5} {'test ECE':>8}")
    print(header)
    print("-" * len(header))
    for (budget, calibration, target, rule), values in rows.items():
        precisions = [p for p, _, _, _ in values if p is not None]
        precision = f"{np.mean(precisions):.3f}" if precisions else "-"
        coverage = np.mean([c for _, c, _, _ in values])
        met = sum(m for _, _, m, _ in values)
        ece = np.mean([e for _, _, _, e in values])
        print(f"{budget:>6} {calibration:>11} {target:>6.2f} {rule:>8} | {precision:>14} {coverage:>8.1%} "
              f"{met:>2}/{len(values):<2} {ece:>8.3f}")
    print("rule: point = measured validation precision reaches the target (labelloop autolabel's default); "
          "lower95 = its 95 % Clopper-Pearson lower bound does (--confidence-level 0.95)")
    print("test precision: share correct among the auto-labelled test tasks (mean over seeds that labelled any); "
          "coverage: share of test tasks auto-labelled; met: seeds whose test precision reached the target "
          "(or that auto-labelled nothing)")


if __name__ == "__main__":
    main()

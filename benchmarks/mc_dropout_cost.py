"""Cost of Monte-Carlo dropout, and BALD against softmax entropy, for ChoiceClassifier(model="mlp").

    .venv/bin/python benchmarks/mc_dropout_cost.py [--tasks 10000] [--samples 20] [--seeds 3] [--rounds 10]

Part 1 -- cost. An MLP is trained on 1,000 rows, then predicts N tasks three ways: one
deterministic pass (dropout off), T MC-dropout passes as the estimator runs them (one batched
forward per chunk), and, for reference, T separate passes in a Python loop (each recomputing the
first layer, as a naive implementation would). Two inputs:

* pixels: "digits-like" images -- sklearn's 8x8 digits, tiled to N with random per-pixel noise,
  through the default PixelFeatures (16x16 RGB thumbnails, 768 dense features);
* text: synthetic three-class reviews (random filler plus class words), tf-idf features.

Times are end to end (``predict_proba`` / ``predict_proba_samples`` from raw inputs, feature
extraction included) and network only (precomputed features). Each is the best of ``--repeat``
runs, on the CPU unless LABELLOOP_DEVICE says otherwise.

Part 2 -- acquisition. A pool-based active-learning simulation on sklearn digits (1,297 pool,
500 test images): 20 random labels, then ``--rounds`` rounds of 20 acquisitions each by random
choice, softmax entropy of the deterministic pass, predictive entropy and BALD (both over T MC
samples), refitting the MLP every round; test accuracy per label budget, averaged over seeds.
It also reports how much BALD and entropy agree on one pool: Spearman correlation of the scores
and the overlap of their top-20 picks.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from model.device import select_device  # noqa: E402
from model.estimators import ChoiceClassifier  # noqa: E402
from model.torch_mlp import mlp_proba  # noqa: E402
from model.uncertainty import get_strategy, uncertainty_for  # noqa: E402

DIGIT_CLASSES = [str(d) for d in range(10)]
WORDS = {
    "pos": "great lovely excellent wonderful superb delightful fantastic brilliant moving charming".split(),
    "neg": "awful terrible horrible dreadful dull tedious boring broken clumsy bland".split(),
    "neutral": "film plot actor scene story camera music script ending cast".split(),
}
FILLER = "the a and of to it was this that with for on but as at by an".split()


def digits_uint8() -> tuple[list[np.ndarray], np.ndarray]:
    data = load_digits()
    return list(np.round(data.images * (255.0 / 16.0)).astype(np.uint8)), np.array([str(t) for t in data.target])


def digits_like(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` 8x8 uint8 images: digits tiled, each copy with fresh +-24 grey-level noise."""
    images, _ = digits_uint8()
    rng = np.random.default_rng(seed)
    base = np.stack([images[i % len(images)] for i in range(n)]).astype(np.int16)
    noisy = np.clip(base + rng.integers(-24, 25, size=base.shape), 0, 255).astype(np.uint8)
    return list(noisy)


def reviews(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    labels = list(WORDS)
    texts, ys = [], []
    for i in range(n):
        label = labels[i % 3]
        words = list(rng.choice(FILLER, size=rng.integers(6, 14)))
        words += list(rng.choice(WORDS[label], size=2)) + list(rng.choice(WORDS["neutral"], size=2))
        words += list(rng.choice(WORDS[labels[(i + 1) % 3]], size=1))
        rng.shuffle(words)
        texts.append(" ".join(words))
        ys.append(label)
    return texts, ys


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def cost(name: str, clf: ChoiceClassifier, tasks: list[Any], n_samples: int, repeat: int) -> None:
    clf.set_params(n_samples=n_samples)
    features = clf.transform(tasks)
    device = select_device()

    def net(t: int | None, seed: int = 0) -> np.ndarray:
        return mlp_proba(
            clf.net_, features, multi_label=False, device=device, n_samples=t, dropout=clf.net_dropout_, seed=seed
        )

    def looped() -> None:
        for t in range(n_samples):
            net(1, seed=t)

    rows = [
        ("end to end: 1 deterministic pass", best_of(repeat, lambda: clf.predict_proba(tasks))),
        (f"end to end: T={n_samples} MC passes (batched)", best_of(repeat, lambda: clf.predict_proba_samples(tasks))),
        ("  of which feature extraction", best_of(repeat, lambda: clf.transform(tasks))),
        ("network only: 1 deterministic pass", best_of(repeat, lambda: net(None))),
        (f"network only: T={n_samples} MC passes (batched)", best_of(repeat, lambda: net(n_samples))),
        (f"network only: T={n_samples} passes in a Python loop", best_of(repeat, looped)),
    ]
    shape = "x".join(str(s) for s in features.shape)
    kind = "sparse" if hasattr(features, "nnz") else "dense"
    print(f"\n[{name}] {len(tasks)} tasks, features {shape} ({kind}), hidden {clf.hidden_size}, device {device}")
    for label, seconds in rows:
        print(f"  {label:<48} {seconds * 1000:9.1f} ms")
    e2e, e2e_mc, _, one, mc, loop = (s for _, s in rows)
    print(f"  ratio MC/deterministic, end to end: {e2e_mc / e2e:5.2f}x")
    print(f"  ratio MC/deterministic, network only: {mc / one:5.2f}x (Python loop: {loop / one:5.2f}x)")


def part_cost(args: argparse.Namespace) -> None:
    print(f"== Part 1: cost of T={args.samples} MC-dropout passes vs one deterministic pass ==")
    images, labels = digits_uint8()
    clf = ChoiceClassifier(modality="image", classes=DIGIT_CLASSES, model="mlp").fit(images[:1000], list(labels[:1000]))
    cost("pixels, digits-like 8x8 -> 16x16x3", clf, digits_like(args.tasks), args.samples, args.repeat)
    texts, ys = reviews(args.tasks + 1000, seed=1)
    clf = ChoiceClassifier(classes=list(WORDS), model="mlp").fit(texts[:1000], ys[:1000])
    cost("text, synthetic reviews, tf-idf", clf, texts[1000:], args.samples, args.repeat)


def part_acquisition(args: argparse.Namespace) -> None:
    print("\n== Part 2: BALD vs softmax entropy on digits (MLP, pool-based active learning) ==")
    images, labels = digits_uint8()
    order = np.random.default_rng(12345).permutation(len(images))
    test_idx, pool_all = order[:500], order[500:]
    test_x, test_y = [images[i] for i in test_idx], labels[test_idx]
    strategies = ["random", "entropy", "predictive_entropy", "bald"]
    budgets = [args.start + args.batch * r for r in range(args.rounds + 1)]
    curves = {s: np.zeros((args.seeds, len(budgets))) for s in strategies}
    agreement = []
    for seed in range(args.seeds):
        start = np.random.default_rng(seed).choice(len(pool_all), size=args.start, replace=False)
        for strategy in strategies:
            rng = np.random.default_rng(1000 + seed)
            labelled = list(start)
            for r, _ in enumerate(budgets):
                rows = pool_all[labelled]
                clf = ChoiceClassifier(
                    modality="image", classes=DIGIT_CLASSES, model="mlp", n_samples=args.samples, random_state=seed
                ).fit([images[i] for i in rows], list(labels[rows]))
                curves[strategy][seed, r] = np.mean(clf.predict(test_x) == test_y)
                if r == len(budgets) - 1:
                    break
                unlabelled = np.setdiff1d(np.arange(len(pool_all)), labelled)
                pool_x = [images[i] for i in pool_all[unlabelled]]
                if strategy == "random":
                    picks = rng.choice(len(unlabelled), size=args.batch, replace=False)
                else:
                    _, u = uncertainty_for(clf, get_strategy(strategy), pool_x)
                    picks = np.argsort(-u, kind="stable")[: args.batch]
                    if strategy == "bald" and r == 0:
                        _, u_ent = uncertainty_for(clf, "entropy", pool_x)
                        agreement.append((spearman(u, u_ent), overlap(u, u_ent, args.batch)))
                labelled.extend(unlabelled[picks].tolist())
    header = "labels  " + "  ".join(f"{s:>18}" for s in strategies)
    print(f"test accuracy (mean over {args.seeds} seeds, {len(test_y)} test images; +- = std over seeds)")
    print(header)
    for j, budget in enumerate(budgets):
        cells = [f"{curves[s][:, j].mean():.3f} +- {curves[s][:, j].std():.3f}" for s in strategies]
        print(f"{budget:6d}  " + "  ".join(f"{c:>18}" for c in cells))
    print("mean accuracy over the curve: " + ", ".join(f"{s} {curves[s].mean():.3f}" for s in strategies))
    rho, top = np.array(agreement).mean(axis=0)
    print(
        f"BALD vs entropy on the first pool ({len(pool_all) - args.start} images, model from {args.start} labels): "
        f"Spearman rho {rho:.2f}, top-{args.batch} overlap {top:.0%} (mean over seeds)"
    )


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def overlap(a: np.ndarray, b: np.ndarray, k: int) -> float:
    return len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=20, help="T, MC-dropout passes")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs; the best is reported")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--start", type=int, default=20, help="initial random labels")
    parser.add_argument("--batch", type=int, default=20, help="acquisitions per round")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-acquisition", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    if not args.skip_cost:
        part_cost(args)
    if not args.skip_acquisition:
        part_acquisition(args)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

"""Model file cost: dumps / loads time and size of the old (skops) and the new (native) format.

    .venv/bin/python benchmarks/model_load.py [--sizes 250,1000,2000] [--kinds logreg,mlp,committee]
        [--modalities text,image] [--repeat 3] [--old-repeat 1] [--exact-old-dumps]

For each labelled-set size, model kind and modality, fits a :class:`ChoiceClassifier` the way
the server does (``make_estimator``) and prints, measured in one run on this machine: ``dumps``
and ``loads`` time in ms and size in bytes of the skops format (what every model file was
before) and of the native format (:mod:`model.arrays_io`, what :mod:`model.persistence` writes
now), and the old / new ratios. The reloaded native model is checked to predict exactly what
the fitted one does.

Run time is almost all skops: 10-20 s per text model to load, as long again to write. The
defaults take ~5 minutes on 2 cores; ``--sizes 250,500,1000,2000,4000`` about 10. skops' real
``dumps`` is quadratic in the number of numpy scalars (one zip member each, see
:func:`skops_member_check_indexed`) and takes minutes per text model, so by default it is timed
with that quadratic term bypassed -- the same bytes, a lower bound, marked ``>``;
``--exact-old-dumps`` times the real thing (138 s for one 2,000-row logistic regression here).

Data is real, because the vocabulary size -- what dominated the skops cost -- depends on it:

* text: man pages of this machine (:func:`man_page_corpus`), the first 1,000 characters of each
  after stripping troff markup, labelled with one of 8 classes by man section (gcloud's
  thousands of generated pages are one class). 1,000 of them give ~50,000 word and ~15,000
  character-trigram features, the size of a real project's vocabulary;
* image: scikit-learn's bundled 8x8 digits (:func:`digit_images`), tiled with pixel noise beyond
  its 1,797 images, so the RBF features keep up to their 1,000 landmarks.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MAN_ROOT = Path("/usr/share/man")
#: man sections used as classes; gcloud's generated pages (thousands in section 1) are their own class.
SECTIONS = ("1", "2", "3", "4", "5", "7", "8")

_ESCAPES = [
    (re.compile(r'\\".*'), ""),  # comment to the end of the line
    (re.compile(r"\\f(\[[^\]]*\]|\(..|.)"), ""),  # font changes \fB \f(CW \f[I]
    (re.compile(r"\\\*(\[[^\]]*\]|\(..|.)"), ""),  # string registers \*(lq
    (re.compile(r"\\\((..)"), " "),  # special characters \(em
    (re.compile(r"\\[&,/|^:%]"), ""),  # zero-width
    (re.compile(r"\\[-e ~0]"), lambda m: {"\\-": "-", "\\e": "\\"}.get(m.group(0), " ")),
    (re.compile(r"\\(.)"), r"\1"),  # anything else: the character itself
]
_LAYOUT_MACROS = set(
    "TH PP LP P TP RS RE HP IP sp br nf fi in ti ad na nh ne ft ps ll ta hy ce tr nr rm ds de if ie el so ig".split()
)


def troff_to_text(source: str) -> str:
    """Roughly strip troff / man markup, keeping the words a reader sees (good enough for tf-idf)."""
    lines = []
    for line in source.splitlines():
        if line.startswith((".\\\"", "'\\\"")):
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].strip().partition(" ")
            if macro in _LAYOUT_MACROS or not rest:
                continue
            line = rest.replace('"', "")
        for pattern, replacement in _ESCAPES:
            line = pattern.sub(replacement, line)
        lines.append(line)
    return " ".join(" ".join(lines).split())


def man_page_corpus(n: int, seed: int = 0, chars: int = 1000) -> tuple[list[str], list[str], list[str]]:
    """``n`` (text, label) pairs from this machine's man pages, as (texts, labels, classes).

    Pages are drawn at random (seeded) from sections :data:`SECTIONS`; labels are ``"man<section>"``,
    or ``"gcloud"`` for Google Cloud CLI pages, which are capped at a quarter of the rows: there are
    ~16,000 of them, all generated from one template, and left alone they would make the corpus
    far more repetitive than a labelling project's. Each text is the first ``chars`` characters of
    the page after :func:`troff_to_text`; pages shorter than 200 characters are skipped.
    Raises RuntimeError if the machine has fewer usable pages than ``n``.
    """
    paths = sorted(p for section in SECTIONS for p in (MAN_ROOT / f"man{section}").glob("*.gz"))
    rng = np.random.default_rng(seed)
    gcloud = [p for p in paths if p.name.startswith("gcloud")]
    others = [p for p in paths if not p.name.startswith("gcloud")]
    pools = [iter([pages[i] for i in rng.permutation(len(pages))]) for pages in (others, gcloud)]
    texts, labels = [], []
    while len(texts) < n:
        path = next(pools[len(texts) % 4 == 3], None) or next(pools[0], None)
        if path is None:
            raise RuntimeError(f"only {len(texts)} usable man pages under {MAN_ROOT}, {n} requested")
        try:
            text = troff_to_text(gzip.decompress(path.read_bytes()).decode("utf-8", errors="replace"))
        except (OSError, EOFError):
            continue
        if len(text) >= 200:
            texts.append(text[:chars])
            labels.append("gcloud" if path.name.startswith("gcloud") else "man" + path.parent.name[3:])
    return texts, labels, ["gcloud", *(f"man{s}" for s in SECTIONS)]


def digit_images(n: int, seed: int = 0) -> tuple[list[np.ndarray], list[str], list[str]]:
    """``n`` 8x8 uint8 digit images (sklearn's bundled set, tiled with +-24 grey-level noise)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    base = np.round(data.images * (255.0 / 16.0)).astype(np.int16)
    rng = np.random.default_rng(seed)
    picked = base[np.arange(n) % len(base)]
    noisy = np.clip(picked + rng.integers(-24, 25, size=picked.shape), 0, 255).astype(np.uint8)
    noisy[: min(n, len(base))] = picked[: min(n, len(base))]  # the real images unchanged
    labels = [str(data.target[i % len(base)]) for i in range(n)]
    return list(noisy), labels, [str(d) for d in range(10)]


def best_ms(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls in ms, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, (time.perf_counter() - start) * 1000.0)
    return best, result


#: The acquisition function the server would pick each model kind for (``make_estimator``).
STRATEGY = {"logreg": "margin", "mlp": "bald", "committee": "vote_entropy"}


def fit(modality: str, kind: str, X: list[Any], y: list[str], classes: list[str]) -> Any:
    """A fitted estimator as the server builds it. The MLP trains for its minimum number of
    steps (``epochs=1``): the file holds the same arrays of the same shapes however long it trains."""
    from model.estimators import make_estimator

    params = {"epochs": 1} if kind == "mlp" else {}
    return make_estimator(STRATEGY[kind], modality, classes, multi_label=False, model=kind, **params).fit(X, y)


def n_features(estimator: Any) -> int:
    """Vocabulary size (text) or RBF feature count (image): what the file size grows with."""
    features = estimator.features_
    if hasattr(features, "transformer_list"):
        return sum(len(v.vocabulary_) for _, v in features.transformer_list if not isinstance(v, str))
    return int(features.projection_.shape[1])


@contextmanager
def skops_member_check_indexed() -> Iterator[None]:
    """Make skops' dumps linear instead of quadratic, without changing what it writes.

    skops writes every numpy array *and every numpy scalar* as its own zip member, and before
    each one checks ``f_name not in zip_file.namelist()`` -- a fresh list of all members so far.
    A vocabulary of 70,000 ``numpy.int64`` values means 70,000 members and ~2.5e9 name
    comparisons: minutes. While patched, ``namelist()`` returns zipfile's own name index (a dict:
    same membership answers, O(1)), so the bytes are the same and only that quadratic term is
    gone: the time measured is a lower bound of skops' real dumps time.
    """
    original = zipfile.ZipFile.namelist
    zipfile.ZipFile.namelist = lambda self: self.NameToInfo  # type: ignore[method-assign]
    try:
        yield
    finally:
        zipfile.ZipFile.namelist = original  # type: ignore[method-assign]


def old_format(estimator: Any, exact_dumps: bool, repeat: int) -> tuple[float, float, bytes]:
    """(dumps ms, loads ms, bytes) of the skops format, as ``persistence`` wrote and reads it."""
    import skops.io as sio

    from model import persistence

    def dump() -> bytes:
        return sio.dumps(estimator, compression=zipfile.ZIP_DEFLATED)

    if exact_dumps:
        dumps_ms, data = best_ms(repeat, dump)
    else:
        with skops_member_check_indexed():
            dumps_ms, data = best_ms(repeat, dump)
    loads_ms, _ = best_ms(repeat, lambda: persistence.loads(data))
    return dumps_ms, loads_ms, data


def new_format(estimator: Any, X: list[Any], repeat: int) -> tuple[float, float, bytes]:
    """(dumps ms, loads ms, bytes) of the native format; checks the loaded model predicts the same."""
    from model import persistence

    dumps_ms, data = best_ms(repeat, lambda: persistence.dumps(estimator))
    loads_ms, again = best_ms(repeat, lambda: persistence.loads(data))
    if not np.array_equal(again.predict_proba(X[:50]), estimator.predict_proba(X[:50])):
        raise AssertionError("the reloaded model predicts differently")
    return dumps_ms, loads_ms, data


HEADER = (
    f"{'modality':8} {'kind':9} {'rows':>5} {'features':>8} | {'old dumps':>10} {'old loads':>10} {'old bytes':>11} | "
    f"{'new dumps':>9} {'new loads':>9} {'new bytes':>10} | {'dumps x':>7} {'loads x':>8} {'size x':>6}"
)


def row(modality: str, kind: str, rows: int, features: int, old: tuple, new: tuple, exact: bool) -> str:
    (od, ol, ob), (nd, nl, nb) = old, new
    mark = "" if exact else ">"
    return (
        f"{modality:8} {kind:9} {rows:>5} {features:>8} | {mark + f'{od:,.0f}':>10} {ol:>10,.0f} {len(ob):>11,} | "
        f"{nd:>9,.1f} {nl:>9,.1f} {len(nb):>10,} | "
        f"{mark + f'{od / nd:,.0f}':>7} {ol / nl:>8,.0f} {len(ob) / len(nb):>6.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,1000,2000", help="labelled-set sizes, comma-separated")
    parser.add_argument("--kinds", default="logreg,mlp,committee")
    parser.add_argument("--modalities", default="text,image")
    parser.add_argument("--repeat", type=int, default=3, help="runs per new-format measurement (best is kept)")
    parser.add_argument("--old-repeat", type=int, default=1, help="runs per skops measurement (seconds each)")
    parser.add_argument(
        "--exact-old-dumps",
        action="store_true",
        help="time skops' real, quadratic dumps (minutes per text model above ~500 rows) instead of a lower bound",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    start = time.perf_counter()
    print(f"labelled rows {sizes}; {os.cpu_count()} CPUs; ms, best of {args.repeat} (skops: of {args.old_repeat})")
    if not args.exact_old_dumps:
        print("'>': skops dumps timed with its quadratic member-name check bypassed (same bytes): a lower bound")
    print(HEADER)
    for modality in args.modalities.split(","):
        load = man_page_corpus if modality == "text" else digit_images
        X_all, y_all, classes = load(max(sizes))
        for rows in sizes:
            X, y = X_all[:rows], y_all[:rows]
            for kind in args.kinds.split(","):
                estimator = fit(modality, kind, X, y, classes)
                old = old_format(estimator, args.exact_old_dumps, args.old_repeat)
                new = new_format(estimator, X, args.repeat)
                line = row(modality, kind, rows, n_features(estimator), old, new, args.exact_old_dumps)
                print(line, flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

"""Real text classification data sets built from material already on this machine (no downloads).

The benchmarks must be measured on real text at a real project's size (thousands of tasks), not
only on scikit-learn's digits. Three sources that every Debian/Ubuntu box with this project's
virtual environments holds, each turned into ``(texts, labels)``:

``manpages``
    The non-gcloud pages of /usr/share/man/man{1,2,3,5,7,8}, labelled by manual section (user
    command, system call, library call, file format, overview, administration command). Text: the
    NAME line's description (the page names before ``\\-`` are dropped) and the DESCRIPTION
    section (or, where a page has none, its first section after SYNOPSIS). Hard pairs are built
    in: system calls vs library calls, user vs admin commands. Symlinks and ``.so`` stubs are
    aliases and are skipped, so every page counts once.
``gcloud``
    The Google Cloud CLI reference pages (/usr/share/man/man1/gcloud_*.1.gz, one per command),
    labelled by the command's top-level group (``compute``, ``container``, ``iam``, ...), keeping
    the :data:`GCLOUD_GROUPS` largest groups. One page per command: the alpha / beta pages repeat
    most GA pages almost word for word, and a near-copy in the test set of a training page would
    flatter every figure; so GA when it exists, else beta, else alpha.
``docstrings``
    The prose of the function and class docstrings of installed Python packages (the paragraphs
    before the first Parameters / Args / example section), read with :mod:`ast` (nothing is
    imported), labelled by top-level package: django, matplotlib, networkx, pandas, sqlalchemy,
    sympy, torch. Short texts (25 words on average), as in a ticket-routing project. numpy, scipy
    and sklearn were left out: with numpy, scipy, sklearn, torch, sqlalchemy, pandas and django,
    300 labels gave 50 % accuracy -- the numeric packages' docstrings overlap too much (pandas
    and torch keep some of that overlap in).

Texts are cut to :data:`MAX_WORDS` words (a labeller reads a paragraph) and dropped under
:data:`MIN_WORDS`. troff is stripped by a small parser here rather than rendered by groff: ~10x
faster and independent of the groff version.

What is removed, so that no class is separable by a formatting artefact rather than by content:
troff requests and escapes, the SYNOPSIS (its ``#include`` lines would give sections 2/3 away),
section numbers in cross-references (``open(2)`` -> ``open``), page and file names, and for
gcloud the ``gcloud GROUP ...`` command spans, which spell the label out, and the ``(ALPHA)`` /
``(BETA)`` markers. Docstrings never include the module path or the function name, and lose their
reST markup (``:class:`_orm.Query``` -> ``Query``), which differs from project to project.
Exact duplicate texts are kept once, and dropped altogether when they carry different labels
(generic texts such as "Return self==value.").

Every builder is deterministic (sorted file order, a fixed seed for subsampling) and caps its
set at :data:`MAX_ITEMS` with a per-class cap (largest classes trimmed first), so benchmarks stay
fast. The figures still depend on what is installed (man-db pages, package versions); ``--write``
freezes a copy as JSONL -- ``{"text": ..., "label": ...}`` per line, what ``labelloop simulate
--data FILE.jsonl`` reads -- which :func:`load` prefers when present. That directory holds generated
data: keep it out of git.

    .venv/bin/python benchmarks/datasets.py --write benchmarks/data [--only manpages,gcloud]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

MAN_ROOT = Path("/usr/share/man")
#: Manual sections used by :func:`manpages` and the label each gets (see man(1)).
MAN_SECTIONS = {
    "1": "user-command",
    "2": "system-call",
    "3": "library-call",
    "5": "file-format",
    "7": "overview",
    "8": "admin-command",
}
#: Packages of :func:`docstrings` (top-level import names).
DOCSTRING_PACKAGES = ("django", "matplotlib", "networkx", "pandas", "sqlalchemy", "sympy", "torch")
#: Where :func:`docstrings` looks for them: this project's virtual environment and the one Label
#: Studio runs in (django lives only there).
SITE_PACKAGES = (
    Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages",
    Path.home() / ".cache" / "labelloop-ls-venv" / "lib" / "python3.11" / "site-packages",
)
#: Cap on items per data set, so a benchmark run stays in minutes.
MAX_ITEMS = 6000
#: Texts are cut to this many words: a labeller reads a paragraph, not a whole manual page.
MAX_WORDS = 150
#: Shorter texts carry too little to label (a one-line NAME without a DESCRIPTION, say).
MIN_WORDS = 5
#: Number of gcloud command groups kept (the largest).
GCLOUD_GROUPS = 16
#: Default directory of the JSONL copies (generated; not committed).
DATA_DIR = Path(__file__).resolve().parent / "data"

Dataset = tuple[list[str], list[str]]


# ----------------------------------------------------------------------------- the data sets


def manpages(root: Path = MAN_ROOT, max_items: int = MAX_ITEMS, seed: int = 0) -> Dataset:
    """Manual pages labelled by section (see the module docstring); gcloud pages are left out.

    Symlinks and ``.so`` stubs are aliases of another page and are skipped, so every page counts
    once.
    """
    items: list[tuple[str, str]] = []
    for section, label in MAN_SECTIONS.items():
        for path in sorted((root / f"man{section}").glob("*.gz")):
            if path.is_symlink() or path.name.startswith("gcloud"):
                continue
            page = _read_gz(path)
            if page.lstrip().startswith(".so "):
                continue
            name, body = _man_parts(page)
            text = _words(f"{name} {body}")
            if text:
                items.append((text, label))
    return _finish(items, max_items, seed)


def gcloud(root: Path = MAN_ROOT, groups: int = GCLOUD_GROUPS, max_items: int = MAX_ITEMS, seed: int = 0) -> Dataset:
    """gcloud reference pages labelled by top-level command group, the ``groups`` largest groups.

    One page per command: the alpha and beta tracks repeat most GA pages almost word for word (a
    near-copy of a training page in the test set would flatter every figure), so a command is
    taken from GA when it exists there, else from beta, else from alpha, and the track markers
    ("(ALPHA)") are removed.
    """
    pages: dict[tuple[str, ...], tuple[int, Path]] = {}
    for path in sorted((root / "man1").glob("gcloud_*.1.gz")):
        command = path.name[: -len(".1.gz")].split("_")[1:]
        track = _TRACKS.get(command[0], 0) if command else 0
        command = command[1:] if track else command
        if command and not path.is_symlink() and (tuple(command) not in pages or track < pages[tuple(command)][0]):
            pages[tuple(command)] = (track, path)
    sizes = Counter(command[0] for command in pages)
    kept = {group for group, _ in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:groups]}
    items = []
    for command, (_, path) in sorted(pages.items()):
        if command[0] not in kept:
            continue
        page = _GCLOUD_SPAN.sub(" ", _read_gz(path))  # "\f5gcloud compute instances create\fR" names the label
        name, body = _man_parts(page)
        text = _words(_GCLOUD_WORDS.sub(" ", _GCLOUD_TRACK.sub(" ", f"{name} {body}")))
        if text:
            items.append((text, command[0]))
    return _finish(items, max_items, seed)


def docstrings(
    packages: Iterable[str] = DOCSTRING_PACKAGES,
    site_packages: Iterable[Path] = SITE_PACKAGES,
    max_items: int = MAX_ITEMS,
    seed: int = 0,
) -> Dataset:
    """The prose of every function / class docstring of ``packages``, labelled by package.

    Test suites, vendored third-party code and compiled-only modules are skipped: tests document
    the test, not the package, and vendored code belongs to another project. Raises
    FileNotFoundError naming a package that is not installed, rather than silently shrinking.
    """
    roots = [Path(p) for p in site_packages]
    items: list[tuple[str, str]] = []
    for package in packages:
        folder = next((r / package for r in roots if (r / package / "__init__.py").is_file()), None)
        if folder is None:
            raise FileNotFoundError(f"package {package!r} is not installed in any of {[str(r) for r in roots]}")
        for path in sorted(folder.rglob("*.py")):
            parts = set(path.relative_to(folder).parts[:-1])
            if parts & _SKIPPED_DIRS or path.name.startswith("test_") or path.name == "conftest.py":
                continue
            items.extend((summary, package) for summary in _docstring_summaries(path))
    return _finish(items, max_items, seed)


DATASETS: dict[str, Callable[[], Dataset]] = {"manpages": manpages, "gcloud": gcloud, "docstrings": docstrings}


def load(name: str, data_dir: Path | None = DATA_DIR) -> Dataset:
    """The data set ``name``: its JSONL copy in ``data_dir`` when there is one, else built afresh."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose from {sorted(DATASETS)}")
    path = None if data_dir is None else Path(data_dir) / f"{name}.jsonl"
    if path is not None and path.is_file():
        return read_jsonl(path)
    return DATASETS[name]()


def write_jsonl(path: Path, texts: list[str], labels: list[str]) -> None:
    """One ``{"text": ..., "label": ...}`` object per line (the ``labelloop simulate --data`` format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for text, label in zip(texts, labels, strict=True):
            fh.write(json.dumps({"text": text, "label": label}, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> Dataset:
    texts, labels = [], []
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                record = json.loads(line)
                texts.append(str(record["text"]))
                labels.append(str(record["label"]))
    return texts, labels


# ----------------------------------------------------------------------------- man pages

# Macros whose arguments are running text (man(7) font macros, mdoc(7) inline macros); every
# other request only formats and is dropped with its arguments.
_TEXT_MACROS = {
    "B", "I", "BR", "RB", "BI", "IB", "IR", "RI", "SM", "SB", "SS", "TP", "IP", "UR", "MT", "OP",
    "Nm", "Nd", "Xr", "Fl", "Ar", "Pa", "Em", "Sy", "Dv", "Er", "Ev", "Fn", "Fa", "Ft", "Fo", "Va", "Li",
    "Ql", "Dq", "Sq", "Pq", "Op", "It", "Cm", "Ic", "Ss", "Tn", "Ux", "At", "Bx", "Nx", "Ox", "Fx",
}
_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
_SPECIAL = {"em": " - ", "en": "-", "aq": "'", "dq": '"', "lq": '"', "rq": '"', "oq": "'", "cq": "'",
            "bu": "*", "mi": "-", "hy": "-", "ti": "~", "ha": "^", "rs": "\\", "co": "(c)", "rg": "(R)"}
_ESCAPES = [
    (re.compile(r"\\\"[^\n]*"), ""),  # inline comment
    (re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\s[-+]?\d+|\\s\([-+]?\d+|\\s\[[^\]]*\]"), ""),  # point size
    (re.compile(r"\\[hvwlLoDbxXNRZ]'[^']*'"), " "),  # motions, boxes, width, ...
    (re.compile(r"\\\*(?:\[[^\]]*\]|\(..|.)"), ""),  # string interpolation (pod2man quotes, ...)
    (re.compile(r"\\n(?:\[[^\]]*\]|\(..|.)"), ""),  # number registers
    (re.compile(r"\\[mMF](?:\[[^\]]*\]|\(..|.)"), ""),  # colours, font families
    (re.compile(r"\\[kz].?"), ""),
    (re.compile(r"\\[&|^%c,/:)!{}0]|\\}"), ""),  # zero-width / spacing hints, conditional braces
    (re.compile(r"\\[ ~t]"), " "),
    (re.compile(r"\\[-e\\]"), "-"),  # \- (minus), \e and \\ (backslash; "-" is as good for words)
    (re.compile(r"\\[.']"), lambda m: m.group(0)[1]),
    (re.compile(r"\\."), " "),  # anything else
]
_SPECIAL_CHAR = re.compile(r"\\(?:\((..)|\[([^\]]*)\])")
_CROSS_REFERENCE = re.compile(r"(\w)\s?\(\d[a-zA-Z]*\)")  # "open(2)", "feature_test_macros (7)", "SSL_new(3ssl)"
_GCLOUD_SPAN = re.compile(r"\\f[5BI]\s*gcloud\b.*?\\f[RP]", re.DOTALL)
_GCLOUD_WORDS = re.compile(r"\bgcloud(?:\s+(?:alpha|beta))?(?:\s+[a-z][a-z0-9-]*)?")
_GCLOUD_TRACK = re.compile(r"\((?:ALPHA|BETA)\)")
_TRACKS = {"beta": 1, "alpha": 2}


def _read_gz(path: Path) -> str:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _man_parts(page: str) -> tuple[str, str]:
    """``(name description, DESCRIPTION text)`` of a man(7) or mdoc(7) page, as plain text.

    The names before the NAME line's dash are dropped (they are the file name), and so is every
    other section: SYNOPSIS, OPTIONS, SEE ALSO, ... -- headings and their order differ between
    sections and would be learned instead of the content.
    """
    sections: dict[str, list[str]] = {}
    current = None
    for line in _logical_lines(page):
        head = re.match(r"^[.']\s*(?:SH|Sh)\s+(.*)$", line)
        if head:
            current = _plain(_unquote(head.group(1))).upper()
            sections.setdefault(current, [])
            continue
        text = _line_text(line) if current is not None else ""
        if text:
            sections[current].append(text)
    name = " ".join(sections.pop("NAME", []))
    name = name.split(" - ", 1)[1] if " - " in name else ""
    # Pages without a DESCRIPTION (jq, cmake-commands(7), ...) start their content in the first section after SYNOPSIS.
    sections.pop("SYNOPSIS", None)
    body = sections.get("DESCRIPTION") or next((lines for lines in sections.values() if lines), [])
    return name, " ".join(body)


def _logical_lines(page: str) -> Iterator[str]:
    """Lines with ``\\``-newline continuations joined and ``.de`` macro definitions skipped."""
    in_definition = False
    for line in page.replace("\\\n", "").splitlines():
        if in_definition:
            in_definition = not re.match(r"^[.']\s*\.\s*$", line)  # ".." ends it (also ". ." in asciidoctor output)
            continue
        if re.match(r"^[.']\s*(de|am|ig)\b", line):
            in_definition = True
            continue
        yield line


def _line_text(line: str) -> str:
    """The running text of one troff line: a text line, or a text macro's arguments."""
    if line.startswith((".", "'")):
        match = re.match(r"^[.']\s*(\S+)\s*(.*)$", line)
        if not match or match.group(1) not in _TEXT_MACROS:
            return ""
        macro, args = match.groups()
        if macro == "Xr":  # ".Xr open 2": a cross-reference; the section number goes
            args = args.split()[0] if args.split() else ""
        if macro in ("TP", "IP") and args:
            args = _unquote(args.split('"')[1] if args.startswith('"') else args.split()[0])
            args = "" if re.fullmatch(r"[\d.]+[a-z]?|\\\(bu|\*", args) else args  # bullets and indents
        # The alternating-font macros (.BR open (2)) run their arguments together; the others space them.
        joiner = "" if macro in _ALTERNATING else " "
        line = joiner.join(_unquote(a) for a in re.findall(r'"[^"]*"|\S+', args))
    return _plain(line)


def _plain(text: str) -> str:
    text = _SPECIAL_CHAR.sub(lambda m: _SPECIAL.get(m.group(1) or m.group(2), " "), text)
    for pattern, replacement in _ESCAPES:
        text = pattern.sub(replacement, text)
    return _CROSS_REFERENCE.sub(r"\1", text).strip()


def _unquote(text: str) -> str:
    return text.strip().strip('"')


# ----------------------------------------------------------------------------- docstrings

_SKIPPED_DIRS = {"tests", "test", "testing", "_vendor", "vendored", "externals", "_vendored", "third_party",
                 "benchmarks", "conftest"}


def _docstring_summaries(path: Path) -> Iterator[str]:
    """The prose of each function / class docstring in ``path`` (the file is parsed, never imported)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in old docstrings
            tree = ast.parse(path.read_text(encoding="utf-8", errors="replace"))
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node, clean=True)
            text = _words(_docstring_prose(doc)) if doc else ""
            if text:
                yield text


def _docstring_prose(doc: str) -> str:
    """The paragraphs before the first structured section, with reST markup removed.

    Sections ("Parameters" + underline in numpydoc, "Args:" in Google style, ``:param x:`` in
    Sphinx style, ``>>>`` examples, ``..`` directives) are where each project's house style
    shows; so do reST roles (``:class:`_orm.Query``` -> ``Query``) and literals. Left in, they would let a
    model tell sqlalchemy from pandas by punctuation.
    """
    paragraphs = []
    for paragraph in doc.strip().split("\n\n"):
        if any(_DOC_SECTION.match(line.strip()) for line in paragraph.splitlines()[:2]):
            break
        paragraphs.append(paragraph)
    # A role's target loses its module path too: sqlalchemy's ":class:`_orm.Query`" -> "Query".
    text = _REST_ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], " ".join(paragraphs))
    return _REST_LITERAL.sub(r"\1", text)


_DOC_SECTION = re.compile(r"^(?:[A-Z][A-Za-z ]*:\s*$|[-=~^]{3,}\s*$|:\w+|\.\. |>>>)")
_REST_ROLE = re.compile(r":[\w:.-]+:`~?\.?([^`<]*?)(?:\s*<[^>]*>)?`")
_REST_LITERAL = re.compile(r"`+([^`]*)`+_?")


# ----------------------------------------------------------------------------- shared


def _words(text: str) -> str:
    """Whitespace collapsed, cut to :data:`MAX_WORDS`; "" when under :data:`MIN_WORDS` words."""
    words = text.split()
    return " ".join(words[:MAX_WORDS]) if len(words) >= MIN_WORDS else ""


def _finish(items: list[tuple[str, str]], max_items: int, seed: int) -> Dataset:
    """Drop duplicate texts (all copies when labels disagree), then cap at ``max_items``.

    The cap is per class -- the largest classes are trimmed to the same size first, so that one
    big class cannot crowd the others out -- and the kept rows are a seeded random sample,
    returned in their original (sorted-file) order.
    """
    labels_of: dict[str, set[str]] = {}
    for text, label in items:
        labels_of.setdefault(text, set()).add(label)
    seen: set[str] = set()
    unique = []
    for text, label in items:
        if len(labels_of[text]) == 1 and text not in seen:
            seen.add(text)
            unique.append((text, label))
    by_class: dict[str, list[int]] = {}
    for i, (_, label) in enumerate(unique):
        by_class.setdefault(label, []).append(i)
    cap = _class_cap(sorted(len(rows) for rows in by_class.values()), max_items)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for label in sorted(by_class):
        rows = by_class[label]
        keep.extend(rows if len(rows) <= cap else rng.choice(rows, size=cap, replace=False).tolist())
    keep.sort()
    return [unique[i][0] for i in keep], [unique[i][1] for i in keep]


def _class_cap(sizes: list[int], total: int) -> int:
    """The largest per-class cap under which the capped class sizes sum to at most ``total``."""
    if sum(sizes) <= total:
        return max(sizes, default=0)
    remaining, left = total, len(sizes)
    for size in sizes:  # ascending: small classes are kept whole while the cap allows
        if size * left > remaining:
            return remaining // left
        remaining -= size
        left -= 1
    return max(sizes, default=0)


# ----------------------------------------------------------------------------- CLI


def baseline(texts: list[str], labels: list[str], seed: int = 0, small: int = 300, draws: int = 3) -> dict[str, float]:
    """Held-out accuracy of the project's text model (tf-idf + logistic regression) at two sizes.

    A stratified 20 % test split; the model trained on ``small`` random rows of the rest (mean of
    ``draws`` draws) and on all of the rest. Tells whether a set is trivial or hopeless.
    """
    from sklearn.model_selection import train_test_split

    from model.estimators import make_estimator

    classes = sorted(set(labels))
    rows = np.arange(len(texts))
    train, test = train_test_split(rows, test_size=0.2, stratify=labels, random_state=seed)
    truth = np.asarray(labels)[test]

    def accuracy(fit_rows: np.ndarray, random_state: int) -> float:
        model = make_estimator("margin", "text", classes, False, random_state=random_state)
        model.fit([texts[i] for i in fit_rows], [labels[i] for i in fit_rows])
        return float(np.mean(model.predict([texts[i] for i in test]) == truth))

    rng = np.random.default_rng(seed)
    at_small = [accuracy(rng.choice(train, size=min(small, len(train)), replace=False), d) for d in range(draws)]
    return {f"accuracy_at_{small}": float(np.mean(at_small)), "accuracy_all": accuracy(train, seed),
            "n_train_all": len(train), "n_test": len(test)}


def describe(name: str, texts: list[str], labels: list[str]) -> str:
    counts = Counter(labels)
    classes = ", ".join(f"{label} {count}" for label, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    mean_chars = np.mean([len(t) for t in texts]) if texts else 0.0
    mean_words = np.mean([len(t.split()) for t in texts]) if texts else 0.0
    return (f"{name}: n={len(texts)}, {len(counts)} classes ({classes}); "
            f"mean length {mean_chars:.0f} chars / {mean_words:.0f} words")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", type=Path, metavar="DIR", help="write NAME.jsonl per data set into DIR")
    parser.add_argument("--only", default=",".join(DATASETS), help="comma-separated data sets (default: all)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the accuracy check")
    args = parser.parse_args(argv)
    for name in args.only.split(","):
        t0 = time.perf_counter()
        texts, labels = DATASETS[name]()
        built = time.perf_counter() - t0
        print(describe(name, texts, labels) + f"; built in {built:.1f} s")
        if args.write:
            path = args.write / f"{name}.jsonl"
            write_jsonl(path, texts, labels)
            print(f"  wrote {path}")
        if not args.no_baseline:
            scores = baseline(texts, labels)
            print(f"  tf-idf + logistic regression, held-out accuracy: {scores['accuracy_at_300']:.3f} trained on "
                  f"300 random rows (mean of 3 draws), {scores['accuracy_all']:.3f} on all {scores['n_train_all']} "
                  f"(test: {scores['n_test']} rows, a stratified 20 %)")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

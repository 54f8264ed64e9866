"""Does active learning pay off for span labelling? `labelloop simulate-spans`' replay on real span data sets.

Runs the replay of ``labelloop simulate-spans`` (:func:`backend.cli.simulate_spans.run_plan`,
:mod:`model.spans.simulation`: the server's own CRF tagger, span heuristics and queue) on the span
sets of :mod:`benchmarks.span_datasets`, whose gold spans are the markup the authors of real
documentation wrote (troff fonts, Sphinx roles, CMake's reST roles, POD codes; exact offsets). Each
set is cut to ``--documents`` (a fixed draw, seed 0), of which ``--test-size`` are the test split of
every seed, the rest the pool. Per set it prints and writes (``--out``: JSON, Markdown tables; and
``--plot-dir``: ``spans_curve_<set>.png``):

* exact-span F1 and token F1 at document budgets and at token budgets, mean ± std over seeds;
* per seed, the area under the arm's curve minus random's on the same split and start, on the
  document axis and on the token axis, mean ± std, and wins / ties / losses (``--tie``);
* documents (and the tokens they held) for the mean curve to reach 90 % of the full-pool F1;
* fit and predict milliseconds per document.

Each set's raw curves go to ``--out``/<set>.curves.json; ``--rebuild`` turns them into the tables and
plots again without replaying.

    .venv/bin/python benchmarks/simulate_spans.py --sets man_spans,docstring_spans --seeds 10 --jobs 2 \\
        --plot-dir docs/assets

Estimate first with ``--seeds 1``: the run takes about ten times as long with 10 seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from span_datasets import DATASETS, load  # noqa: E402

from backend.cli.simulate_spans import (  # noqa: E402
    DEFAULT_STRATEGIES,
    SpanData,
    build_report,
    caption,
    headline,
    make_plan,
    render_markdown,
    render_rich,
    run_plan,
    write_plot,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", default="man_spans,docstring_spans", help="comma-separated span data sets")
    parser.add_argument("--documents", type=int, default=1500, help="documents drawn per set (pool + test)")
    parser.add_argument("--test-size", type=int, default=300, help="test documents (the rest is the pool)")
    parser.add_argument("--strategies", default=DEFAULT_STRATEGIES, help="active arms; random is always added")
    parser.add_argument("--queue", default="cluster",
                        help="queue of the active arms (default %(default)s: the server's default)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--report-at", default="20,40,60,100,140,200", help="document budgets of the tables")
    parser.add_argument("--tie", type=float, default=0.005, help="W/T/L tie below this area difference (F1)")
    parser.add_argument("--full-pool-share", type=float, default=0.9,
                        help="documents and tokens to reach this share of the full-pool F1 (default %(default)s)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes over curves")
    parser.add_argument("--out", type=Path, default=Path("/tmp/labelloop-spans"), help="JSON and Markdown here")
    parser.add_argument("--plot-dir", type=Path, help="write spans_curve_<set>.png here (e.g. docs/assets)")
    parser.add_argument("--rebuild", action="store_true",
                        help="rebuild the tables and plots from the curves a finished run left in --out")
    return parser.parse_args(argv)


def draw(name: str, n: int) -> SpanData:
    """``n`` documents of the set ``name`` (a fixed draw, kept in the set's order)."""
    dataset = load(name)
    documents = dataset.documents
    if n < len(documents):
        keep = np.sort(np.random.default_rng(0).choice(len(documents), size=n, replace=False))
        documents = [documents[i] for i in keep]
    return SpanData(name, [d["text"] for d in documents], [d["spans"] for d in documents], list(dataset.labels))


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = parse_args(argv)
    console = Console(width=170)
    args.out.mkdir(parents=True, exist_ok=True)
    report_at = [int(v) for v in args.report_at.split(",") if v.strip()]
    started = time.perf_counter()
    for name in args.sets.split(","):
        if name not in DATASETS:
            raise SystemExit(f"unknown span data set {name!r}; choose from {', '.join(DATASETS)}")
        t0 = time.perf_counter()
        data = draw(name, args.documents)
        plan = make_plan(data, args.strategies.split(","), args.seeds, args.initial, args.batch_size, args.budget,
                         args.test_size, args.queue)
        raw_path = args.out / f"{name}.curves.json"
        if args.rebuild:  # the tables again from a finished run's curves, without replaying
            raw = json.loads(raw_path.read_text(encoding="utf-8"))
            curves, full_pool, seconds = raw["curves"], raw["full_pool"], raw["seconds"]
        else:
            curves, full_pool = run_plan(plan, jobs=args.jobs,
                                         log=lambda line: print(line, file=sys.stderr, flush=True))
            seconds = round(time.perf_counter() - t0, 1)
            raw_path.write_text(json.dumps({"curves": curves, "full_pool": full_pool, "seconds": seconds}) + "\n",
                                encoding="utf-8")
        report = build_report(plan, curves, full_pool, report_at, share=args.full_pool_share, tie=args.tie,
                              extra={"seconds": seconds, "jobs": args.jobs, "source": f"benchmarks/data/{name}.jsonl",
                                     "command": " ".join(sys.argv)})
        console.print(headline(report))
        for table in render_rich(report):
            console.print(table)
        console.print(caption(report))
        console.print(f"{name}: {seconds:.0f} s with {args.jobs} processes")
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        (args.out / f"{name}.md").write_text(f"{headline(report)}\n\n{render_markdown(report)}", encoding="utf-8")
        if args.plot_dir:
            write_plot(report, args.plot_dir / f"spans_curve_{name}.png")
        sys.stdout.flush()
    print(f"total {time.perf_counter() - started:.0f} s; figures in {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""A self-contained HTML report of a project's active-learning history: plots first, tables after.

One file (`index.html`) with every plot embedded as a base64 PNG, inline CSS, no JS and no external
URLs, so it can be mailed, attached to a CI run or opened offline. The PNGs are also written next to
it for reuse in slides and tickets.

Plots are drawn on `matplotlib.figure.Figure` + `FigureCanvasAgg` directly, never through pyplot:
pyplot keeps a global registry of open figures and a global backend, which is not safe from a server
thread; bare Figures are private to the call and freed with it.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter

from backend.service.serializers import iteration_json

__all__ = ["PLOT_FILES", "report_from_store", "write_report"]

# Plot name -> PNG file name, in page order.
PLOT_FILES = {
    "metric_vs_labels": "metric_vs_labels.png",
    "per_class": "per_class.png",
    "difficulty": "difficulty.png",
    "autolabel_curve": "autolabel_curve.png",
    "stopping": "stopping.png",
}
#: Where a comparison's validation items came from (metrics["control"]["yardstick"]), in words.
YARDSTICKS = {"random_stream": "random validation stream", "ground_truth": "ground-truth tasks"}
#: The control-stream section's figure (not in PLOT_FILES: it exists only for projects with a control stream).
CONTROL_FILE = "active_vs_random.png"
# Columns added after the first schema: read from the row, else from `metrics` (older producers).
TRUST_FIELDS = ("ece", "calibration", "kappa", "mean_uncertainty", "stop_suggested")
DEFAULT_STOP_KAPPA = 0.99
DPI = 110
COLOURS = {"accuracy": "#1f77b4", "macro_f1": "#ff7f0e", "ece": "#7f7f7f", "kappa": "#2ca02c",
           "uncertainty": "#9467bd", "easy": "#59a14f", "medium": "#edc948", "hard": "#e15759", "stop": "#d62728",
           "active": "#1f77b4", "random": "#ff7f0e"}


# --------------------------------------------------------------------------- input helpers
def _num(value: Any) -> float | None:
    """A finite float or None: old rows and JSON round trips give None, strings or NaN."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _metrics(it: dict[str, Any]) -> dict[str, Any]:
    metrics = it.get("metrics")
    return metrics if isinstance(metrics, dict) else {}


def _sub(mapping: Any, key: str) -> dict[str, Any]:
    value = mapping.get(key) if isinstance(mapping, dict) else None
    return value if isinstance(value, dict) else {}


def _field(it: dict[str, Any], key: str) -> Any:
    """Top-level value, else the copy inside `metrics` (or `metrics.stopping`) that older rows carry."""
    value = it.get(key)
    if value is None:
        value = _metrics(it).get(key)
    if value is None:
        value = _sub(_metrics(it), "stopping").get(key)
    if key == "calibration" and isinstance(value, dict):  # {"method": ..., "ece": ...}
        value = value.get("method")
    return value


def _succeeded(iterations: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [it for it in iterations if it.get("status") == "succeeded"]


def _number(it: dict[str, Any]) -> int | None:
    n = _num(it.get("number"))
    return int(n) if n is not None else None


def _mpl(text: Any, limit: int = 40) -> str:
    """Text for a matplotlib label: `$` would start mathtext (and can raise), long names crowd legends."""
    text = str(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("$", r"\$")


def _stop_since(succeeded: Sequence[dict[str, Any]]) -> int | None:
    """First iteration of the trailing run of stop_suggested rounds, or None if the latest says go on."""
    since = None
    for it in reversed(succeeded):
        if _field(it, "stop_suggested") is not True:
            break
        since = _number(it)
    return since


# --------------------------------------------------------------------------- plotting
def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Any) -> None:
    ax.grid(True, alpha=0.3)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    fig.clear()  # drop artists now rather than at garbage collection
    return buf.getvalue()


def _plot_metric_vs_labels(succeeded: list[dict[str, Any]], _autolabel: dict | None) -> bytes | str:
    rows = [(_num(it.get("labels_used")), _num(it.get("accuracy")), _num(it.get("macro_f1")),
             _num(_field(it, "ece"))) for it in succeeded]
    rows = sorted((r for r in rows if r[0] is not None and (r[1] is not None or r[2] is not None)),
                  key=lambda r: r[0])
    if not rows:
        return "no succeeded iteration has validation accuracy or macro-F1 yet (needs a validation split)"
    with_ece = any(r[3] is not None for r in rows)
    fig = _figure(8, 6 if with_ece else 4.5)
    axes = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1]) if with_ece else [fig.subplots()]
    ax = axes[0]
    band = sorted((x, lo, hi) for x, lo, hi in ((_num(it.get("labels_used")), *(it.get("accuracy_interval") or
                  (None, None))) for it in succeeded) if x is not None and lo is not None and hi is not None)
    if band:  # a handful of validation tasks early on: the interval says how little the point means
        xs, lows, highs = zip(*band, strict=True)
        ax.fill_between(xs, lows, highs, color=COLOURS["accuracy"], alpha=0.15, label="accuracy, 95 % interval")
    for idx, key, label in ((1, "accuracy", "accuracy"), (2, "macro_f1", "macro-F1")):
        pts = [(r[0], r[idx]) for r in rows if r[idx] is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", color=COLOURS[key], label=label)
    ax.set_ylabel("score on validation split")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Model quality as labels accumulate")
    ax.legend(loc="lower right")
    _style(ax)
    if with_ece:
        pts = [(r[0], r[3]) for r in rows if r[3] is not None]
        axes[1].plot(*zip(*pts, strict=True), marker="s", color=COLOURS["ece"], label="ECE")
        axes[1].set_ylabel("ECE (lower is better)")
        axes[1].set_ylim(bottom=0)
        axes[1].legend(loc="upper right")
        _style(axes[1])
    axes[-1].set_xlabel("labels used (train + validation)")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(fig)


def _plot_per_class(succeeded: list[dict[str, Any]], _autolabel: dict | None) -> bytes | str:
    series: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for it in succeeded:
        n = _number(it)
        per_class = _sub(_metrics(it), "per_class")
        if n is None:
            continue
        for name, values in per_class.items():
            if not isinstance(values, dict):
                continue
            entry = series.setdefault(str(name), {"precision": [], "recall": []})
            for key in ("precision", "recall"):
                v = _num(values.get(key))
                if v is not None:
                    entry[key].append((n, v))
    series = {k: v for k, v in series.items() if v["precision"] or v["recall"]}
    if not series:
        return "no succeeded iteration recorded per-class precision/recall yet (needs a validation split)"
    fig = _figure(9, 6.5)
    axes = fig.subplots(2, 1, sharex=True)
    palette = _palette(len(series))
    handles = []
    for colour, (name, data) in zip(palette, sorted(series.items()), strict=False):
        for ax, key in zip(axes, ("precision", "recall"), strict=True):
            if data[key]:
                ax.plot(*zip(*sorted(data[key]), strict=True), marker="o", color=colour)
        handles.append(Line2D([], [], color=colour, marker="o", label=_mpl(name)))
    for ax, key in zip(axes, ("precision", "recall"), strict=True):
        ax.set_ylabel(key)
        ax.set_ylim(-0.02, 1.02)
        _style(ax)
    axes[0].set_title("Per-class precision and recall on the validation split")
    axes[1].set_xlabel("iteration")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    # Explicit labels: legend() auto-detection would hide class names starting with "_".
    fig.legend(handles, [h.get_label() for h in handles], loc="outside right upper", title="class",
               ncols=1 if len(handles) <= 20 else 2, fontsize="small")
    return _png(fig)


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    name = "tab10" if n <= 10 else "tab20"
    cmap = colormaps[name]
    return [cmap(i % cmap.N) for i in range(n)]


def _plot_difficulty(succeeded: list[dict[str, Any]], _autolabel: dict | None) -> bytes | str:
    rows = []
    for it in succeeded:
        counts = _sub(_sub(_metrics(it), "difficulty"), "counts")
        values = [_num(counts.get(k)) for k in ("easy", "medium", "hard")]
        n = _number(it)
        if n is not None and any(v is not None for v in values):
            rows.append((n, [v or 0.0 for v in values]))
    if not rows:
        return "no succeeded iteration recorded difficulty counts of the unlabelled pool yet"
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    xs = [r[0] for r in rows]
    bottom = [0.0] * len(rows)
    for i, key in enumerate(("easy", "medium", "hard")):
        heights = [r[1][i] for r in rows]
        ax.bar(xs, heights, bottom=bottom, color=COLOURS[key], label=key, width=0.7)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_xlabel("iteration")
    ax.set_ylabel("unlabelled tasks")
    ax.set_title("How hard the remaining pool looks to the model")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # Legend outside the axes: the tallest bars are usually the latest, top right.
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], loc="outside right upper", title="difficulty")
    _style(ax)
    return _png(fig)


def _latest_curve(succeeded: list[dict[str, Any]]) -> tuple[dict[str, Any], list[tuple[float, float, float]]] | None:
    for it in reversed(succeeded):
        curve = _sub(_metrics(it), "autolabel_curve")
        cols = [curve.get(k) for k in ("threshold", "precision", "coverage")]
        if not all(isinstance(c, list) for c in cols):
            continue
        points = [(t, p, c) for t, p, c in (tuple(map(_num, row)) for row in zip(*cols, strict=False))
                  if p is not None and c is not None]
        if points:
            return it, points  # type: ignore[return-value]
    return None


def _plot_autolabel_curve(succeeded: list[dict[str, Any]], autolabel: dict | None) -> bytes | str:
    found = _latest_curve(succeeded)
    if found is None:
        return "no succeeded iteration recorded an auto-label precision/coverage curve yet"
    it, points = found
    points.sort(key=lambda p: p[2])
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    ax.plot([p[2] for p in points], [p[1] for p in points], color=COLOURS["accuracy"], marker=".",
            label=f"{_mpl(it.get('version') or 'latest')} (validation split)")
    if all(p[2] <= 1.0 for p in points):
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("coverage (share of validation tasks above the confidence threshold)")
    else:
        ax.set_xlabel("coverage (validation tasks above the confidence threshold)")
    ax.set_ylabel("precision of the auto-labels")
    ax.set_title("Auto-labelling: precision against coverage")
    if autolabel:
        target = _num(autolabel.get("target_precision"))
        if target is not None:
            ax.axhline(target, color=COLOURS["stop"], linestyle="--", label=f"target precision {target:.3g}")
        threshold = _num(autolabel.get("threshold"))
        cov, prec = _num(autolabel.get("coverage")), _num(autolabel.get("validation_precision"))
        if threshold is not None and (cov is None or prec is None):
            with_t = [p for p in points if p[0] is not None]
            if with_t:
                nearest = min(with_t, key=lambda p: abs(p[0] - threshold))  # type: ignore[operator]
                cov, prec = nearest[2], nearest[1]
        if threshold is not None and cov is not None and prec is not None:
            ax.plot([cov], [prec], marker="*", markersize=16, color=COLOURS["stop"], linestyle="none",
                    label=f"chosen threshold {threshold:.3g}")
    ax.set_ylim(min(0.0, min(p[1] for p in points)) - 0.02, 1.02)
    ax.legend(loc="lower left")
    _style(ax)
    return _png(fig)


def _stop_threshold(succeeded: list[dict[str, Any]]) -> float:
    for it in reversed(succeeded):
        value = _num(_sub(_metrics(it), "stopping").get("threshold"))
        if value is not None:
            return value
    return DEFAULT_STOP_KAPPA


def _plot_stopping(succeeded: list[dict[str, Any]], _autolabel: dict | None) -> bytes | str:
    rows = [(_number(it), _num(_field(it, "kappa")), _num(_field(it, "mean_uncertainty")),
             _field(it, "stop_suggested") is True) for it in succeeded]
    rows = [r for r in rows if r[0] is not None]
    kappa = [(r[0], r[1]) for r in rows if r[1] is not None]
    if not kappa:
        return ("no iteration recorded a stabilising-predictions kappa yet "
                "(it compares two consecutive succeeded rounds on a stopping sample)")
    threshold = _stop_threshold(succeeded)
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    ax.plot(*zip(*kappa, strict=True), marker="o", color=COLOURS["kappa"], label="kappa vs previous round")
    ax.axhline(threshold, color=COLOURS["kappa"], linestyle="--", alpha=0.7, label=f"stop threshold {threshold:.3g}")
    handles, labels = ax.get_legend_handles_labels()
    stops = [(r[0], r[1] if r[1] is not None else threshold) for r in rows if r[3]]
    if stops:
        ax.plot(*zip(*stops, strict=True), marker="*", markersize=15, color=COLOURS["stop"], linestyle="none")
        handles.append(Line2D([], [], marker="*", markersize=12, color=COLOURS["stop"], linestyle="none"))
        labels.append("stop suggested")
    low = min(min(v for _, v in kappa), threshold)
    ax.set_ylim(max(-1.0, low - 0.05 * max(1e-3, 1 - low)) - 0.01, 1.01)
    ax.set_xlabel("iteration")
    ax.set_ylabel("Cohen's kappa (agreement with previous model)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _style(ax)
    unc = [(r[0], r[2]) for r in rows if r[2] is not None]
    if unc:
        ax2 = ax.twinx()
        ax2.plot(*zip(*unc, strict=True), marker="s", linestyle=":", color=COLOURS["uncertainty"])
        ax2.set_ylabel("mean uncertainty of the pool", color=COLOURS["uncertainty"])
        ax2.set_ylim(bottom=0)
        ax2.spines["top"].set_visible(False)
        handles.append(Line2D([], [], marker="s", linestyle=":", color=COLOURS["uncertainty"]))
        labels.append("mean uncertainty (right axis)")
    ax.set_title("Stopping signal: are predictions still changing?")
    # A figure legend below the plot: an axes legend would sit under the twin axis' line.
    fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(handles)), fontsize="small")
    return _png(fig)


PLOTTERS: dict[str, tuple[str, Callable[[list[dict[str, Any]], dict | None], bytes | str], str]] = {
    "metric_vs_labels": ("Quality vs labels", _plot_metric_vs_labels,
                         "Rising lines mean new labels still pay off; a plateau means diminishing returns."),
    "per_class": ("Per-class precision and recall", _plot_per_class,
                  "A class stuck low while others climb needs more (or clearer) examples."),
    "difficulty": ("Pool difficulty", _plot_difficulty,
                   "Hard tasks shrinking over rounds means the model is learning the pool; "
                   "buckets come from the uncertainty thresholds of each round."),
    "autolabel_curve": ("Auto-label precision vs coverage", _plot_autolabel_curve,
                        "Each point is a confidence threshold: moving right labels more tasks automatically, "
                        "usually at lower precision."),
    "stopping": ("Stopping signal", _plot_stopping,
                 "Kappa near 1 for several rounds means retraining no longer changes predictions: "
                 "more labels are unlikely to help."),
}


def _control_rows(succeeded: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(iteration, metrics["control"]) of the rounds that made the comparison (not the skipped ones)."""
    keys = ("n", "accuracy_active_at_n", "accuracy_random_at_n", "gap", "gap_low", "gap_high",
            "random_labels_needed", "needed_low", "needed_high")
    rows = []
    for it in succeeded:
        control, n = _sub(_metrics(it), "control"), _number(it)
        if n is not None and all(_num(control.get(k)) is not None for k in keys):
            rows.append((n, control))
    return rows


def _series(rows: list[tuple[int, dict[str, Any]]], key: str, scale: float = 1.0) -> list[float]:
    return [scale * float(control[key]) for _, control in rows]


def _plot_control(rows: list[tuple[int, dict[str, Any]]]) -> bytes:
    """Three panels per round: accuracy at equal label counts, the gap with its 95 % interval, and the random
    labels needed to match the active accuracy against the labels each side had (the diagonal = no gain)."""
    fig = _figure(12, 4.2)
    acc_ax, gap_ax, eff_ax = fig.subplots(1, 3)
    xs = [n for n, _ in rows]
    acc_ax.plot(xs, _series(rows, "accuracy_active_at_n"), marker="o", color=COLOURS["active"], label="active picks")
    acc_ax.plot(xs, _series(rows, "accuracy_random_at_n"), marker="s", color=COLOURS["random"],
                label="random picks (control stream)")
    acc_ax.set_title("Accuracy at equal label counts")
    acc_ax.set_ylabel("validation accuracy")
    acc_ax.legend(loc="lower right", fontsize="small")
    gap, low, high = (_series(rows, k, 100.0) for k in ("gap", "gap_low", "gap_high"))
    gap_ax.errorbar(xs, gap, yerr=[[g - lo for g, lo in zip(gap, low, strict=True)],
                                   [hi - g for g, hi in zip(gap, high, strict=True)]],
                    marker="o", capsize=4, color=COLOURS["active"])
    gap_ax.axhline(0, color="#555", linewidth=1)
    gap_ax.set_title("Active minus random (95 % interval)")
    gap_ax.set_ylabel("accuracy points")
    n_each, needed = _series(rows, "n"), _series(rows, "random_labels_needed")
    below = [max(0.0, v - lo) for v, lo in zip(needed, _series(rows, "needed_low"), strict=True)]
    above = [max(0.0, hi - v) for v, hi in zip(needed, _series(rows, "needed_high"), strict=True)]
    eff_ax.errorbar(n_each, needed, yerr=[below, above], linestyle="none", marker="o", capsize=4,
                    color=COLOURS["random"], label="random labels needed")
    bounded = [(x, y) for x, y, (_, c) in zip(n_each, needed, rows, strict=True) if c.get("lower_bound")]
    if bounded:
        eff_ax.plot(*zip(*bounded, strict=True), marker="^", markersize=11, linestyle="none", color=COLOURS["stop"],
                    label="more than every control label (lower bound)")
    top = max([*n_each, *(v + a for v, a in zip(needed, above, strict=True))])
    eff_ax.plot([0, top], [0, top], linestyle="--", color="#555", linewidth=1, label="no gain (random = active)")
    eff_ax.set_title("Labelling efficiency")
    eff_ax.set_xlabel("labels each side had")
    eff_ax.set_ylabel("random labels for the active accuracy")
    eff_ax.legend(loc="upper left", fontsize="small")
    for ax in (acc_ax, gap_ax):
        ax.set_xlabel("iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (acc_ax, gap_ax, eff_ax):
        _style(ax)
    return _png(fig)


def _control_section(succeeded: list[dict[str, Any]], out: Path) -> str:
    """The "Active vs random on your data" section: the figure and the latest verdict, or why there is none."""
    from backend.service.control import control_summary

    head = '<section id="active_vs_random"><h2>Active vs random on your data</h2>'
    path = out / CONTROL_FILE
    rows = _control_rows(succeeded)
    tried = [(it, _sub(_metrics(it), "control")) for it in succeeded if _sub(_metrics(it), "control")]
    if not rows:
        path.unlink(missing_ok=True)
        if not tried:
            return (f'{head}<p class="meta">The control stream is off for this project: set control_fraction '
                    "(e.g. 0.1) in the model connection's extra params or LABELLOOP_CONTROL_FRACTION to compare "
                    "active picks with random ones on your own labels.</p></section>")
        it, latest = tried[-1]
        return f'{head}<p class="meta">{_e(it.get("version"))}: {_e(control_summary(latest))}.</p></section>'
    png = _plot_control(rows)
    _atomic_write(path, png)
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    number, latest = rows[-1]
    source = YARDSTICKS.get(str(latest.get("yardstick")), "validation split")
    verdict = control_summary(latest).split(": ", 1)[-1]
    caption = ("Each round fits a shadow model on the control stream's random labels and one on as many of the "
               "strategy's picks (same estimator as the served model), both judged on the validation split. A gap "
               "above 0, and random labels needed above the diagonal, mean active learning paid off on your data; "
               "bars are 95 % paired-bootstrap intervals over the validation items.")
    return (f"{head}<p>Iteration {number}, judged on {_int(latest.get('n_validation'))} items of the "
            f"{_e(source)}: active minus random {_e(verdict)}.</p>"
            f'<figure id="control"><img src="{uri}" alt="Active vs random on your data">'
            f"<figcaption>{_e(caption)}</figcaption></figure></section>")


# --------------------------------------------------------------------------- HTML
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#222}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{margin:0 0 4px;font-size:1.6em} h2{margin-top:32px;border-bottom:2px solid #dde;padding-bottom:4px}
.meta{color:#666;font-size:.9em}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0}
.card{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 3px rgba(0,0,0,.08);min-width:120px}
.card .v{font-size:1.5em;font-weight:600} .card .k{color:#666;font-size:.8em;text-transform:uppercase}
.stop{background:#fff3cd} .go{background:#e8f5e9}
figure{background:#fff;border-radius:8px;padding:12px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:#555;font-size:.9em;margin-top:6px}
.nodata{color:#777;font-style:italic}
.scroll{overflow-x:auto}
table{border-collapse:collapse;background:#fff;font-size:.85em;margin:8px 0}
th,td{border:1px solid #dde;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#eef0f4} td.t{text-align:left} td.err{text-align:left;white-space:normal;max-width:360px;color:#a00}
tr.failed td{background:#fdecea} tr.queued td,tr.running td{background:#f3f3f3;color:#666}
.diag{font-weight:700}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    n = _num(value)
    return "–" if n is None else f"{n:.{digits}f}"


def _int(value: Any) -> str:
    n = _num(value)
    return "–" if n is None else str(int(n))


def _card(key: str, value: str, cls: str = "") -> str:
    classes = _e(f"card {cls}".strip())
    return f'<div class="{classes}"><div class="k">{_e(key)}</div><div class="v">{_e(value)}</div></div>'


def _header(iterations: list[dict[str, Any]], succeeded: list[dict[str, Any]], project_id: int, title: str) -> str:
    latest = succeeded[-1] if succeeded else {}
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    since = _stop_since(succeeded)
    failed = sum(1 for it in iterations if it.get("status") == "failed")
    if since is not None:
        stop = _card("stopping", f"suggested since iteration {since}", "stop")
    elif succeeded:
        stop = _card("stopping", "keep labelling", "go")
    else:
        stop = _card("stopping", "no model yet")
    cards = [
        _card("latest model", latest.get("version") or "none yet"),
        _card("labels used", _int(latest.get("labels_used"))),
        _card("accuracy", _with_interval(latest)),
        _card("macro-F1", _fmt(latest.get("macro_f1"))),
        _card("ECE", _fmt(_field(latest, "ece"))),
        _card("kappa", _fmt(_field(latest, "kappa"))),
        _card("iterations", f"{len(succeeded)} ok / {failed} failed"),
        stop,
    ]
    return (f"<header><h1>{_e(title)}</h1>"
            f'<div class="meta">project {_e(project_id)} · generated {_e(generated)}</div>'
            f'<div class="cards">{"".join(cards)}</div></header>')


def _with_interval(it: dict[str, Any]) -> str:
    """The headline figure with its 95 % interval and validation size: "0.750 [0.30, 0.95], n=4"."""
    value, interval = it.get("accuracy"), it.get("accuracy_interval")
    if value is None:
        return "–"
    text = _fmt(value)
    if interval:
        text += f" [{float(interval[0]):.2f}, {float(interval[1]):.2f}]"
    n = it.get("n_validation")
    return f"{text}, n={n}" if n is not None else text


def _iteration_table(iterations: list[dict[str, Any]]) -> str:
    head = ("#", "version", "status", "trigger", "labels", "validation", "accuracy [95 % interval]", "macro-F1",
            "ECE", "calibration", "kappa", "easy/med/hard", "stop", "error")
    rows = []
    for it in iterations:
        counts = _sub(_sub(_metrics(it), "difficulty"), "counts")
        difficulty = "/".join(_int(counts.get(k)) for k in ("easy", "medium", "hard")) if counts else "–"
        stop = _field(it, "stop_suggested")
        error = str(it.get("error") or "")
        short = error if len(error) <= 300 else error[:299] + "…"
        status = str(it.get("status") or "")
        rows.append(
            f'<tr class="{_e(status)}"><td>{_int(it.get("number"))}</td><td class="t">{_e(it.get("version"))}</td>'
            f'<td class="t">{_e(status)}</td><td class="t">{_e(it.get("trigger"))}</td>'
            f"<td>{_int(it.get('labels_used'))}</td><td>{_int(it.get('n_validation'))}</td>"
            f"<td>{_e(_with_interval(it))}</td>"
            f"<td>{_fmt(it.get('macro_f1'))}</td><td>{_fmt(_field(it, 'ece'))}</td>"
            f'<td class="t">{_e(_field(it, "calibration") or "–")}</td><td>{_fmt(_field(it, "kappa"))}</td>'
            f"<td>{_e(difficulty)}</td><td>{'yes' if stop is True else ('no' if stop is False else '–')}</td>"
            f'<td class="err" title="{_e(error)}">{_e(short)}</td></tr>'
        )
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return f'<div class="scroll"><table><tr>{header}</tr>{"".join(rows)}</table></div>'


def _confusion_section(succeeded: list[dict[str, Any]]) -> str:
    for it in reversed(succeeded):
        confusion = _sub(_metrics(it), "confusion")
        labels = confusion.get("labels")
        if not isinstance(labels, list) or not labels:
            continue
        caption = f"<p class=\"meta\">{_e(it.get('version'))}, validation split.</p>"
        matrix = confusion.get("matrix")
        if isinstance(matrix, list) and len(matrix) == len(labels):
            return caption + _single_label_confusion(labels, matrix)
        per_class = _sub(confusion, "per_class")
        if per_class:
            return caption + _multi_label_confusion(labels, per_class)
    return '<p class="nodata">no data yet: no succeeded iteration recorded a confusion matrix</p>'


def _single_label_confusion(labels: list[Any], matrix: list[Any]) -> str:
    head = "".join(f"<th>{_e(label)}</th>" for label in labels)
    rows = []
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        values = [_num(v) or 0.0 for v in (row if isinstance(row, list) else [])]
        total = sum(values) or 1.0
        cells = []
        for j, v in enumerate(values):
            # Shade by the row share: the diagonal is recall, off-diagonal cells are where a class goes wrong.
            share = v / total
            rgb = "46,160,67" if i == j else "214,39,40"
            cls = ' class="diag"' if i == j else ""
            cells.append(f'<td{cls} style="background:rgba({rgb},{share * 0.6:.2f})">{int(v)}</td>')
        rows.append(f'<tr><th class="t">{_e(label)}</th>{"".join(cells)}</tr>')
    return (f'<div class="scroll"><table><tr><th>true ↓ / predicted →</th>{head}</tr>{"".join(rows)}</table></div>')


def _multi_label_confusion(labels: list[Any], per_class: dict[str, Any]) -> str:
    rows = []
    for label in labels:
        counts = _sub(per_class, str(label))
        rows.append(f'<tr><th class="t">{_e(label)}</th>'
                    + "".join(f"<td>{_int(counts.get(k))}</td>" for k in ("tp", "fp", "fn", "tn")) + "</tr>")
    return ('<div class="scroll"><table><tr><th>label</th><th>TP</th><th>FP</th><th>FN</th><th>TN</th></tr>'
            f'{"".join(rows)}</table></div>')


def _per_class_table(succeeded: list[dict[str, Any]]) -> str:
    for it in reversed(succeeded):
        per_class = _sub(_metrics(it), "per_class")
        if not per_class:
            continue
        rows = "".join(
            f'<tr><th class="t">{_e(name)}</th><td>{_fmt(_sub(per_class, name).get("precision"))}</td>'
            f'<td>{_fmt(_sub(per_class, name).get("recall"))}</td><td>{_fmt(_sub(per_class, name).get("f1"))}</td>'
            f'<td>{_int(_sub(per_class, name).get("support"))}</td></tr>'
            for name in sorted(per_class, key=str)
        )
        return (f"<p class=\"meta\">{_e(it.get('version'))}, validation split.</p>"
                '<div class="scroll"><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>'
                f"<th>support</th></tr>{rows}</table></div>")
    return '<p class="nodata">no data yet: no succeeded iteration recorded per-class metrics</p>'


def _autolabel_section(autolabel: dict[str, Any] | None) -> str:
    if not autolabel:
        return ""
    review = autolabel.get("needs_review")
    review_ids = review if isinstance(review, list) else []
    shown = ", ".join(_e(t) for t in review_ids[:50]) + (" …" if len(review_ids) > 50 else "")
    cells = [
        ("model version", _e(autolabel.get("model_version") or "–")),
        ("target precision", _fmt(autolabel.get("target_precision"))),
        ("threshold", _fmt(autolabel.get("threshold"))),
        ("validation precision", _fmt(autolabel.get("validation_precision"))),
        ("coverage", _fmt(autolabel.get("coverage"))),
        ("tasks considered", _int(autolabel.get("n_tasks"))),
        ("labels pushed", _int(autolabel.get("n_pushed"))),
        ("needing review", str(len(review_ids)) if isinstance(review, list) else _int(review)),
    ]
    rows = "".join(f'<tr><th class="t">{_e(k)}</th><td>{v}</td></tr>' for k, v in cells)
    extra = f'<p class="meta">tasks needing review: {shown}</p>' if review_ids else ""
    return f"<h2>Auto-labelling outcome</h2><table>{rows}</table>{extra}"


# --------------------------------------------------------------------------- files
def _atomic_write(path: Path, data: bytes) -> None:
    """Temp file + rename: a server handing out the report never serves a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be served and shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(
    iterations: list[dict[str, Any]],
    out_dir: Path | str,
    *,
    project_id: int,
    title: str | None = None,
    autolabel: dict[str, Any] | None = None,
) -> Path:
    """Write `out_dir/index.html` (self-contained) and one PNG per plot that has data; return the index path.

    Failed, queued and running iterations appear in the table only. A plot without data becomes a
    "no data yet" note, and a stale PNG of that name from an earlier report is removed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ordered = sorted(iterations, key=lambda it: (_number(it) is None, _number(it) or 0))
    succeeded = _succeeded(ordered)
    title = title or f"labelloop project {project_id}: active-learning report"

    figures = []
    for name, (heading, plot, caption) in PLOTTERS.items():
        result = plot(succeeded, autolabel)
        path = out / PLOT_FILES[name]
        if isinstance(result, bytes):
            _atomic_write(path, result)
            uri = "data:image/png;base64," + base64.b64encode(result).decode("ascii")
            figures.append(f'<figure id="{name}"><img src="{uri}" alt="{_e(heading)}">'
                           f"<figcaption>{_e(caption)}</figcaption></figure>")
        else:
            path.unlink(missing_ok=True)
            figures.append(f'<figure id="{name}"><strong>{_e(heading)}</strong>'
                           f'<p class="nodata">no data yet: {_e(result)}</p></figure>')

    body = "".join([
        _header(ordered, succeeded, project_id, title),
        "<h2>Plots</h2>", *figures,
        _control_section(succeeded, out),
        "<h2>Iterations</h2>", _iteration_table(ordered),
        "<h2>Latest per-class metrics</h2>", _per_class_table(succeeded),
        "<h2>Latest confusion matrix</h2>", _confusion_section(succeeded),
        _autolabel_section(autolabel),
    ])
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>{body}</main></body></html>\n")
    index = out / "index.html"
    _atomic_write(index, page.encode("utf-8"))
    return index


def report_from_store(
    store: Any, project_id: int, out_dir: Path | str, autolabel: dict[str, Any] | None = None
) -> Path:
    """Report from the SQL history, through `iteration_json` so the page shows what the JSON API shows."""

    rows = store.iterations(project_id)
    if not rows:
        raise ValueError(f"project {project_id} has no iterations to report (train it at least once)")
    iterations = []
    for row in rows:
        data = iteration_json(row, full=False)
        for key in TRUST_FIELDS:  # in case iteration_json predates these columns
            if data.get(key) is None:
                data[key] = getattr(row, key, None)
        iterations.append(data)
    return write_report(iterations, out_dir, project_id=project_id, autolabel=autolabel)

"""`labelloop` command line: serve (gunicorn), worker (train without serving), train (one iteration, for cron),
history, autolabel, report, doctor, simulate (-detection, -spans), db upgrade.

Every command finds the data the same way, whatever the working directory (see ``DATA_HELP``); read-only
commands never create a database. Logging is quiet (warnings, and an error as one line) unless ``-v``;
``serve`` and ``worker`` log at INFO, as servers do, but never alembic's chatter unless ``-v``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import multiprocessing
import os
import sys
from typing import Any

from backend.config import SQLITE_NAME, Settings, default_model_dir, legacy_model_dir
from backend.store import Store

#: Commands that run until stopped: they log at INFO and keep tracebacks (an operator reads their log).
LONG_RUNNING = ("serve", "worker")

DATA_HELP = f"""where the data lives:
  MODEL_DIR (models, the webhook journal and, unless DATABASE_URL is set, the SQLite history
  {SQLITE_NAME}) defaults to the user's data directory, whatever the working directory, so the
  server and every command agree:
    {default_model_dir()}
  A ./var/labelloop holding a database in the working directory (the old default) is still used,
  with a notice on every command saying how to move it. history and report never create a
  database. `labelloop doctor` shows where this shell looks and checks the whole setup."""


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from gunicorn.app.base import BaseApplication

    from backend.cli.doctor import shown_url

    print(f"labelloop: database {shown_url(settings.resolved_database_url)}, models in {settings.model_dir}",
          file=sys.stderr, flush=True)
    # Migrate once, before any worker opens the database.
    if not _upgrade_apart(settings.resolved_database_url):
        print("labelloop: migrating the database failed (the error is above); not serving", file=sys.stderr)
        return 1

    class LabelloopGunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            options = {
                "bind": f"{args.host}:{args.port}",
                "workers": args.workers,
                "threads": args.threads,
                "worker_class": "gthread" if args.threads > 1 else "sync",
                "timeout": args.timeout,
                "graceful_timeout": 10,
                "accesslog": "-" if args.access_log else None,
                "errorlog": "-",
                "loglevel": args.log_level,
                "proc_name": "labelloop",
                # gunicorn >= 24 opens a control socket at one fixed path per user: two servers on one
                # machine would fight over it, and labelloop has no use for it.
                "control_socket_disable": True,
            }
            for key, value in options.items():
                if value is not None and key in self.cfg.settings:  # older gunicorns lack some keys
                    self.cfg.set(key, value)

        def load(self) -> Any:
            # Runs in each worker after fork: every worker gets its own engine and background threads.
            from backend.web.app import create_app

            worker_settings = Settings.from_env()
            if args.no_train:
                worker_settings = worker_settings.model_copy(update={"role": "serve"})
            app = create_app(worker_settings)
            # Everything imported so far (torch, scikit-learn, the app: ~250,000 objects) lives as long
            # as the worker: out of the collector's sight, a full collection no longer walks it. One
            # took 165 ms, during which none of the worker's threads answered.
            gc.freeze()
            return app

    # Import the app's modules here, in the master, and build nothing: every worker is forked from this
    # process and shares these pages copy-on-write instead of importing its own copy. A fresh serving
    # worker went from 187 to 176 MB resident and from 132 to 68 MB proportional (its own share of
    # memory). Frozen, the collector in a worker never walks (and so never copies) these objects. The
    # app itself (engine, pools, threads) is still created in each worker, after the fork (load above).
    import backend.web.app  # noqa: F401

    gc.freeze()
    LabelloopGunicorn().run()
    return 0


def _upgrade(url: str) -> None:
    Store(url).upgrade()


def _upgrade_apart(url: str) -> bool:
    """Migrate in a child forked for it; whether it succeeded.

    Why a child: every gunicorn worker is forked from this process and starts out holding what it
    imported. Alembic (its templates, lexers and dialect modules, ~10 MB) is needed once, here, and
    never by a worker; migrating in a child keeps it out of the master and so out of every worker.
    """
    child = multiprocessing.get_context("fork").Process(target=_upgrade, args=(url,), name="labelloop-migrate")
    child.start()
    child.join()
    return child.exitcode == 0


def _open_store(settings: Settings, command: str, create: bool = False) -> Store | None:
    """The database, migrated; None (with the reason printed) when it does not exist and ``create`` is off,
    so a command run in the wrong shell says where it looked instead of starting an empty database."""
    from backend.cli.doctor import WHERE_HINT, database_problem

    url = settings.resolved_database_url
    if not create:
        problem = database_problem(url)
        if problem is not None:
            print(f"labelloop {command}: {problem}; {WHERE_HINT}", file=sys.stderr)
            return None
    store = Store(url)
    store.upgrade()
    return store


def _train(args: argparse.Namespace, settings: Settings) -> int:
    """One round now. Whatever stops it from starting (no Label Studio connection, a refused key, an unknown
    project, an unservable config) is checked first and printed, and records no round: the history and
    the report hold rounds that ran, not CLI mistakes."""
    from backend.cli.doctor import preflight
    from backend.service.container import Services

    # Without a database there is no stored connection: only the environment's can make a first round.
    store = _open_store(settings, "train", create=bool(settings.label_studio_url and settings.label_studio_api_key))
    if store is None:
        return 1
    project = store.get_project(args.project)
    problem = preflight(settings, args.project, project)
    if problem is not None:
        print(f"labelloop train: {problem} (no round recorded)", file=sys.stderr)
        return 1
    if project is None:
        store.ensure_project(args.project, settings.policy)
    services = Services(settings, store)
    queued = services.jobs.trigger(args.project, args.trigger, background=False)
    assert queued is not None  # no min_labels: a run is always queued (or joined)
    ran = services.jobs.drain(args.project)
    if not ran:
        print(f"project {args.project}: another worker holds the training lease; {queued.version} stays queued "
              "and runs when it finishes")
        return 0
    failed = False
    for iteration_id in ran:
        it = store.get_iteration(iteration_id)
        assert it is not None
        if it.status == "succeeded":
            print(f"project {args.project}: {it.version} succeeded: {it.labels_used} labels, "
                  f"accuracy={_fmt(it.accuracy)} macro_f1={_fmt(it.macro_f1)}, {it.n_pool} tasks scored")
        else:
            failed = True
            print(f"project {args.project}: {it.version} {it.status}: {it.error}", file=sys.stderr)
    return 1 if failed else 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    """Train and run background jobs without serving, until SIGTERM / SIGINT (or once, with --once)."""
    import signal
    import threading

    from backend.service.container import Services

    store = Store(settings.resolved_database_url)
    store.upgrade()
    services = Services(settings.model_copy(update={"role": "worker"}), store)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"labelloop worker {services.jobs.owner}: training and jobs for every project in "
          f"{settings.resolved_database_url.split('@')[-1]}", flush=True)
    while True:
        try:
            services.tick(background=not args.once)
        except Exception:  # a database hiccup: log and try again next tick
            logging.getLogger("labelloop").exception("worker tick failed")
        if args.once or stop.wait(settings.tick_seconds):
            break
    services.jobs.stop(timeout=args.grace)
    store.dispose()
    return 0


def _print_threshold(project: int, out: dict[str, Any]) -> None:
    """What the threshold promises, on how many labelled rows, and what to do when it cannot promise."""
    threshold = "none certifies the target" if out["threshold"] is None else f"{out['threshold']:.4f}"
    print(f"project {project}, model {out['model_version']}: {out['n_predicted']} of {out['n_tasks']} tasks "
          f"predicted, {out['n_pushed']} predictions pushed ({out['n_already_predicted']} already there)")
    rows = f"{out['n_threshold_rows']} labelled rows ({out['n_validation']} validation, " \
           f"{out['n_crossfit_rows']} cross-fitted)"
    print(f"target precision {out['target_precision']:.3f} ({out['rule']} rule): threshold {threshold}, "
          f"chosen on {rows}")
    if out["validation_precision_lower"] is not None and out["rule"] == "guaranteed":
        print(f"  precision >= {out['validation_precision_lower']:.3f} with {out['confidence_level']:.0%} confidence "
              f"(measured {_fmt(out['validation_precision'])} on the {out['n_validation_selected']} rows at or above)")
    elif out["rule"] == "point" and out["threshold"] is not None:
        print(f"  measured precision {_fmt(out['validation_precision'])} on {out['n_validation_selected']} rows: "
              "an estimate with no guarantee")
    if out["more_labels_estimate"]:
        print(f"  nothing auto-labelled: roughly {out['more_labels_estimate']} more labels would let the target be "
              "certified (a rough estimate)")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _difficulty(metrics: dict[str, Any] | None) -> str:
    """Easy/medium/hard counts of the scored pool, as recorded by the iteration."""
    counts = ((metrics or {}).get("difficulty") or {}).get("counts")
    return "-" if not counts else f"{counts['easy']}/{counts['medium']}/{counts['hard']}"


def _history(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    store = _open_store(settings, "history")
    if store is None:
        return 1
    iterations = store.iterations(args.project)
    project = store.get_project(args.project)
    if args.json:
        from backend.service.serializers import iteration_json

        print(json.dumps([iteration_json(it) for it in iterations], indent=2))
        return 0
    if project is None and not iterations:
        from backend.cli.doctor import shown_url

        known = ", ".join(str(p.id) for p in store.list_projects()) or "none yet"
        print(f"labelloop history: project {args.project} is unknown in {shown_url(store.url)} (projects there: "
              f"{known}); connecting the model in Label Studio creates it", file=sys.stderr)
        return 1
    title = f"labelloop project {args.project}"
    if project is not None:
        title += f" - serving {project.current_version or 'nothing yet'}, strategy {project.rules.strategy}"
    table = _wide_table(title, iterations) if args.wide else _history_table(title, iterations)
    # Piped output (cron mail, CI logs): the compact table is made for 100 columns, the wide one gets 200.
    width = None if sys.stdout.isatty() else (200 if args.wide else 100)
    Console(width=width).print(table)
    for it in iterations:  # the whole reason, unfolded (the table's column wraps it)
        if it.status == "failed" and it.error:
            print(f"{it.version} failed: {it.error}")
    _print_control(iterations)
    if not iterations:
        print(f"project {args.project} has no iterations yet: a round runs after {project.rules.retrain_every} new "
              "labels, on Start training in Label Studio, or with `labelloop train`")
    elif not args.wide:
        print("(--wide: every column; --json: everything recorded)")
    return 0


def _history_table(title: str, iterations: list) -> Any:
    """The columns that matter, in 100 columns: what trained on how many labels, how good, on how many
    held-out tasks (the 95 % interval says how far to trust the accuracy), and whether to stop."""
    from rich import box
    from rich.table import Table

    from backend.service.serializers import accuracy_interval

    # No vertical rules, one space between columns: the ten take ~95 characters, so none has to wrap.
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    for column, justify in (("it", "right"), ("version", "left"), ("status", "left"), ("trigger", "left"),
                            ("labels", "right"), ("val", "right"), ("accuracy [95 %]", "left"),
                            ("macro-F1", "right"), ("stop?", "left"), ("finished", "left")):
        table.add_column(column, justify=justify, no_wrap=column.startswith("accuracy"))  # type: ignore[arg-type]
    for it in iterations:
        interval = accuracy_interval(it)
        accuracy = _fmt(it.accuracy) + (f" [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else "")
        table.add_row(
            str(it.number), it.version, it.status, "Start" if it.trigger == "START_TRAINING" else it.trigger,
            _count(it.labels_used), _count(it.n_validation), accuracy, _fmt(it.macro_f1),
            {True: "STOP", False: "no", None: "-"}[it.stop_suggested],
            it.finished_at.strftime("%m-%d %H:%M") if it.finished_at else "-",
        )
    return table


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _wide_table(title: str, iterations: list) -> Any:
    """Every recorded figure, one column each (`history --wide`)."""
    from rich.table import Table

    from backend.service.serializers import accuracy_interval

    table = Table(title=title)
    for column in ("it", "version", "status", "trigger", "strategy", "labels", "train", "val", "pool", "accuracy",
                   "95 % interval", "macro-F1", "ECE", "more", "calib", "kappa", "stop?", "easy/med/hard", "fit s",
                   "finished", "error"):
        table.add_column(column, overflow="fold")
    for it in iterations:
        interval = accuracy_interval(it)
        table.add_row(
            str(it.number), it.version, it.status, it.trigger,
            f"{it.strategy}/{it.queue}" if it.strategy and it.queue else (it.strategy or "-"),
            *(_count(v) for v in (it.labels_used, it.n_train, it.n_validation, it.n_pool)),
            _fmt(it.accuracy), f"{interval[0]:.3f}-{interval[1]:.3f}" if interval else "-", _fmt(it.macro_f1),
            _fmt(it.ece), _more_figures(it.metrics), it.calibration or "-", _fmt(it.kappa),
            {True: "STOP", False: "no", None: "-"}[it.stop_suggested], _difficulty(it.metrics), _fmt(it.fit_seconds),
            it.finished_at.strftime("%Y-%m-%d %H:%M:%S") if it.finished_at else "-",
            (it.error or "")[:120],
        )
    return table


def _print_control(iterations: list) -> None:
    """Active vs random per round, under the table (a column would not fit the interval and the efficiency)."""
    from backend.service.control import control_summary

    for it in iterations:
        control = (it.metrics or {}).get("control") if it.status == "succeeded" else None
        if isinstance(control, dict):
            print(f"{it.version} {control_summary(control)}")


def _more_figures(metrics: dict | None) -> str:
    """The task type's other headline figures (detection: mAP@0.5:0.95; several controls: each one's)."""
    evaluation = (metrics or {}).get("evaluation") or {}
    shown = {k: v for k, v in evaluation.items()
             if k not in ("accuracy", "macro_f1", "ece", "n_images", "n_boxes", "operating_score")
             and not k.endswith((".n_images", ".n_boxes", ".operating_score"))}
    return " ".join(f"{k}={_fmt(v)}" for k, v in shown.items()) or "-"


def _read_task_ids(path: str) -> list[int]:
    """Task ids from a file: a JSON list, or one id per line (blank lines and # comments ignored)."""
    from pathlib import Path

    text = Path(path).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        data = [line for line in data if line]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of task ids or one id per line")
    try:
        return [int(v) for v in data]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a task id: {exc}") from exc


def _autolabel(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from backend.cli.doctor import preflight
    from backend.service.autolabel import AutolabelError, AutolabelRequest
    from backend.service.container import Services

    store = _open_store(settings, "autolabel")
    if store is None:
        return 1
    try:
        task_ids = _read_task_ids(args.tasks) if args.tasks else None
        request = AutolabelRequest(project_id=args.project, target_precision=args.target_precision, view=args.view,
                                   task_ids=task_ids, create_view=not args.no_view,
                                   confidence_level=args.confidence_level, rule=args.rule,
                                   crossfit=not args.no_crossfit)
    except (OSError, ValueError, AutolabelError) as exc:
        print(f"labelloop autolabel: {exc}", file=sys.stderr)
        return 2
    project = store.get_project(args.project)
    if project is None:
        print(f"labelloop autolabel: project {args.project} is unknown here (no model trained for it yet)",
              file=sys.stderr)
        return 2
    problem = preflight(settings, args.project, project)  # before a job is recorded: a run that cannot start
    if problem is not None:
        print(f"labelloop autolabel: {problem}", file=sys.stderr)
        return 1
    services = Services(settings, store)
    params = {k: v for k, v in asdict(request).items() if k != "project_id" and v is not None}
    try:
        job_id = services.background.create(args.project, "autolabel", params)
    except RuntimeError as exc:
        print(f"labelloop autolabel: {exc}", file=sys.stderr)
        return 1
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=not sys.stdout.isatty()) as bar:
        handle = bar.add_task("autolabel", total=None)

        def work(progress):  # type: ignore[no-untyped-def]
            def both(stage: str, done: int, total: int | None) -> None:
                bar.update(handle, description=stage, completed=done, total=total)
                progress(stage, done, total)

            return services.autolabel_work(request)(both)

        services.background.run(job_id, work)
    job = store.get_job(job_id)
    assert job is not None
    if job.status != "succeeded" or job.result is None:
        print(f"labelloop autolabel: failed: {job.error}", file=sys.stderr)
        return 1
    out = job.result
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    if args.needs_review:
        with open(args.needs_review, "w") as fh:
            fh.writelines(f"{t}\n" for t in out["needs_review"])
    _print_threshold(args.project, out)
    print(f"coverage {out['coverage']:.1%}: auto-labelled without review; {len(out['needs_review'])} tasks need review"
          + (f" (Label Studio tab {out['needs_review_view']})" if out["needs_review_view"] else ""))
    print(f"  ({out['coverage_definition']})")
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from backend.reports.html import report_from_store

    store = _open_store(settings, "report")
    if store is None:
        return 1
    latest = store.latest_job(args.project, "autolabel", status="succeeded")
    try:
        index = report_from_store(store, args.project, args.out, autolabel=latest.result if latest else None)
    except ValueError as exc:
        print(f"labelloop report: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {index}")
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    from backend.cli.doctor import shown_url

    Store(settings.resolved_database_url).upgrade()
    print(f"database at head: {shown_url(settings.resolved_database_url)}")
    return 0


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from backend.cli import doctor

    return doctor.run(args, settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labelloop", description="Active-learning ML backend for Label Studio",
                                     epilog=DATA_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log at INFO (alembic's migration lines included) and show tracebacks; -vv: DEBUG")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the ML-backend protocol under gunicorn")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 to accept remote Label Studio)")
    serve.add_argument("--port", type=int, default=9090)
    serve.add_argument("--workers", type=int, default=2)
    serve.add_argument("--threads", type=int, default=4)
    serve.add_argument("--timeout", type=int, default=120, help="gunicorn worker timeout (s)")
    serve.add_argument("--access-log", action="store_true")
    serve.add_argument("--log-level", default="info")
    serve.add_argument("--no-train", action="store_true",
                       help="serve and queue only: training and jobs run in `labelloop worker` processes")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser("worker", help="train and run background jobs for every project, without serving")
    worker.add_argument("--once", action="store_true", help="one pass over the queue, then exit (for cron)")
    worker.add_argument("--grace", type=float, default=600.0,
                        help="on SIGTERM, seconds to let a running round finish (default 600)")
    worker.set_defaults(func=_worker)

    train = sub.add_parser("train", help="run one training iteration now, in the foreground (for cron)")
    train.add_argument("--project", type=int, required=True, help="Label Studio project id")
    train.add_argument("--trigger", default="cli", help=argparse.SUPPRESS)
    train.set_defaults(func=_train)

    history = sub.add_parser("history", help="print a project's iterations")
    history.add_argument("--project", type=int, required=True)
    shape = history.add_mutually_exclusive_group()
    shape.add_argument("--wide", action="store_true", help="every column (strategy, ECE, kappa, difficulty, ...)")
    shape.add_argument("--json", action="store_true", help="print JSON instead of a table (everything recorded)")
    history.set_defaults(func=_history)

    auto = sub.add_parser("autolabel", help="predict a test set, push the predictions, list what needs review")
    auto.add_argument("--project", type=int, required=True, help="Label Studio project id")
    scope = auto.add_mutually_exclusive_group()
    scope.add_argument("--view", type=int, help="only the tasks of this Data Manager tab (view id)")
    scope.add_argument("--tasks", help="only these tasks: a file with a JSON list of ids or one id per line")
    auto.add_argument("--target-precision", type=float, default=0.95,
                      help="precision the auto-labelled share must reach on the validation split (default 0.95)")
    auto.add_argument("--rule", choices=("guaranteed", "point"), default="guaranteed",
                      help="guaranteed (default): precision certified at --confidence-level; point: the measured "
                           "precision, an estimate with no guarantee")
    auto.add_argument("--no-crossfit", action="store_true",
                      help="choose the threshold on the validation split only (no cross-fitted training rows)")
    auto.add_argument("--confidence-level", type=float,
                      help="the guarantee's confidence for the guaranteed rule (default 0.95)")
    auto.add_argument("--json", help="write the outcome as JSON to this file")
    auto.add_argument("--needs-review", help="write the ids of the tasks that need review to this file")
    auto.add_argument("--no-view", action="store_true", help="do not create a 'needs review' tab in Label Studio")
    auto.set_defaults(func=_autolabel)

    report = sub.add_parser("report", help="write an HTML report (plots of every iteration) to a folder")
    report.add_argument("--project", type=int, required=True)
    report.add_argument("--out", required=True, help="output folder (index.html and PNGs)")
    report.set_defaults(func=_report)

    from backend.cli import doctor

    doctor.add_parser(sub)
    sub.choices["doctor"].set_defaults(func=_doctor)
    from backend.cli import simulate

    simulate.add_parser(sub)
    from backend.cli import simulate_detection

    simulate_detection.add_parser(sub)
    from backend.cli import simulate_spans

    simulate_spans.add_parser(sub)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations up to head").set_defaults(func=_db)
    for command in [*sub.choices.values(), *db_sub.choices.values()]:  # -v after the command name works too
        command.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


class _OneLineErrors(logging.Filter):
    """A logged exception as one line (its type and message) instead of a traceback: a command's user
    needs the reason, not the stack (``-v`` shows it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc} (-v shows the traceback)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(verbose: int, command: str) -> None:
    """Quiet by default: warnings only for a command (INFO for a server), alembic's INFO lines (nine on
    every call) only with ``-v``, tracebacks only for a server or with ``-v``."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose or command in LONG_RUNNING else logging.WARNING
    root = logging.getLogger()
    if not root.handlers:  # a caller (tests, an embedding program) that configured logging keeps its own
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        if not verbose and command not in LONG_RUNNING:
            handler.addFilter(_OneLineErrors())
        root.addHandler(handler)
        root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.NOTSET if verbose else logging.WARNING)


def _data_notice(settings: Settings) -> None:
    """One line on stderr when the old ./var/labelloop of this directory is in use, with how to move it."""
    from backend.cli.doctor import move_hint

    legacy = legacy_model_dir()
    if os.environ.get("MODEL_DIR") or os.environ.get("DATABASE_URL") or legacy is None or settings.model_dir != legacy:
        return
    print(f"labelloop: using {legacy} (the old default, relative to this directory); commands run elsewhere look in "
          f"{default_model_dir()}. To keep one place: {move_hint(legacy, default_model_dir())}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = int(getattr(args, "verbose", 0) or 0)
    configure_logging(verbose, args.command)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"labelloop: {exc}", file=sys.stderr)
        return 2
    _data_notice(settings)
    try:
        return int(args.func(args, settings) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `labelloop history | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a command's user gets the reason in one line; -v (or a server's log) the traceback
        if verbose or args.command in LONG_RUNNING:
            raise
        print(f"labelloop {args.command}: {type(exc).__name__}: {exc} (-v shows the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

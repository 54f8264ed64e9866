"""Blueprint: the status page, for a person who wants to know what the backend is doing without its log.

``/`` (and ``/status``) lists every project; ``/status/<id>`` shows one: its state, the serving version,
the last rounds with their errors in full, the labels until the next round, the policy, the controls the
label config ignores, the stopping signal and the report's plots (``/status/<id>/report`` is the whole
report). The page is not under ``/projects/<id>``: that prefix is the operators' JSON API (web/history.py),
guarded by a header a browser cannot send.

Who may read it: the app's basic auth, like every route, and, when ``LABELLOOP_OPERATOR_TOKEN`` is set,
the operator token too (the page shows what the guarded ``/projects/<id>/iterations`` shows). Scripts
send the token's header; a browser signs in once with a form that sets a cookie holding an HMAC of the
token (never the token itself). Tokens, passwords and URL credentials are never shown: texts from the
history (round errors) are scrubbed of every secret the process knows.

HTML comes from Jinja templates (``templates/status/``), escaped automatically. Plots are drawn by the
HTML report (backend/reports/html.py) once per change of a project's history and served from a cache
directory under MODEL_DIR, so a refresh costs a few SQL reads, not matplotlib.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    make_response,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from sqlalchemy.engine import make_url

from backend.config import ProjectPolicy, Settings
from backend.labelstudio.labelconfig import UnsupportedConfig, cached_spec, ignored_controls
from backend.reports.html import CONTROL_FILE, PLOT_FILES, PLOTTERS, report_from_store
from backend.service.container import OPERATOR_HEADER, Services
from backend.service.serializers import iteration_json
from backend.store import as_utc
from backend.store.schema import Iteration, Project, utcnow
from backend.web.params import MAX_ID
from backend.web.protocol import __version__

bp = Blueprint("status", __name__, template_folder="templates")
log = logging.getLogger("labelloop")

__all__ = ["bp"]

#: Rounds listed on a project's page, newest first (the whole history is in the report and the JSON API).
ROUNDS_SHOWN = 20
#: Seconds between the page's reloads (``?refresh=0`` turns it off).
REFRESH_SECONDS = 30
#: The sign-in cookie, and what its HMAC signs (the token is the key: changing it signs everyone out).
COOKIE = "labelloop_status"
COOKIE_MESSAGE = b"labelloop status page"
DATABASE_KINDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
#: The plot files the page may serve, in page order, with the report's heading and caption of each (the
#: control stream's figure exists only for projects with a control stream).
PLOTS = {
    **{PLOT_FILES[name]: (heading, caption) for name, (heading, _, caption) in PLOTTERS.items()},
    CONTROL_FILE: ("Active vs random on your data", "Accuracy of the strategy's picks against random picks at equal "
                   "label counts (the full report explains the panels)."),
}
#: Nothing from elsewhere: inline CSS, our own images, forms posting back here; no framing.
CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
REDACTED = "[redacted]"
URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def services() -> Services:
    return current_app.extensions["labelloop"]


# --------------------------------------------------------------------------- access
def cookie_value(token: str) -> str:
    return hmac.new(token.encode(), COOKIE_MESSAGE, hashlib.sha256).hexdigest()


def signed_in(settings: Settings) -> bool:
    """No operator token configured, or the request carries it (header) or the sign-in cookie."""
    token = settings.operator_token
    if not token or services().is_operator(request.headers):
        return True
    given = request.cookies.get(COOKIE)
    return bool(given) and hmac.compare_digest(given.encode(), cookie_value(token).encode())


@bp.before_request
def require_operator() -> Response | None:
    """After the app's basic auth: the operator token when one is set (see the module docstring)."""
    if request.endpoint == "status.sign_in" or signed_in(services().settings):
        return None
    log.warning("403 %s %s: status page without the operator token", request.method, request.path[:200])
    return page("status/sign_in.html", 403, next=local_path(request.full_path), failed=False, header=OPERATOR_HEADER)


@bp.after_request
def harden(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    if resp.mimetype == "text/html":
        resp.headers["Cache-Control"] = "no-store"
    return resp


def local_path(value: str | None) -> str:
    """Where to go after signing in: a path on this server only (never ``//host`` or a URL)."""
    value = (value or "").rstrip("?")
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else url_for(
        "status.index")


@bp.post("/status/sign-in")
def sign_in() -> Response:
    settings = services().settings
    target = local_path(request.form.get("next"))
    token = settings.operator_token
    if not token:
        return redirect(target, code=303)
    given = request.form.get("token") or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        log.warning("403 POST %s: wrong operator token", request.path)
        return page("status/sign_in.html", 403, next=target, failed=True, header=OPERATOR_HEADER)
    resp = redirect(target, code=303)
    resp.set_cookie(COOKIE, cookie_value(token), httponly=True, samesite="Strict", secure=request.is_secure,
                    path=f"{request.script_root}/")
    return resp


def page(template: str, status: int = 200, **context: Any) -> Response:
    """A rendered page with the backend's line every page shows."""
    refresh = REFRESH_SECONDS if request.args.get("refresh") != "0" and status == 200 else None
    html = render_template(template, backend=backend_info(services().settings), refresh=refresh, **context)
    resp = make_response(html, status)
    resp.mimetype = "text/html"
    return resp


# --------------------------------------------------------------------------- routes
@bp.get("/status")
@bp.get("/")  # registered first: the index's URL is "/"
def index() -> Response:
    svc = services()
    rows = []
    for project in svc.store.list_projects():
        its = svc.store.iterations(project.id)
        rows.append({**summary(svc, project, its), "url": url_for("status.project_page", project_id=project.id)})
    return page("status/index.html", projects=rows)


@bp.get("/status/<int:project_id>")
def project_page(project_id: int) -> Response:
    svc = services()
    project = svc.store.get_project(project_id) if 1 <= project_id <= MAX_ID else None
    if project is None:
        return page("status/unknown.html", 404, project_id=project_id)
    its = svc.store.iterations(project_id)
    scrub = scrubber(svc.settings, project)
    view = summary(svc, project, its)
    rounds = [round_row(it, scrub) for it in reversed(its[-ROUNDS_SHOWN:])]
    plots, plot_error = PlotCache(svc).plots(project_id, its)
    return page("status/project.html", p=view, rounds=rounds, total_rounds=len(its), config=config_view(project),
                labels=labels_view(svc, project), policy=policy_view(project.rules, its),
                stopping=stopping_view(project.rules, its), plots=plots, plot_error=plot_error)


@bp.get("/status/<int:project_id>/report")
def report(project_id: int) -> Response:
    """The whole HTML report (backend/reports/html.py), from the cache the page's plots come from."""
    svc = services()
    its = svc.store.iterations(project_id) if 1 <= project_id <= MAX_ID else []
    if not its:
        return page("status/unknown.html", 404, project_id=project_id, no_rounds=True)
    cache = PlotCache(svc)
    _, error = cache.plots(project_id, its)
    if error:
        return page("status/unknown.html", 500, project_id=project_id, report_error=error)
    return send_file(cache.directory(project_id) / "index.html", mimetype="text/html", max_age=0)


@bp.get("/status/<int:project_id>/plots/<name>")
def plot(project_id: int, name: str) -> Response:
    """One of the report's PNGs; its URL carries the history's fingerprint, so browsers may keep it."""
    svc = services()
    path = PlotCache(svc).directory(project_id) / name if name in PLOTS and 1 <= project_id <= MAX_ID else None
    if path is None or not path.is_file():
        return page("status/unknown.html", 404, project_id=project_id, no_plot=True)
    return send_file(path, mimetype="image/png", max_age=86400)


# --------------------------------------------------------------------------- what the pages show
def backend_info(settings: Settings) -> dict[str, str]:
    """Version, role and database kind (the URL's dialect only: never its host, user or password)."""
    try:
        dialect = make_url(settings.resolved_database_url).get_backend_name()
    except Exception:  # a URL SQLAlchemy cannot read would have failed at start-up; say so rather than fail
        dialect = "unknown"
    return {"version": __version__, "role": settings.role, "database": DATABASE_KINDS.get(dialect, dialect),
            "operator_token": "required" if settings.operator_token else "not set"}


def summary(svc: Services, project: Project, its: list[Iteration]) -> dict[str, Any]:
    """What the index shows per project and the project page's header."""
    serving = next((it for it in its if it.id == project.current_iteration_id), None)
    data = iteration_json(serving, full=False) if serving else {}
    return {
        "id": project.id,
        "state": state_of(its, svc.settings.role, scrubber(svc.settings, project), project.current_version),
        "version": project.current_version,
        "trained": when(serving.finished_at) if serving else None,
        "accuracy": accuracy_text(data) if serving else None,
        "waiting": svc.store.labels_since(project.id),
        "label_studio": label_studio_link(project.label_studio_url or svc.settings.label_studio_url, project.id),
    }


def state_of(its: list[Iteration], role: str, scrub: Any, serving: str | None = None) -> dict[str, str]:
    """idle / training / queued / failing, and a sentence saying why."""
    running = [it for it in its if it.status == "running"]
    queued = [it for it in its if it.status == "queued"]
    finished = [it for it in its if it.status in ("succeeded", "failed")]
    if running:
        it = running[-1]
        detail = (f"round {it.number} ({it.trigger}) running for {since(it.started_at)}"
                  f"{' on ' + scrub(it.worker) if it.worker else ''}; the step it is at is recorded when it ends")
        if queued:
            detail += f"; round {queued[0].number} queued behind it"
        return {"name": "training", "detail": detail}
    if queued:
        it = queued[0]
        detail = f"round {it.number} ({it.trigger}) queued for {since(it.queued_at)}"
        if role == "serve":
            detail += ": this process only serves (LABELLOOP_ROLE=serve); a `labelloop worker` trains it"
        return {"name": "queued", "detail": detail}
    if finished and finished[-1].status == "failed":
        it = finished[-1]
        first = scrub(it.error or "no error recorded").strip().splitlines()[0:1] or [""]
        detail = f"round {it.number} failed {when(it.finished_at)['ago']}: {first[0]}"
        return {"name": "failing", "detail": detail + (f" (still serving {serving})" if serving else "")}
    if finished:
        return {"name": "idle", "detail": f"last round {finished[-1].number} succeeded "
                                          f"{when(finished[-1].finished_at)['ago']}"}
    return {"name": "idle", "detail": "no round yet: label tasks (or send START_TRAINING) to train the first model"}


def round_row(it: Iteration, scrub: Any) -> dict[str, Any]:
    data = iteration_json(it, full=False)
    fit = data["fit_seconds"]
    return {
        "number": data["number"], "version": data["version"], "trigger": data["trigger"], "status": data["status"],
        "labels": data["labels_used"], "n_validation": data["n_validation"], "accuracy": accuracy_text(data),
        "fit": None if fit is None else f"{fit:.{2 if fit < 10 else 1 if fit < 100 else 0}f} s",
        "finished": when(it.finished_at), "queued": when(it.queued_at),
        "error": scrub(data["error"]) if data["error"] else None,
    }


def accuracy_text(data: dict[str, Any]) -> dict[str, str] | None:
    """The headline figure and its 95 % interval (``0.812``, ``0.700–0.900``); None before validation labels."""
    accuracy = data.get("accuracy")
    if accuracy is None:
        return None
    interval = data.get("accuracy_interval")
    return {"value": f"{accuracy:.3f}", "interval": f"{interval[0]:.3f}–{interval[1]:.3f}" if interval else "",
            "n": str(data.get("n_validation") or 0)}


def labels_view(svc: Services, project: Project) -> dict[str, Any]:
    rules = project.rules
    waiting = svc.store.labels_since(project.id)
    return {"waiting": waiting, "retrain_every": rules.retrain_every,
            "until": max(0, rules.retrain_every - waiting), "idle_train_s": rules.idle_train_s,
            "interval_s": rules.retrain_interval_s}


def policy_view(rules: ProjectPolicy, its: list[Iteration]) -> dict[str, Any]:
    """The live policy, and what the newest succeeded round resolved it to ("auto" becomes a name)."""
    last = next((it for it in reversed(its) if it.status == "succeeded"), None)
    return {"strategy": rules.strategy, "queue": rules.queue, "model": rules.model,
            "validation_fraction": rules.validation_fraction, "control_fraction": rules.control_fraction,
            "served_strategy": last.strategy if last else None, "served_queue": last.queue if last else None}


def config_view(project: Project) -> dict[str, Any]:
    """The controls labelloop serves and those it ignores, with why (from the stored label config)."""
    config = project.label_config or ""
    if not config.strip():
        return {"problem": "no label config received yet: connect the backend to the project in Label Studio",
                "served": [], "ignored": []}
    try:
        spec = cached_spec(config)
        ignored = list(ignored_controls(config))
    except UnsupportedConfig as exc:
        return {"problem": f"the stored label config cannot be served: {exc}", "served": [], "ignored": []}
    controls = getattr(spec, "controls", ()) or (spec,)
    served = [f'<{c.tag} name="{c.from_name}"> on {c.to_name}'
              + (f" ({', '.join(map(str, c.labels))})" if getattr(c, "labels", None) else "") for c in controls]
    return {"problem": None, "served": served, "ignored": ignored}


def stopping_view(rules: ProjectPolicy, its: list[Iteration]) -> dict[str, Any]:
    """The stabilising-predictions signal of the newest succeeded round, and since when it says stop."""
    succeeded = [it for it in its if it.status == "succeeded"]
    if not succeeded:
        return {"verdict": "no model yet", "stop": False, "kappa": None}
    latest, since_round = succeeded[-1], None
    for it in reversed(succeeded):
        if it.stop_suggested is not True:
            break
        since_round = it.number
    kappa = f"{latest.kappa:.3f}" if latest.kappa is not None else None
    rule = f"kappa ≥ {rules.stop_kappa:g} for {rules.stop_window} rounds in a row"
    if since_round is not None:
        verdict = f"stop suggested since round {since_round}: predictions no longer change ({rule})"
    elif kappa is None:
        verdict = "keep labelling: not measured yet (it compares two consecutive succeeded rounds)"
    else:
        verdict = f"keep labelling: predictions still change (latest kappa {kappa}; stop when {rule})"
    return {"verdict": verdict, "stop": since_round is not None, "kappa": kappa,
            "uncertainty": None if latest.mean_uncertainty is None else f"{latest.mean_uncertainty:.3f}"}


def label_studio_link(base: str | None, project_id: int) -> str | None:
    """``<Label Studio>/projects/<id>/data`` for http(s) URLs only, without any credentials in them."""
    if not base:
        return None
    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, f"{parts.path.rstrip('/')}/projects/{project_id}/data", "", ""))


def scrubber(settings: Settings, project: Project | None = None) -> Any:
    """A function that removes every secret this process knows, and URL credentials, from a text."""
    secrets = [settings.label_studio_api_key, settings.basic_auth_pass, settings.operator_token,
               project.label_studio_token if project else None]
    try:
        secrets.append(make_url(settings.resolved_database_url).password)  # type: ignore[arg-type]
    except Exception:  # an unreadable URL has no password to hide here
        pass
    known = sorted({str(s) for s in secrets if s and len(str(s)) >= 4}, key=len, reverse=True)

    def scrub(text: str | None) -> str:
        text = URL_CREDENTIALS.sub(rf"\1{REDACTED}@", str(text or ""))
        for secret in known:
            text = text.replace(secret, REDACTED)
        return text

    return scrub


def when(value: datetime | None) -> dict[str, str] | None:
    """A stored time as UTC text and as "5 min ago"."""
    value = as_utc(value)
    if value is None:
        return None
    return {"at": value.strftime("%Y-%m-%d %H:%M:%S UTC"), "ago": f"{since(value)} ago"}


def since(value: datetime | None) -> str:
    value = as_utc(value)
    if value is None:
        return "an unknown time"
    seconds = max(0, int((utcnow() - value).total_seconds()))
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''}"
    return f"{seconds} s"


# --------------------------------------------------------------------------- plots
class PlotCache:
    """The HTML report of each project, drawn once per change of its history into MODEL_DIR/status/<id>/.

    The fingerprint covers every round's number, status and end, and the backend's version (a new
    release may draw differently). Two threads of one process draw one at a time; two processes may
    both draw, harmlessly: the report writes every file by rename.
    """

    _locks: dict[int, threading.Lock] = {}
    _guard = threading.Lock()

    def __init__(self, svc: Services) -> None:
        self.svc = svc

    def directory(self, project_id: int) -> Path:
        return Path(self.svc.settings.model_dir) / "status" / str(project_id)

    @staticmethod
    def fingerprint(its: list[Iteration]) -> str:
        rounds = [(it.id, it.number, it.status, str(as_utc(it.finished_at))) for it in its]
        return hashlib.sha256(json.dumps([__version__, rounds]).encode()).hexdigest()[:16]

    def plots(self, project_id: int, its: list[Iteration]) -> tuple[list[dict[str, str]], str | None]:
        """(the PNGs there are, each with its URL and title; why there are none, or None)."""
        if not its:
            return [], None
        key = self.fingerprint(its)
        out = self.directory(project_id)
        try:
            self._ensure(project_id, out, key)
        except Exception as exc:  # a plot that cannot be drawn must not take the page down
            log.exception("project %s: the status page's plots could not be drawn", project_id)
            return [], f"the plots could not be drawn ({type(exc).__name__}); the server log has the details"
        return [{"url": url_for("status.plot", project_id=project_id, name=name, v=key), "title": title,
                 "caption": caption}
                for name, (title, caption) in PLOTS.items() if (out / name).is_file()], None

    def _ensure(self, project_id: int, out: Path, key: str) -> None:
        stamp = out / "fingerprint"
        if self._read(stamp) == key:
            return
        with self._guard:
            lock = self._locks.setdefault(project_id, threading.Lock())
        with lock:
            if self._read(stamp) == key:  # another thread drew it while we waited
                return
            report_from_store(self.svc.store, project_id, out)
            tmp = out / f".fingerprint.{threading.get_ident()}"
            tmp.write_text(key)
            tmp.replace(stamp)

    @staticmethod
    def _read(path: Path) -> str | None:
        try:
            return path.read_text().strip()
        except OSError:
            return None


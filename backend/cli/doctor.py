"""`labelloop doctor`: check a setup end to end; each check prints OK or FAIL, and a failure the fix to apply.

The checks follow the path a label takes: this shell's database (reachable, writable, migrations at head),
the Label Studio connection labelloop would use (the environment's, else the one stored for the project by
``/setup``, exactly as ``Services.gateway_for`` picks it), Label Studio answering, the key accepted (a
legacy token or a personal access token), the project and its label config (what is served, what is
ignored), Label Studio reaching the model, and one webhook per project sending labels to it.

Label Studio's SSRF guard is told from outside by asking Label Studio to validate the backend's address
(label_studio 1.23.2): ``ML_BLOCK_LOCAL_IP`` makes ``POST /api/ml`` refuse a local or private URL in the
serializer's ``validate_url`` (ml/serializers.py) and every later call go through ``SsrfSafeHTTPAdapter``
(ml/api_connector.py); ``SSRF_PROTECTION_ENABLED`` makes ``POST /api/webhooks/`` refuse one
(webhooks/serializers.py) and silently drops every webhook sent to one (webhooks/utils.py
``ssrf_safe_post``). Both refusals are a 403 ``SsrfBlockedUrlError`` raised while the fields are read ("URL
resolves to a reserved network address (block: 127.0.0.0/8)"); the probes name project 0, which does not
exist, so a URL that passes gets a 400 about the project, and nothing is created (nor any request sent to
the backend).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests

from backend.config import SQLITE_NAME, Settings, default_model_dir, legacy_model_dir

#: Seconds per Label Studio call (listing ML backends makes Label Studio call each backend's /health and /setup).
TIMEOUT = 10.0
ML_LIST_TIMEOUT = 30.0
#: The backend address probed when Label Studio lists none and --backend-url is not given.
DEFAULT_BACKEND_URL = "http://127.0.0.1:9090"
SSRF_FIX = ("restart Label Studio with ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false (both; "
            "docker/compose.yaml sets them), or serve labelloop at an address that is neither local nor private")
#: After "no labelloop database at ...": the usual cause is a server started with other settings.
#: The details of Label Studio's SsrfBlockedUrlError (core/utils/io.py validate_ip, core/utils/exceptions.py): a
#: reserved address, or a URL refused outright (a 403 without one of these is a permission, not the guard).
SSRF_MESSAGES = ("URL resolves to a reserved network address", "The provided URL was not allowed")
#: What each of Label Studio's guards does to a local backend, in the doctor's words.
SSRF_EFFECT = {"ML_BLOCK_LOCAL_IP": "ML_BLOCK_LOCAL_IP is on, so it will not connect or call the model",
               "SSRF_PROTECTION_ENABLED": "SSRF_PROTECTION_ENABLED is on, so it drops every webhook to it"}
WHERE_HINT = ("is the server using DATABASE_URL=... or MODEL_DIR=...? Give this command the same "
              "(`labelloop doctor` shows where it looks)")


# -- the database ------------------------------------------------------------------------------------------
def shown_url(url: str) -> str:
    """The database URL as printed: the file for SQLite, the URL without its password otherwise."""
    from sqlalchemy.engine import make_url

    path = sqlite_path(url)
    return str(path) if path is not None else make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for other databases and for an in-memory one)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).resolve()


def database_problem(url: str) -> str | None:
    """Why there is no labelloop database at ``url``, or None; never creates one (a read-only command on a
    database that does not exist must say so, not start an empty one and report "no iterations")."""
    from sqlalchemy import create_engine, inspect
    from sqlalchemy.exc import SQLAlchemyError

    path = sqlite_path(url)
    if path is not None and not path.is_file():
        return f"no labelloop database at {path}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("projects"):
                return f"no labelloop tables in {shown_url(url)}"
    except SQLAlchemyError as exc:
        return f"cannot open the database {shown_url(url)}: {_first_line(exc)}"
    finally:
        engine.dispose()
    return None


def migration_state(url: str) -> tuple[set[str], set[str]]:
    """(the database's revisions, the code's heads)."""
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine

    from backend.store.base import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()
    return current, heads


def write_problem(url: str) -> str | None:
    """Whether this user may write the database: one UPDATE that changes nothing, rolled back."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            trans = conn.begin()
            try:
                conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
            finally:
                trans.rollback()
    except SQLAlchemyError as exc:
        return _first_line(exc)
    finally:
        engine.dispose()
    return None


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]


# -- the Label Studio connection ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Connection:
    """The Label Studio URL and key labelloop uses for a project, and where each came from."""

    url: str
    key: str
    url_from: str
    key_from: str

    @property
    def complete(self) -> bool:
        return bool(self.url and self.key)


def connection_for(settings: Settings, project: Any | None) -> Connection:
    """The environment's URL and key, else the ones `/setup` stored for the project: the rule of
    ``Services.gateway_for`` (tests/unit/test_doctor.py checks that both agree)."""
    stored = f"stored for project {project.id} by /setup" if project is not None else "stored"  # "from <this>"
    url = settings.label_studio_url or (project.label_studio_url if project is not None else None) or ""
    key = settings.label_studio_api_key or (project.label_studio_token if project is not None else None) or ""
    return Connection(url, key, "LABEL_STUDIO_URL" if settings.label_studio_url else stored if url else "",
                      "LABEL_STUDIO_API_KEY" if settings.label_studio_api_key else stored if key else "")


def missing_connection(project_id: int, settings: Settings, conn: Connection, known: bool = True) -> str:
    """Why there is no Label Studio to talk to for the project, in one line with the fix."""
    missing = " and ".join(name for name, value in (("LABEL_STUDIO_URL", conn.url), ("LABEL_STUDIO_API_KEY", conn.key))
                           if not value)
    where = shown_url(settings.resolved_database_url)
    if not known:
        return (f"no Label Studio connection for project {project_id}: {missing} unset here, and project "
                f"{project_id} is unknown in {where}: connect the model in the project in Label Studio (its /setup "
                "stores the connection), or set them here")
    return (f"no Label Studio connection for project {project_id}: {missing} unset here, and {where} stores none "
            "for it (a server given them in its environment does not store them): set them here as the server has "
            "them")


def key_kind(key: str) -> str:
    """A personal access token is a JWT refresh token (the SDK exchanges it for short access tokens);
    anything else is a legacy token."""
    parts = key.split(".")
    if len(parts) == 3:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, binascii.Error):
            claims = None
        if isinstance(claims, dict):
            kind = claims.get("token_type")
            if kind == "refresh":
                return "personal access token"
            return f"JWT {kind} token" if kind else "JWT"
    return "legacy token"


def preflight(settings: Settings, project_id: int, project: Any | None) -> str | None:
    """Why a CLI run for the project cannot start (no connection, Label Studio unreachable or refusing the
    key, an unknown project, a config labelloop cannot serve), or None. Checked before a round or job is
    created, so a run that cannot start records nothing (``labelloop train``, ``labelloop autolabel``)."""
    from backend.labelstudio.gateway import LabelStudioGateway
    from backend.labelstudio.labelconfig import UnsupportedConfig, read_label_config

    conn = connection_for(settings, project)
    if not conn.complete:
        return missing_connection(project_id, settings, conn, known=project is not None)
    try:  # one try: the SDK's retries with backoff made an unreachable Label Studio a 16 s wait
        gateway = LabelStudioGateway(conn.url, conn.key, timeout=TIMEOUT)
        config = gateway.client.projects.get(id=project_id, request_options={"max_retries": 0}).label_config or ""
    except Exception as exc:  # the SDK's ApiError, httpx errors, LabelStudioError
        return _label_studio_problem(exc, conn)
    try:
        read_label_config((project.label_config if project is not None else None) or config)
    except UnsupportedConfig as exc:
        return f"project {project_id}'s label config: {exc}"
    return None


def _label_studio_problem(exc: BaseException, conn: Connection) -> str:
    """What went wrong talking to Label Studio, with the fix when the diagnosis knows it."""
    from backend.labelstudio.diagnosis import diagnose

    problem = diagnose(exc, conn.url, conn.key_from)
    cause = exc.__cause__ or exc
    return problem.text() if problem is not None else f"Label Studio at {conn.url}: {_first_line(cause)}"


class LabelStudioAPI:
    """The few calls the doctor makes, with requests and the SDK's authentication (which exchanges a
    personal access token for an access token)."""

    def __init__(self, conn: Connection, timeout: float = TIMEOUT) -> None:
        self.url = conn.url.rstrip("/")
        self.conn = conn
        self.timeout = timeout
        self._headers: dict[str, str] | None = None

    def headers(self) -> dict[str, str]:
        if self._headers is None:
            from backend.labelstudio.gateway import LabelStudioGateway

            gateway = LabelStudioGateway(self.conn.url, self.conn.key, timeout=self.timeout)
            self._headers = dict(gateway.auth_headers())
        return self._headers

    def call(self, method: str, path: str, timeout: float | None = None, **kwargs: Any) -> requests.Response:
        return requests.request(method, f"{self.url}/{path.lstrip('/')}", headers=self.headers(),
                                timeout=timeout or self.timeout, **kwargs)


# -- findings -----------------------------------------------------------------------------------------------
class Findings:
    """Checks as they are made: printed at once (Label Studio calls take seconds), counted for the exit status."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed = 0

    def ok(self, check: str, detail: str) -> None:
        self._print("OK", check, detail)

    def warn(self, check: str, detail: str, fix: str = "") -> None:
        self._print("WARN", check, detail, fix)

    def fail(self, check: str, detail: str, fix: str = "") -> None:
        self.failed += 1
        self._print("FAIL", check, detail, fix)

    def note(self, text: str) -> None:
        print(f"      {text}", file=self.out, flush=True)

    def _print(self, status: str, check: str, detail: str, fix: str = "") -> None:
        print(f"{status:<5} {check}: {detail}", file=self.out, flush=True)
        if fix:
            print(f"      fix: {fix}", file=self.out, flush=True)


@dataclass
class Options:
    project: int | None
    fix: bool
    yes: bool
    backend_urls: list[str]
    ask: Callable[[str], bool]


def ask_terminal(question: str) -> bool:
    """y/N on the terminal; no terminal, no answer (--yes applies the fix without asking)."""
    if not sys.stdin.isatty():
        print(f"      {question} [y/N] no: stdin is not a terminal (pass --yes to apply)", flush=True)
        return False
    return input(f"      {question} [y/N] ").strip().lower() in ("y", "yes")


# -- the checks ---------------------------------------------------------------------------------------------
def check_data(settings: Settings, environ: dict[str, str], opts: Options, found: Findings) -> bool:
    """The database this shell uses: there, writable, at head (``--fix`` upgrades it). True when usable."""
    url = settings.resolved_database_url
    where = "DATABASE_URL" if settings.database_url else (
        "MODEL_DIR" if environ.get("MODEL_DIR") else "the old ./var/labelloop" if settings.model_dir ==
        legacy_model_dir() else "the default data directory")
    problem = database_problem(url)
    if problem is not None:
        found.fail("database", f"{problem} (from {where})",
                   "start the server once (`labelloop serve` creates it), or set DATABASE_URL / MODEL_DIR here "
                   "as the server has them (`labelloop serve` prints its database when it starts)")
        return False
    current, heads = migration_state(url)
    if current != heads:
        if opts.fix:
            from backend.store import Store

            Store(url).upgrade()
            found.ok("migrations", f"upgraded {sorted(current) or 'nothing'} -> {sorted(heads)} (--fix)")
        else:
            found.fail("migrations", f"the database is at {sorted(current) or 'no revision'}, the code's head is "
                       f"{sorted(heads)}", "labelloop db upgrade (or labelloop doctor --fix)")
    denied = write_problem(url)
    if denied is not None:
        found.fail("database", f"{shown_url(url)} cannot be written: {denied}",
                   "give this user write access to the file and its directory (SQLite), or the role UPDATE rights")
        return False
    found.ok("database", f"{shown_url(url)} (from {where}): reachable, writable, migrations at {sorted(heads)[0]}")
    _check_legacy(settings, found)
    return True


def _check_legacy(settings: Settings, found: Findings) -> None:
    legacy = legacy_model_dir()
    if legacy is not None and settings.model_dir == legacy:
        new = default_model_dir()
        found.warn("data location", f"{legacy} is the old default (relative to the working directory): commands "
                   f"run elsewhere look in {new}", move_hint(legacy, new))


def move_hint(legacy: Path, new: Path) -> str:
    """How to move the old ./var/labelloop to the user data directory, or why not to blindly."""
    if (new / SQLITE_NAME).exists():
        return (f"{new} holds a database too: keep the one you need (set MODEL_DIR to it everywhere), or move "
                f"one aside before moving {legacy}")
    return f"stop the server, then `mkdir -p {new} && mv {legacy}/* {new}/` (or set MODEL_DIR={legacy} everywhere)"


def check_label_studio(api: LabelStudioAPI, found: Findings) -> bool:
    """Label Studio answers at the URL, and accepts the key (which kind it is). True when both hold."""
    conn = api.conn
    try:
        health = requests.get(f"{api.url}/health", timeout=api.timeout)
        health.raise_for_status()
    except requests.RequestException as exc:
        found.fail("Label Studio", f"no answer at {api.url} (from {conn.url_from}): {_first_line(exc)}",
                   "start Label Studio, or set LABEL_STUDIO_URL to the address it answers at from this machine")
        return False
    try:
        version = requests.get(f"{api.url}/api/version/", timeout=api.timeout).json().get("release")
    except (requests.RequestException, ValueError, AttributeError):
        version = None
    found.ok("Label Studio", f"{api.url} answers" + (f" (Label Studio {version})" if version else "")
             + f" (from {conn.url_from})")
    kind = key_kind(conn.key)
    fix = (f"set {conn.key_from if conn.key_from.startswith('LABEL') else 'LABEL_STUDIO_API_KEY'} to a key "
           "Label Studio accepts: Account & Settings shows the legacy token or creates a personal access token "
           "(legacy tokens must be enabled in Organization -> API Tokens Settings)")
    try:
        who = api.call("GET", "api/current-user/whoami")
    except Exception as exc:  # a personal access token is exchanged first: the SDK raises its ApiError
        found.fail("API key", f"the {kind} from {conn.key_from} is refused: {_first_line(exc)}", fix)
        return False
    if who.status_code != 200:
        found.fail("API key", f"the {kind} from {conn.key_from} is refused: HTTP {who.status_code} "
                   f"{_detail(who)}", fix)
        return False
    found.ok("API key", f"a {kind} of {who.json().get('email') or 'a user'}, accepted (from {conn.key_from})")
    return True


def _detail(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("detail") or body.get("validation_errors") or body)[:300]
    return str(body)[:300]


def check_project(api: LabelStudioAPI, project_id: int, found: Findings) -> bool:
    """The project exists there, and its label config has something labelloop serves (and what it ignores)."""
    from backend.labelstudio.labelconfig import UnsupportedConfig, read_label_config

    response = api.call("GET", f"api/projects/{project_id}")
    if response.status_code != 200:
        found.fail("project", f"Label Studio at {api.url} answers HTTP {response.status_code} for project "
                   f"{project_id}: {_detail(response)}",
                   "check the project id (the number in the project's URL), and that LABEL_STUDIO_URL is the "
                   "Label Studio it lives in")
        return False
    body = response.json()
    found.ok("project", f"{project_id} {body.get('title')!r}")
    try:
        parsed = read_label_config(body.get("label_config") or "")
    except UnsupportedConfig as exc:
        found.fail("label config", str(exc), "change the labeling interface (Settings -> Labeling Interface) to "
                   "one labelloop serves")
        return True
    spec = parsed.spec
    found.ok("label config", f"serves {spec.from_name!r} over {spec.to_name!r} (${spec.data_key}, {spec.modality})")
    for ignored in parsed.ignored:
        found.warn("label config", f"ignored: {ignored}")
    return True


def check_backends(api: LabelStudioAPI, project_id: int, opts: Options, found: Findings) -> list[str]:
    """Label Studio reaches the model connected to the project, and its SSRF guard lets it call the model
    and send it webhooks; returns the backend URLs (Label Studio's and --backend-url) whose webhooks to check."""
    response = api.call("GET", "api/ml", timeout=ML_LIST_TIMEOUT, params={"project": project_id})
    backends = response.json() if response.status_code == 200 else []
    if response.status_code != 200:
        found.fail("model connection", f"listing the project's models: HTTP {response.status_code} {_detail(response)}")
    elif not backends:
        found.fail("model connection", f"no model is connected to project {project_id} in Label Studio",
                   "in the project: Settings -> Model -> Connect model, URL http://<this host>:9090 (an address "
                   "Label Studio can reach labelloop at)")
    urls = [str(b.get("url") or "").rstrip("/") for b in backends]
    probes = list(dict.fromkeys([*urls, *(u.rstrip("/") for u in opts.backend_urls)])) or [DEFAULT_BACKEND_URL]
    refused = {url: _ssrf_refusals(api, url) for url in probes}
    for backend in backends:
        url = str(backend.get("url") or "").rstrip("/")
        state = backend.get("readable_state") or backend.get("state")
        if backend.get("state") == "CO":
            found.ok("model connection", f"Label Studio reaches {url} (#{backend.get('id')}: {state})")
        else:
            found.fail("model connection", f"Label Studio lists {url} (#{backend.get('id')}) as {state}"
                       + (f": {backend.get('error_message')}" if backend.get("error_message") else ""),
                       "see the SSRF guard check below" if refused.get(url) else _unreached_fix(url))
    for url, flags in refused.items():
        if flags:
            found.fail("SSRF guard", f"Label Studio refuses {url} as a local or private address: "
                       + "; ".join(SSRF_EFFECT[flag] for flag in flags), SSRF_FIX)
        elif flags is not None:
            found.ok("SSRF guard", f"Label Studio may call {url} and send webhooks to {url}/webhook")
    return list(dict.fromkeys([*urls, *(u.rstrip("/") for u in opts.backend_urls)]))


def _ssrf_refusals(api: LabelStudioAPI, url: str) -> list[str] | None:
    """Which of Label Studio's guards refuse ``url``: asks it to validate the URL for a model and for a
    webhook of project 0 (see the module docstring). None when it could not tell."""
    refused = []
    for setting, path, body in (("ML_BLOCK_LOCAL_IP", "api/ml", {"url": url, "project": 0}),
                                ("SSRF_PROTECTION_ENABLED", "api/webhooks/", {"url": f"{url}/webhook",
                                                                              "project": 0})):
        response = api.call("POST", path, json=body)
        if response.status_code == 403 and any(m in response.text for m in SSRF_MESSAGES):
            refused.append(setting)
        elif response.status_code != 400:
            return None
    return refused


def _unreached_fix(url: str) -> str:
    """Whether the model answers from here tells a stopped server from an address Label Studio cannot reach."""
    try:
        here = requests.get(f"{url}/health", timeout=3).json().get("model_class")
    except (requests.RequestException, ValueError, AttributeError):
        here = None
    if here:
        return (f"{url} answers from this machine ({here}) but not from Label Studio: when Label Studio runs in "
                "a container or on another machine, connect the model at an address Label Studio can reach, and "
                "serve with `labelloop serve --host 0.0.0.0`")
    return f"start the server (`labelloop serve --port {url.rsplit(':', 1)[-1]}`) where that address points"


def check_webhooks(api: LabelStudioAPI, project_id: int, bases: list[str], settings: Settings, opts: Options,
                   found: Findings) -> None:
    """One active webhook per backend sends the project's events (with their payload) to ``<backend>/webhook``;
    ``--fix`` deletes duplicates (all but the oldest) or adds the missing one, asking first unless ``--yes``."""
    for base in dict.fromkeys(bases):
        target = _normal(f"{base}/webhook")
        hooks = [w for w in _webhooks(api)
                 if w.get("project") in (project_id, None) and _normal(w.get("url")) == target]
        active = sorted((w for w in hooks if w.get("is_active", True)), key=lambda w: int(w["id"]))
        for hook in hooks:
            if not hook.get("is_active", True):
                found.warn("webhook", f"#{hook['id']} to {target} is disabled")
        if len(active) > 1 and _fix(opts, f"delete webhooks {', '.join('#' + str(w['id']) for w in active[1:])} "
                                          f"(duplicates of #{active[0]['id']})?", found):
            for hook in active[1:]:
                api.call("DELETE", f"api/webhooks/{hook['id']}/").raise_for_status()
            found.note(f"deleted {len(active) - 1} duplicate webhook(s)")
            active = active[:1]
        if not active and _fix(opts, f"add a webhook to {target} for project {project_id}?", found):
            created = api.call("POST", "api/webhooks/", json={"project": project_id, "url": target, "is_active": True,
                                                              "send_payload": True, "send_for_all_actions": True})
            created.raise_for_status()
            active = [created.json()]
        _judge_webhooks(active, target, project_id, settings, found)


def _judge_webhooks(active: list[dict], target: str, project_id: int, settings: Settings, found: Findings) -> None:
    if not active:
        found.fail("webhook", f"no active webhook sends project {project_id}'s labels to {target}: labelloop trains "
                   "only on Start training and its timers", f"labelloop doctor --project {project_id} --fix adds one "
                   "(or Settings -> Webhooks: URL as above, Send payload on)")
    elif len(active) > 1:
        found.fail("webhook", f"{len(active)} webhooks send project {project_id}'s events to {target} "
                   f"({', '.join('#' + str(w['id']) for w in active)}): Label Studio sends every event "
                   f"{len(active)} times", f"labelloop doctor --project {project_id} --fix deletes all but "
                   f"#{active[0]['id']} (asks first; --yes does not)")
    elif not active[0].get("send_payload", True):
        found.fail("webhook", f"#{active[0]['id']} to {target} sends no payload: labelloop cannot tell which "
                   "project an event is for", "Settings -> Webhooks: turn on Send payload")
    elif settings.basic_auth_user and not any(k.lower() == "authorization" for k in active[0].get("headers") or {}):
        found.fail("webhook", f"#{active[0]['id']} sends no Authorization header, and BASIC_AUTH_USER is set: "
                   "labelloop answers it 401", "Settings -> Webhooks: add the header Authorization: Basic ...")
    else:
        found.ok("webhook", f"one webhook (#{active[0]['id']}) sends project {project_id}'s events to {target}")


def _webhooks(api: LabelStudioAPI) -> list[dict]:
    response = api.call("GET", "api/webhooks/")
    response.raise_for_status()
    return [w for w in response.json() if isinstance(w, dict)]


def _normal(url: Any) -> str:
    """A webhook URL compared without trailing or doubled slashes in its path."""
    text = str(url or "").strip()
    scheme, _, rest = text.partition("://")
    host, _, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}/" + "/".join(p for p in path.split("/") if p)


def _fix(opts: Options, question: str, found: Findings) -> bool:
    if not opts.fix:
        return False
    return opts.yes or opts.ask(question)


# -- the command ------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, settings: Settings, environ: dict[str, str] | None = None,
        out: TextIO | None = None, ask: Callable[[str], bool] = ask_terminal) -> int:
    """Every check for ``--project`` (or every project in the database); 1 when one failed."""
    import os

    found = Findings(out or sys.stdout)
    opts = Options(args.project, args.fix, args.yes, list(args.backend_url or []), ask)
    store = None
    if check_data(settings, dict(os.environ if environ is None else environ), opts, found):
        from backend.store import Store

        store = Store(settings.resolved_database_url)
    projects = _projects(store, opts.project, found)
    for project_id, project in projects:
        _check_one(settings, project_id, project, opts, found)
    if not projects:
        conn = connection_for(settings, None)
        if conn.complete:
            check_label_studio(LabelStudioAPI(conn), found)
        found.warn("projects", "no project to check: the database has none yet, and no --project was given",
                   "connect the model in the project in Label Studio (Settings -> Model), then run "
                   "`labelloop doctor --project N` (N: the number in the project's URL)")
    if store is not None:
        store.dispose()
    print(f"{found.failed} check(s) failed" if found.failed else "all checks passed", file=found.out)
    return 1 if found.failed else 0


def _projects(store: Any | None, project_id: int | None, found: Findings) -> list[tuple[int, Any | None]]:
    if store is None:
        return [(project_id, None)] if project_id is not None else []
    if project_id is None:
        return [(p.id, p) for p in store.list_projects()]
    project = store.get_project(project_id)
    if project is None:
        known = ", ".join(str(p.id) for p in store.list_projects()) or "none"
        found.fail("project", f"project {project_id} is unknown in {shown_url(store.url)} (projects there: {known})",
                   "connect the model in the project's settings in Label Studio (its /setup creates the project), "
                   "or point DATABASE_URL / MODEL_DIR at the server's database")
    return [(project_id, project)]


def _check_one(settings: Settings, project_id: int, project: Any | None, opts: Options, found: Findings) -> None:
    print(f"-- project {project_id}", file=found.out, flush=True)
    conn = connection_for(settings, project)
    if not conn.complete:
        found.fail("connection", missing_connection(project_id, settings, conn, known=project is not None))
        return
    found.ok("connection", f"Label Studio URL and key {conn.url_from}" if conn.url_from == conn.key_from
             else f"Label Studio URL from {conn.url_from}, key from {conn.key_from}")
    api = LabelStudioAPI(conn)
    if not check_label_studio(api, found) or not check_project(api, project_id, found):
        return
    try:
        bases = check_backends(api, project_id, opts, found)
        check_webhooks(api, project_id, bases, settings, opts, found)
    except requests.RequestException as exc:
        found.fail("Label Studio", f"a call failed midway: {_first_line(exc)}", "run labelloop doctor again")


def add_parser(sub: Any) -> None:
    doctor = sub.add_parser("doctor", help="check this setup end to end and say how to fix what fails")
    doctor.add_argument("--project", type=int, help="Label Studio project id (default: every project in the database)")
    doctor.add_argument("--fix", action="store_true",
                        help="apply the fixes it can: upgrade the database, delete duplicate webhooks, add a missing "
                             "one (asks before changing Label Studio)")
    doctor.add_argument("--yes", action="store_true", help="with --fix: do not ask")
    doctor.add_argument("--backend-url", action="append",
                        help="labelloop's address as Label Studio reaches it, to probe even when no model is connected "
                             "(repeatable; default: the models Label Studio lists)")
    doctor.set_defaults(func=run)

"""The HTTP app factory: settings -> services -> auth and error handlers -> two blueprints.

Label Studio's protocol lives in web/protocol.py, the operators' routes in web/history.py; the
use cases they call are in backend/service/.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from backend.config import Settings
from backend.errors import NotReady
from backend.labelstudio.labelconfig import UnsupportedConfig
from backend.labelstudio.tasks import BadInput
from backend.service.access import Forbidden
from backend.service.container import OPERATOR_HEADER, Services
from backend.store import Store
from backend.web import history, protocol
from backend.web import status as status_page
from backend.web.jsonio import FastJSONProvider
from backend.web.params import TooLarge

log = logging.getLogger("labelloop")

# Routes for people and scripts rather than Label Studio: guarded by LABELLOOP_OPERATOR_TOKEN when set.
OPERATOR_PREFIXES = ("/projects/", "/jobs/")

__all__ = ["OPERATOR_HEADER", "create_app"]


def create_app(settings: Settings | None = None, *, start_jobs: bool = True, migrate: bool = False) -> Flask:
    """Build the app. `start_jobs` runs the background ticker (timers, orphaned queued runs)."""
    settings = settings or Settings.from_env()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    store = Store(settings.resolved_database_url)
    if migrate:
        store.upgrade()
    store.warm()
    services = Services(settings, store)
    if start_jobs:
        services.jobs.start_ticker(settings.tick_seconds, services.tick)

    app = Flask("labelloop")
    app.json = FastJSONProvider(app)
    app.config["JSON_SORT_KEYS"] = False
    # Werkzeug refuses a longer body (413) as soon as a route reads it, before it is in memory.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["labelloop"] = services
    app.before_request(_authenticate)
    app.after_request(_log)
    for exc_type, status in ((BadInput, 400), (Forbidden, 403)):
        app.register_error_handler(exc_type, _named_field_error(status))
    app.register_error_handler(TooLarge, _named_field_error(413))
    app.register_error_handler(NotReady, _named_field_error(424))
    app.register_error_handler(UnsupportedConfig, _unsupported)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    services.replay_webhook = lambda body: protocol.replay_webhook(services, body)
    services.is_outage = protocol.database_unavailable
    app.register_blueprint(protocol.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(status_page.bp)  # the status page for people: / and /status/<id>
    return app


def _services() -> Services:
    from flask import current_app

    return current_app.extensions["labelloop"]


def _authenticate() -> Response | tuple[Response, int] | None:
    """Basic auth on every route when configured; the operator token on the operators' routes."""
    g.started = time.perf_counter()
    services = _services()
    settings = services.settings
    user, password = settings.basic_auth_user, settings.basic_auth_pass
    if user and password:
        auth = request.authorization
        ok = (
            auth is not None
            and hmac.compare_digest((auth.username or "").encode(), user.encode())
            and hmac.compare_digest((auth.password or "").encode(), password.encode())
        )
        if not ok:
            log.warning("401 %s %s: missing or wrong basic auth", request.method, request.path)
            resp = jsonify(error="authentication required (HTTP basic auth)")
            resp.status_code = 401
            resp.headers["WWW-Authenticate"] = 'Basic realm="labelloop"'
            return resp
    if settings.operator_token and request.path.startswith(OPERATOR_PREFIXES) and not services.is_operator(
            request.headers):
        log.warning("401 %s %s: missing or wrong operator token", request.method, request.path)
        return jsonify(error=f"operator route: send the operator token in the {OPERATOR_HEADER} header",
                       field=OPERATOR_HEADER), 401
    return None


def _short(text: str, limit: int = 2000) -> str:
    """Messages can quote client data (an unknown label, a long id): keep logs and answers bounded."""
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} characters cut]"


def _named_field_error(status: int):  # type: ignore[no-untyped-def]
    def handle(exc: BadInput | Forbidden | NotReady) -> tuple[Response, int]:
        log.warning("%d %s %s: %s", status, request.method, request.path[:200], _short(str(exc), 500))
        return jsonify(error=_short(str(exc)), field=exc.field), status

    return handle


def _unsupported(exc: UnsupportedConfig) -> tuple[Response, int]:
    log.warning("422 %s %s: %s", request.method, request.path[:200], _short(str(exc), 500))
    return jsonify(error=_short(str(exc)), field="schema"), 422


#: What an HTTP error of Flask's own (no route, wrong method, body too large) is about.
HTTP_ERROR_FIELDS = {404: "path", 405: "method", 413: "body", 415: "content_type"}


def _http_error(exc: HTTPException) -> tuple[Response, int]:
    """Flask's own 4xx (unknown path, wrong method, body over LABELLOOP_MAX_BODY_BYTES) as our JSON shape."""
    status = exc.code or 500
    if status == 413:
        limit = _services().settings.max_body_bytes
        message = (f"request body is over {limit} bytes (LABELLOOP_MAX_BODY_BYTES): send a smaller one "
                   "(for /predict, fewer tasks per request)")
    else:
        message = f"{exc.name}: {exc.description}"
    if status >= 500:
        return _unexpected(exc)
    log.warning("%d %s %s: %s", status, request.method, request.path[:200], message)
    return jsonify(error=message, field=HTTP_ERROR_FIELDS.get(status, "request")), status


def _unexpected(exc: Exception) -> tuple[Response, int]:
    """Last resort: a bug is logged with its traceback and a request id the answer repeats; never a 4xx."""
    if isinstance(exc, HTTPException) and exc.code and exc.code < 500:
        return _http_error(exc)
    request_id = uuid.uuid4().hex[:12]
    log.error("500 %s %s [request %s]", request.method, request.path[:200], request_id, exc_info=exc)
    return jsonify(error=f"internal error (request {request_id}); the server log has the details",
                   request_id=request_id), 500


def _log(resp: Response) -> Response:
    if request.path != "/health":
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.debug("%s %s -> %s in %.1f ms", request.method, request.path, resp.status_code, elapsed)
    return resp

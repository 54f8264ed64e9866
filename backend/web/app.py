"""The HTTP app factory: settings -> services -> auth and error handlers -> two blueprints.

Label Studio's protocol lives in web/protocol.py, the operators' routes in web/history.py; the
use cases they call are in backend/service/.
"""

from __future__ import annotations

import hmac
import logging
import time

from flask import Flask, Response, g, jsonify, request

from backend.config import Settings
from backend.labelstudio.labelconfig import UnsupportedConfig
from backend.labelstudio.tasks import BadInput
from backend.service.access import Forbidden
from backend.service.container import OPERATOR_HEADER, Services
from backend.store import Store
from backend.web import history, protocol

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
    services = Services(settings, store)
    if start_jobs:
        services.jobs.start_ticker(settings.tick_seconds)

    app = Flask("labelloop")
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["labelloop"] = services
    app.before_request(_authenticate)
    app.after_request(_log)
    for exc_type, status in ((BadInput, 400), (Forbidden, 403)):
        app.register_error_handler(exc_type, _named_field_error(status))
    app.register_error_handler(UnsupportedConfig, _unsupported)
    app.register_blueprint(protocol.bp)
    app.register_blueprint(history.bp)
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


def _named_field_error(status: int):  # type: ignore[no-untyped-def]
    def handle(exc: BadInput | Forbidden) -> tuple[Response, int]:
        log.warning("%d %s %s: %s", status, request.method, request.path, exc)
        return jsonify(error=str(exc), field=exc.field), status

    return handle


def _unsupported(exc: UnsupportedConfig) -> tuple[Response, int]:
    log.warning("422 %s %s: %s", request.method, request.path, exc)
    return jsonify(error=str(exc), field="schema"), 422


def _log(resp: Response) -> Response:
    if request.path != "/health":
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        log.debug("%s %s -> %s in %.1f ms", request.method, request.path, resp.status_code, elapsed)
    return resp

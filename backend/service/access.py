"""Who may change what: the rules behind `/setup` and the operator routes.

Threat model (also in the README): anyone who reaches the port can call every route unless basic auth
is set. Label Studio's own calls carry no operator credential, only the project creator's token in
`/setup`. So:

- a project's Label Studio *origin* (scheme://host:port) is fixed once set, by the environment or by
  the first `/setup` that brings a token (trust on first use); re-pointing it needs the operator token,
  so the stored token is never sent to another host;
- a different token for the same origin is stored only once Label Studio accepts it for that project;
- an existing project's policy or label config changes only when the request proves it speaks for the
  project: it carries the stored token, a token Label Studio accepts, or the operator token;
- new project rows are capped (``max_projects``), so unknown ids cannot grow the database without bound.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from backend.errors import Forbidden
from backend.store.schema import Project

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str | None) -> str | None:
    """``scheme://host:port`` in lower case with the default port filled in; None for no URL."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "http").lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError as exc:  # a port that is not a number
        raise Forbidden(f"'{url}' is not a usable Label Studio URL: {exc}", field="hostname") from exc
    host = (parts.hostname or "").lower()
    if not host:
        return None
    return f"{scheme}://{host}:{port}"


def same_secret(given: str | None, stored: str | None) -> bool:
    return bool(given and stored and hmac.compare_digest(given.encode(), stored.encode()))


@dataclass(frozen=True)
class SetupRequest:
    """What one `/setup` asks for, already parsed."""

    project_id: int
    hostname: str | None
    token: str | None
    changes_policy: bool
    changes_schema: bool
    operator: bool


@dataclass(frozen=True)
class Connection:
    """What to store for the project's Label Studio connection (None: keep what is stored)."""

    url: str | None
    token: str | None


# verify(url, token, project_id) -> whether that Label Studio accepts the token for the project.
Verifier = Callable[[str, str, int], bool]


def authorize_setup(req: SetupRequest, project: Project | None, *, env_url: str | None,
                    verify: Verifier) -> Connection:
    """Decide a `/setup`: the connection to store, or :class:`Forbidden` naming the field refused."""
    if env_url is not None:
        # The environment names Label Studio: /setup's hostname and token are never used to connect.
        if project is not None and (req.changes_policy or req.changes_schema):
            proven = req.operator or bool(req.token and verify(env_url, req.token, req.project_id))
            _require(proven, req)
        return Connection(None, None)
    if project is None or not project.label_studio_url:
        # First sight (or a row made by /predict or a webhook before any token): trust on first use.
        if req.hostname and req.token:
            return Connection(req.hostname, req.token)
        return Connection(None, None)
    stored_origin = origin(project.label_studio_url)
    asked_origin = origin(req.hostname) if req.hostname else stored_origin
    if asked_origin != stored_origin:
        if not req.operator:
            raise Forbidden(
                f"project {req.project_id} is connected to {stored_origin}; re-pointing it to {asked_origin} "
                "needs the operator token (LABELLOOP_OPERATOR_TOKEN)", field="hostname")
        if not req.token:
            raise Forbidden("re-pointing a project needs the new Label Studio's token in 'access_token' "
                            "(the stored one is never sent to another host)", field="access_token")
        return Connection(req.hostname, req.token)
    token_matches = same_secret(req.token, project.label_studio_token)
    if req.token and not token_matches:
        if not (req.operator or verify(project.label_studio_url, req.token, req.project_id)):
            raise Forbidden(f"Label Studio at {stored_origin} does not accept this 'access_token' for project "
                            f"{req.project_id}; the stored token is kept", field="access_token")
        return Connection(None, req.token)
    if req.changes_policy or req.changes_schema:
        _require(token_matches or req.operator, req)
    return Connection(None, None)


def _require(proven: bool, req: SetupRequest) -> None:
    if not proven:
        field, what = ("extra_params", "policy") if req.changes_policy else ("schema", "label config")
        raise Forbidden(f"changing project {req.project_id}'s {what} needs the project's Label Studio token "
                        "in 'access_token' or the operator token", field=field)

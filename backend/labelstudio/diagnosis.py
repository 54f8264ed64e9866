"""Why talking to Label Studio failed, in words a user can act on: what happened, and the fix.

A wrong key, an address this machine cannot reach or a refused model version are not labelloop bugs
but settings the user must change; they used to surface only as a traceback in the server log (a round
"failed: 401 Unauthorized"). :func:`diagnose` names the setting to change. The same diagnosis is
recorded on a failed round, answered to Label Studio's own ``/setup`` (so its connection dialog and its
model card show it), and printed by ``labelloop doctor``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Kinds of problem a user must fix (a round failing for one of these is not retried by itself).
KINDS = ("auth", "not_found", "unreachable", "refused")


@dataclass(frozen=True)
class Problem:
    """One user-fixable reason labelloop cannot work with a Label Studio."""

    kind: str
    message: str
    fix: str

    def text(self) -> str:
        return f"{self.message}. Fix: {self.fix}"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Any) -> Problem | None:
        if not isinstance(value, dict) or value.get("kind") not in KINDS:
            return None
        return cls(str(value["kind"]), str(value.get("message") or ""), str(value.get("fix") or ""))


class ProblemError(RuntimeError):
    """An error whose cause a user must fix; ``problem`` says what and how."""

    def __init__(self, message: str, problem: Problem) -> None:
        super().__init__(message)
        self.problem = problem


def status_code(exc: BaseException) -> int | None:
    """The HTTP status Label Studio answered, from the SDK's, httpx's or requests' exception (or a cause)."""
    for err in _chain(exc):
        code = getattr(err, "status_code", None)
        if isinstance(code, int):
            return code
        response = getattr(err, "response", None)
        code = getattr(response, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def unreachable(exc: BaseException) -> bool:
    """A connection that never got an answer (refused, unresolvable, timed out while connecting)."""
    import httpx
    import requests

    return any(isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout, requests.ConnectionError,
                                ConnectionError)) for err in _chain(exc))


def diagnose(exc: BaseException, url: str, key_source: str) -> Problem | None:
    """The user-fixable problem behind ``exc`` raised while talking to the Label Studio at ``url``, else None.

    ``key_source`` says where the key came from (``LABEL_STUDIO_API_KEY``, or the project creator's token
    Label Studio sends to ``/setup``), so the fix names the right setting.
    """
    code = status_code(exc)
    if code in (401, 403):
        return Problem("auth", f"Label Studio at {url} refused labelloop's API key ({code} from {key_source})",
                       f"set {key_source} to a token Label Studio accepts: in Label Studio, Account & Settings "
                       "shows the legacy token or creates a personal access token (legacy tokens must be enabled "
                       "in Organization settings), then restart labelloop")
    if code == 404:
        return Problem("not_found", f"Label Studio at {url} has no such project ({code})",
                       "point LABEL_STUDIO_URL at the Label Studio the project lives in (a second Label Studio on "
                       "another port has other project ids)")
    if code is None and unreachable(exc):
        return Problem("unreachable", f"labelloop cannot reach Label Studio at {url}: {_reason(exc)}",
                       "set LABEL_STUDIO_URL to an address this backend's machine can reach (not localhost when "
                       "Label Studio runs in another container or on another machine), then restart labelloop")
    return None


def refused_version(url: str, version: str, exc: BaseException) -> Problem:
    """Label Studio refused to serve a version labelloop published (the queue keeps its old order)."""
    return Problem("refused", f"Label Studio at {url} refused model version {version}: {_reason(exc)}",
                   "check that the project's ML backend is this labelloop and that the API key's user may edit "
                   "the project; then press Start training in Label Studio's model settings")


def _reason(exc: BaseException) -> str:
    deepest = list(_chain(exc))[-1]
    return f"{type(deepest).__name__}: {deepest}"[:300]


def _chain(exc: BaseException) -> list[BaseException]:
    out, seen = [], set()
    err: BaseException | None = exc
    while err is not None and id(err) not in seen:
        out.append(err)
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return out

"""A real Label Studio (1.23.2) on a free loopback port, for integration tests.

The server runs from its own virtual environment (``LABELLOOP_LS_BIN``, default
``~/.cache/labelloop-ls-venv/bin/label-studio``) on SQLite in a fresh data directory. Migrating
an empty database takes 30-45 s, so a migrated template directory is built once under
``~/.cache/labelloop/ls-template-<version>`` and copied for every server (start: a few seconds).

Usage::

    with LabelStudioServer() as ls:
        client = ls.client()          # label_studio_sdk.LabelStudio (2.x client)
        requests.get(f"{ls.url}/api/projects", headers=ls.headers)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from tests.support.proc import free_port, port_in_use, stop_process_group, tail, wait_for_http

LS_VERSION = "1.23.2"
DEFAULT_LS_BIN = "~/.cache/labelloop-ls-venv/bin/label-studio"
DEFAULT_USERNAME = "admin@example.com"
TEMPLATE_MARKER = ".labelloop-template-ok"

# Label Studio reads each of these as LABEL_STUDIO_<NAME>, HEARTEX_<NAME> and bare <NAME>.
_LS_AMBIGUOUS_NAMES = ("HOST", "PORT", "USERNAME", "PASSWORD", "USER_TOKEN")


def ls_binary() -> Path:
    """Path of the ``label-studio`` executable (``LABELLOOP_LS_BIN`` or the default venv)."""
    return Path(os.environ.get("LABELLOOP_LS_BIN") or DEFAULT_LS_BIN).expanduser()


def ls_binary_problem(binary: Path | None = None) -> str | None:
    """Why the Label Studio binary cannot be used, or None if it looks usable."""
    binary = binary or ls_binary()
    if not binary.exists():
        return (
            f"Label Studio binary not found at {binary} "
            f"(install label-studio=={LS_VERSION} in its own venv, or set LABELLOOP_LS_BIN; "
            "`bash .ci/run` does both)"
        )
    if not os.access(binary, os.X_OK):
        return f"Label Studio binary {binary} is not executable"
    return None


def cache_root() -> Path:
    return Path(os.environ.get("LABELLOOP_CACHE_DIR") or "~/.cache/labelloop").expanduser()


def installed_ls_version(binary: Path | None = None) -> str:
    """Version of the label-studio package next to ``binary`` (read from its dist-info)."""
    binary = binary or ls_binary()
    venv = binary.resolve().parent.parent if binary.exists() else binary.parent.parent
    for dist in sorted(venv.glob("lib/python*/site-packages/label_studio-*.dist-info")):
        return dist.name[len("label_studio-") : -len(".dist-info")]
    return LS_VERSION


def ls_environment(data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the Label Studio process gets (the recipe in docs/label-studio-protocol.md)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LABEL_STUDIO_", "HEARTEX_")) and k not in _LS_AMBIGUOUS_NAMES
    }
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            # Both, or a backend on 127.0.0.1 is refused with 403.
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            "COLLECT_ANALYTICS": "false",
            "LATEST_VERSION_CHECK": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if extra:
        env.update(extra)
    return env


def ensure_template(binary: Path | None = None, *, timeout: float = 300.0) -> Path:
    """Return a migrated Label Studio data directory to copy from, building it once if needed.

    Built in a temporary directory next to the final one and renamed atomically; a file lock
    keeps concurrent test sessions from building it twice.
    """
    binary = binary or ls_binary()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"ls-template-{installed_ls_version(binary)}"
    if (final / TEMPLATE_MARKER).exists():
        return final
    with open(root / ".ls-template.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if (final / TEMPLATE_MARKER).exists():
                return final
            if final.exists():  # half-made by someone else's crash: rebuild
                shutil.rmtree(final, ignore_errors=True)
            build = Path(tempfile.mkdtemp(prefix=".ls-template-build-", dir=root))
            log_path = root / "ls-template-build.log"
            started = time.monotonic()
            try:
                with open(log_path, "wb") as log:
                    proc = subprocess.run(
                        [str(binary), "version"],
                        env=ls_environment(build),
                        cwd=build,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        timeout=timeout,
                        check=False,
                    )
                if proc.returncode != 0 or not (build / "label_studio.sqlite3").exists():
                    raise RuntimeError(
                        f"building the Label Studio template failed (exit {proc.returncode}); "
                        f"log {log_path}:\n{tail(log_path)}"
                    )
                (build / TEMPLATE_MARKER).write_text(
                    f"built by tests/support/labelstudio.py in {time.monotonic() - started:.1f} s\n"
                )
                os.rename(build, final)
            except BaseException:
                shutil.rmtree(build, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return final


class LabelStudioStartError(RuntimeError):
    pass


class LabelStudioServer:
    """One Label Studio process on 127.0.0.1 with an admin user and a 40-char legacy API token.

    Attributes: ``url``, ``port``, ``token``, ``username``, ``password``, ``data_dir``,
    ``log_path``, ``startup_seconds`` (start() until /health answered), ``template_seconds``
    (time spent building the template in this start, 0.0 when it was cached).
    """

    def __init__(
        self,
        binary: Path | str | None = None,
        *,
        port: int | None = None,
        username: str = DEFAULT_USERNAME,
        password: str | None = None,
        token: str | None = None,
        extra_env: dict[str, str] | None = None,
        startup_timeout: float = 120.0,
        use_template: bool = True,
        keep_data: bool | None = None,
    ) -> None:
        self.binary = Path(binary).expanduser() if binary else ls_binary()
        self.requested_port = port
        self.port: int | None = None
        self.username = username
        self.password = password or secrets.token_urlsafe(12)
        self.token = token or secrets.token_hex(20)  # 40 hex chars, like a real legacy token
        if len(self.token) != 40:
            raise ValueError("the Label Studio user token must be 40 characters")
        self.extra_env = dict(extra_env or {})
        self.startup_timeout = startup_timeout
        self.use_template = use_template
        if keep_data is None:
            keep_data = os.environ.get("LABELLOOP_KEEP_LS_DATA") == "1"
        self.keep_data = keep_data
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None
        self.template_seconds = 0.0
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    # ------------------------------------------------------------------ properties
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("Label Studio is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        """Headers for plain ``requests`` calls to the Label Studio API."""
        return {"Authorization": f"Token {self.token}"}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def client(self):
        """A ``label_studio_sdk.LabelStudio`` (2.x) client logged in with the legacy token."""
        from label_studio_sdk import LabelStudio

        return LabelStudio(base_url=self.url, api_key=self.token)

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines) if self.log_path else ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LabelStudioServer:
        if self._proc is not None:
            raise RuntimeError("already started")
        problem = ls_binary_problem(self.binary)
        if problem:
            raise LabelStudioStartError(problem)
        t0 = time.monotonic()
        template = None
        if self.use_template:
            tpl_dir = cache_root() / f"ls-template-{installed_ls_version(self.binary)}"
            cached = (tpl_dir / TEMPLATE_MARKER).exists()
            template = ensure_template(self.binary)
            if not cached:
                self.template_seconds = time.monotonic() - t0
        # A port can be taken between choosing and binding; Label Studio would then silently move
        # to the next one, which start_once() detects. Try a few fresh ports before giving up.
        attempts = 1 if self.requested_port else 3
        last_error: Exception | None = None
        for _ in range(attempts):
            try:
                self._start_once(template, self.requested_port or free_port())
                self.startup_seconds = time.monotonic() - t0
                return self
            except _PortTaken as exc:
                last_error = exc
                self.stop()
        raise LabelStudioStartError(str(last_error))

    def _start_once(self, template: Path | None, port: int) -> None:
        if port_in_use(port):
            raise _PortTaken(f"port {port} is already in use")
        self.data_dir = Path(tempfile.mkdtemp(prefix="labelloop-ls-"))
        if template is not None:
            shutil.copytree(template, self.data_dir, dirs_exist_ok=True)
        self.log_path = self.data_dir / "label-studio.log"
        self.port = port
        cmd = [
            str(self.binary),
            "start",
            "--no-browser",
            "--internal-host",
            "127.0.0.1",
            "--port",
            str(port),
            "--username",
            self.username,
            # One argument with "=": a generated password starting with "-" (token_urlsafe's alphabet has it,
            # 1 start in 64) would otherwise read as an option, and Label Studio would refuse to start.
            f"--password={self.password}",
            "--user-token",
            self.token,
            "--enable-legacy-api-token",
        ]
        self._log_file = open(self.log_path, "wb")  # closed in stop()
        self._proc = subprocess.Popen(
            cmd,
            env=ls_environment(self.data_dir, self.extra_env),
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_for_http(f"{self.url}/health", timeout=self.startup_timeout, proc=self._proc)
        except (RuntimeError, TimeoutError) as exc:
            log = self.log_tail()
            self.stop()
            raise LabelStudioStartError(
                f"Label Studio did not start: {exc}\n--- log tail ---\n{log}"
            ) from exc
        # Verify that what answers on our port is *our* server (it moves to the next port when
        # the requested one is busy, and then /health on our port would be someone else).
        log = self.log_text()
        if f"Port {port} is in use" in log:
            raise _PortTaken(f"Label Studio found port {port} busy and moved on")
        who = requests.get(f"{self.url}/api/current-user/whoami", headers=self.headers, timeout=10)
        if who.status_code != 200 or who.json().get("email") != self.username:
            raise _PortTaken(
                f"the server on port {port} is not ours: whoami -> HTTP {who.status_code} {who.text[:200]!r}"
            )

    def stop(self) -> None:
        stop_process_group(self._proc, grace=10.0)
        self._proc = None
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None
        if self.data_dir is not None and not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def __enter__(self) -> LabelStudioServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class _PortTaken(RuntimeError):
    pass

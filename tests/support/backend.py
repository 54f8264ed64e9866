"""The labelloop server (gunicorn, via ``python -m backend.cli serve``) as a subprocess.

Written against the CLI contract only; nothing from ``backend`` is imported here::

    python -m backend.cli serve --host 127.0.0.1 --port PORT --workers 2 --threads 4

configured through the environment: LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY, DATABASE_URL,
MODEL_DIR, plus anything extra the caller passes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.proc import free_port, stop_process_group, tail, wait_for_http

REPO_ROOT = Path(__file__).resolve().parents[2]


class BackendStartError(RuntimeError):
    pass


class BackendServer:
    """One labelloop server process group on 127.0.0.1.

    Attributes: ``url``, ``port``, ``env`` (the variables given, merged over os.environ for the
    process), ``log_path``, ``startup_seconds``, ``returncode`` (after stop()).
    """

    def __init__(
        self,
        env: dict[str, str | None],
        *,
        port: int | None = None,
        log_path: Path | str | None = None,
        workers: int = 2,
        threads: int = 4,
        startup_timeout: float = 60.0,
        cwd: Path | str = REPO_ROOT,
        python: str = sys.executable,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        # A value of None removes that variable from the inherited environment.
        self.env = {k: (None if v is None else str(v)) for k, v in env.items()}
        self.port = port or free_port()
        if log_path is None:
            log_path = Path(tempfile.mkdtemp(prefix="labelloop-backend-")) / "backend.log"
        self.log_path = Path(log_path)
        self.workers = workers
        self.threads = threads
        self.startup_timeout = startup_timeout
        self.cwd = Path(cwd)
        self.python = python
        self.extra_args = tuple(extra_args)
        self.startup_seconds: float | None = None
        self.returncode: int | None = None
        self._proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def command(self) -> list[str]:
        return [
            self.python,
            "-m",
            "backend.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            *self.extra_args,
        ]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return tail(self.log_path, lines)

    def start(self) -> BackendServer:
        if self._proc is not None:
            raise RuntimeError("already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        for key, value in self.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        env.setdefault("PYTHONUNBUFFERED", "1")
        t0 = time.monotonic()
        self._log_file = open(self.log_path, "ab")  # closed in stop()
        self._proc = subprocess.Popen(
            self.command,
            env=env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # Every route, /health included, needs basic auth when the server is configured with it.
            user, password = self.env.get("BASIC_AUTH_USER"), self.env.get("BASIC_AUTH_PASS")
            auth = (user, password) if user and password else None
            wait_for_http(f"{self.url}/health", timeout=self.startup_timeout, proc=self._proc, auth=auth)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise BackendStartError(
                f"labelloop server did not come up on {self.url}: {exc}\n"
                f"command: {' '.join(self.command)}\n--- log tail ({self.log_path}) ---\n{self.log_tail()}"
            ) from exc
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``grace`` seconds."""
        proc = self._proc
        stop_process_group(proc, grace=grace)
        if proc is not None:
            self.returncode = proc.returncode
        self._proc = None
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None

    def __enter__(self) -> BackendServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

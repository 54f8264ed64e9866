"""Small process and HTTP helpers shared by the server wrappers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def tail(path: Path | str, lines: int = 80) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop_process_group(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the process group that ``proc`` leads, then SIGKILL it after ``grace`` seconds.

    ``proc`` must have been started with ``start_new_session=True`` (so its pid is its pgid).
    """
    if proc is None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if pgid is not None and pgid == proc.pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    elif proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    # Children may outlive the leader (gunicorn workers, runserver threads): kill what is left.
    if pgid is not None and pgid == proc.pid:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def wait_for_http(
    url: str,
    *,
    timeout: float,
    proc: subprocess.Popen | None = None,
    expect_status: int = 200,
    interval: float = 0.25,
    auth: tuple[str, str] | None = None,
) -> requests.Response:
    """Poll GET ``url`` until it answers ``expect_status``.

    Raises ``RuntimeError`` if ``proc`` exits first and ``TimeoutError`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with code {proc.returncode} before {url} came up")
        try:
            resp = requests.get(url, timeout=2, auth=auth)
            if resp.status_code == expect_status:
                return resp
            last = f"HTTP {resp.status_code}: {resp.text[:200]!r}"
        except requests.RequestException as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer {expect_status} within {timeout:.0f} s (last: {last})")

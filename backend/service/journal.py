"""A local journal for webhooks that arrive while the database is down.

Label Studio sends each webhook once, with a 1 s timeout, and never retries: a webhook answered with
an error is lost. So when the database cannot be reached, the parsed webhook is appended to a file in
MODEL_DIR (one JSON object per line, flushed and fsynced before the answer) and answered 202; every
process's ticker replays the journal once the database answers again, through the same code a live
webhook takes. A replay claims a file by renaming it, so two processes never replay the same lines;
lines that fail again (the database went away mid-replay) are written back for the next tick.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Another process's journal file is replayed only after it has not been written for this long.
QUIET_SECONDS = 5.0


class WebhookJournal:
    """Append-only files of webhook bodies under ``directory``; see the module docstring."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._name = f"webhooks-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self._own = {self._name}  # files this instance wrote: claimed at once, under the lock

    def append(self, body: dict[str, Any]) -> None:
        """Keep one webhook durably (fsynced) before it is acknowledged."""
        line = json.dumps(body, separators=(",", ":"), allow_nan=False) + "\n"
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.directory / self._name, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def pending(self) -> int:
        """How many journaled webhooks wait for the database (all files in the directory)."""
        return sum(len(self._lines(path)) for path in self._files(".jsonl"))

    def replay(self, handle: Callable[[dict[str, Any]], None], is_outage: Callable[[Exception], bool]) -> int:
        """Hand every journaled webhook to ``handle`` (oldest first); returns how many went through.

        A webhook whose handling fails for another reason than an outage was handled as far as it
        goes (it is recorded with its reason, like a live one) and is not retried.
        """
        done = 0
        for path in self._files(".jsonl"):
            claimed = self._claim(path)
            if claimed is None:
                continue
            lines = self._lines(claimed)
            for i, line in enumerate(lines):
                try:
                    handle(json.loads(line))
                except Exception as exc:
                    if is_outage(exc):
                        self._put_back(lines[i:])
                        claimed.unlink()
                        log.warning("database still unavailable: %d webhook(s) stay journaled", len(lines) - i)
                        return done
                    log.warning("a journaled webhook was refused on replay: %s", exc)
                done += 1
            claimed.unlink()
        if done:
            log.info("replayed %d journaled webhook(s)", done)
        return done

    def _claim(self, path: Path) -> Path | None:
        """Rename ``path`` to a name only this call knows (one process wins it); None if not now.

        Our own file is renamed under the append lock, so no append of ours is in flight; another
        process's file only once it has been quiet for ``QUIET_SECONDS`` (its owner appends in
        milliseconds, and after a rename it simply starts a new file).
        """
        claimed = path.with_suffix(f".replaying-{uuid.uuid4().hex[:8]}")
        try:
            if path.name in self._own:
                with self._lock:
                    path.rename(claimed)
                return claimed
            if time.time() - path.stat().st_mtime < QUIET_SECONDS:
                return None
            path.rename(claimed)
        except FileNotFoundError:  # another process claimed it first
            return None
        return claimed

    def _put_back(self, lines: list[str]) -> None:
        path = self.directory / f"webhooks-retry-{uuid.uuid4().hex[:8]}.jsonl"
        self._own.add(path.name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(line if line.endswith("\n") else line + "\n" for line in lines)
            fh.flush()
            os.fsync(fh.fileno())

    def _files(self, suffix: str) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted((p for p in self.directory.iterdir() if p.name.endswith(suffix)), key=lambda p: p.stat().st_mtime)

    @staticmethod
    def _lines(path: Path) -> list[str]:
        try:
            return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except FileNotFoundError:
            return []

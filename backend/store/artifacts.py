"""Fitted models on disk and in memory.

The database holds the authoritative copy of each artefact (see schema.Artifact); MODEL_DIR is a
local cache written by temp file + rename, so a reader never sees half a file, and every process
keeps the few models it serves in memory, keyed by (project, version), so /predict never reloads.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backend.labelstudio.families import import_model_modules
from backend.memory import release_free_heap
from backend.store import Store
from model import persistence


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class ModelStore:
    def __init__(self, store: Store, model_dir: Path, cache_size: int = 4) -> None:
        self.store = store
        self.model_dir = Path(model_dir)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, str], Any] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, project_id: int, version: str) -> Path:
        """The local copy. ``.model``: the bytes are in either format persistence reads (it tells them
        apart by content); a copy cached under the old ``.skops`` name is just fetched again from the database."""
        return self.model_dir / "projects" / str(project_id) / f"{version}.model"

    def save(self, project_id: int, version: str, estimator: Any) -> tuple[bytes, str]:
        """Serialise and write the local copy; returns (bytes, file name) for the database record."""
        data = persistence.dumps(estimator)
        path = self.path(project_id, version)
        write_atomic(path, data)
        return data, path.name

    def load(self, project_id: int, version: str, iteration_id: int, trusted: Sequence[str] = ()) -> Any:
        """The estimator of a published version: memory, else local file (checked), else database.

        ``trusted``: class names a bring-your-own model's file may hold (see model.persistence.loads).
        """
        key = (project_id, version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        import_model_modules()  # model files resolve only classes of imported modules
        estimator = persistence.loads(self._read(project_id, version, iteration_id), trusted)
        with self._lock:
            self._cache[key] = estimator
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        release_free_heap()  # the load's temporaries (file bytes, manifest): 38 MB on a BALD model
        return estimator

    def discard(self, project_id: int, version: str) -> None:
        """Forget a version that will never serve (a failed round): its local file and its cache entry."""
        with self._lock:
            self._cache.pop((project_id, version), None)
        self.path(project_id, version).unlink(missing_ok=True)

    def _read(self, project_id: int, version: str, iteration_id: int) -> bytes:
        missing = f"no artefact stored for project {project_id} version {version}"
        digest = self.store.artifact_digest(iteration_id)
        if digest is None:
            raise FileNotFoundError(missing)
        path = self.path(project_id, version)
        if path.exists():
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == digest:
                return data
        # Missing or stale local copy (another machine trained it): refresh the cache from the database.
        record = self.store.artifact(iteration_id)
        if record is None:
            raise FileNotFoundError(missing)
        write_atomic(path, record.data)
        return record.data

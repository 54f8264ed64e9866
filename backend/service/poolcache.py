"""A serving worker's copy of what each project's serving round said about its pool tasks.

`/predict` answers a pool task with exactly what its round pushed (prediction and queue score). Read
from SQL per request, that lookup was a quarter of a 1,000-task request; the rows of one round change
never, so each worker reads a round's rows once and answers from memory after that.

Keyed by iteration id, and the caller names the serving iteration on every request: a worker can
never answer with another version's scores, and a new version is read the first time it is asked for.
Only one round per project is held (the newest asked for), so memory stays at one pool's rows per
project (about 150 bytes a task; 1.5 MB for a 10,000-task pool).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

Rows = dict[int, tuple[Any, float, float | None]]  # task id -> (prediction, queue score, confidence)


class PoolAnswers:
    """``project -> (iteration id, task id -> (prediction, score))``, read through ``load(iteration_id)``."""

    def __init__(self, load: Callable[[int], Rows]) -> None:
        self._load = load
        self._held: dict[int, tuple[int, Rows]] = {}
        self._lock = threading.Lock()

    def rows(self, project_id: int, iteration_id: int) -> Rows:
        """Every pool task ``iteration_id`` scored, with what it said; read once per worker and round."""
        held = self._held.get(project_id)
        if held is not None and held[0] == iteration_id:
            return held[1]
        with self._lock:  # one read per round, however many threads ask at once
            held = self._held.get(project_id)
            if held is None or held[0] != iteration_id:
                held = (iteration_id, self._load(iteration_id))
                self._held[project_id] = held
            return held[1]

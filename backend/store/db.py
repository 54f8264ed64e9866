"""The SQL store: the one place that reads and writes the history and the shared serving state.

Concurrency model (several gunicorn workers, several machines, one database):
- a trigger inserts at most one *queued* iteration per project; later triggers fold into it;
- a worker runs a queued iteration only while it holds the project's lease (an UPDATE that succeeds
  for one caller), renewed by heartbeat; a crashed holder's lease expires and its run is marked failed;
- the served version switches in the same transaction that marks the iteration succeeded.
"""

from __future__ import annotations

from backend.store.base import MIGRATIONS, Database, as_utc, make_engine
from backend.store.iterations import IterationStore
from backend.store.jobs import JobStore
from backend.store.projects import ProjectStore, ServingState
from backend.store.taskcache import TaskCacheStore

__all__ = ["MIGRATIONS", "Database", "ServingState", "Store", "as_utc", "make_engine"]


class Store(ProjectStore, IterationStore, JobStore, TaskCacheStore):
    """The whole store: projects and events, training rounds and leases, background jobs, cached task
    inputs, on one engine."""

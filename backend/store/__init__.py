"""SQL: the shared state every worker and trainer reads (schema, history, leases, jobs, model files)."""

from backend.store.db import ServingState, Store, as_utc, make_engine

__all__ = ["ServingState", "Store", "as_utc", "make_engine"]

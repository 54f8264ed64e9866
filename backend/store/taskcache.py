"""Cached task inputs: what Label Studio last listed for each task, so a round re-reads only changes.

See :class:`backend.store.schema.CachedTask`. The cache only ever saves Label Studio reads: anything
in doubt (a count that does not add up, a push that failed) drops it and the next round lists every
task again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select

from backend.store.base import Database
from backend.store.schema import CachedTask

#: Ids per DELETE ... IN (...) statement (well under SQLite's bound-parameter limit).
ID_CHUNK = 500


class TaskCacheStore(Database):
    def cached_tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every cached task of the project as ``{"id", "data"}``, in id order."""
        with self.session() as s:
            rows = s.execute(
                select(CachedTask.task_id, CachedTask.data).where(CachedTask.project_id == project_id)
                .order_by(CachedTask.task_id)
            ).all()
        return [{"id": int(r.task_id), "data": r.data} for r in rows]

    def cache_high_water(self, project_id: int) -> str | None:
        """The newest Label Studio ``updated_at`` among the cached tasks (None: nothing cached)."""
        with self.session() as s:
            return s.scalar(select(func.max(CachedTask.updated_at)).where(CachedTask.project_id == project_id))

    def cache_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]], *, replace: bool = False) -> None:
        """Insert or refresh ``tasks`` (Label Studio task objects); ``replace`` drops every other row first."""
        rows = [{"project_id": project_id, "task_id": int(t["id"]), "data": t.get("data"),
                 "updated_at": str(t.get("updated_at") or "")[:40]} for t in tasks]
        with self.session() as s:
            if replace:
                s.execute(delete(CachedTask).where(CachedTask.project_id == project_id))
            else:
                ids = [r["task_id"] for r in rows]
                for start in range(0, len(ids), ID_CHUNK):
                    s.execute(delete(CachedTask).where(CachedTask.project_id == project_id,
                                                       CachedTask.task_id.in_(ids[start : start + ID_CHUNK])))
            if rows:
                s.execute(insert(CachedTask), rows)

    def drop_task_cache(self, project_id: int) -> None:
        """Forget the project's cached tasks: the next round lists them all from Label Studio."""
        with self.session() as s:
            s.execute(delete(CachedTask).where(CachedTask.project_id == project_id))

"""Reading a project's tasks for a round: the labelled ones in full, the rest from a cache of inputs.

Label Studio spends 2-4 ms of CPU per task on its task list, whatever we ask for, so listing a
12,000-task project every round cost 20-45 s. Unlabelled task data rarely changes, so a round reads:

1. the labelled tasks with their annotations, from the project's JSON export (a third of the cost);
   training needs only these, so the round fits while the rest is read (:class:`PendingRead`);
2. the tasks Label Studio updated since the newest stamp in the cache (new and edited tasks);
3. the project's task count, to check the cache: when cached + new does not match it (tasks deleted,
   or an import committed with stamps older than our last read), every task is listed again.

The pool is then every cached task that the export does not show as labelled. The first round of a
project (or any round after :meth:`Store.drop_task_cache`) lists everything once.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from backend.labelstudio.gateway import LabelStudioGateway
from backend.store import Store

log = logging.getLogger(__name__)

#: Re-list tasks stamped this long before the cache's newest stamp: an edit that committed just after
#: a task we already read is still caught. (A long import that commits late changes the task count,
#: which lists everything again.) Kept short: tasks imported in one burst share their stamps.
STAMP_MARGIN = timedelta(seconds=5)


@dataclass
class TaskRead:
    """The tasks of one round's read, and how they were read (recorded in the round's history)."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    mode: str = "full"  # "full": every task listed; "incremental": the cache plus what changed
    listed: int = 0  # task objects Label Studio listed this round (without annotations)
    labelled: int = 0  # tasks the export returned (with annotations)

    def stats(self) -> dict[str, Any]:
        return {"mode": self.mode, "listed": self.listed, "labelled": self.labelled, "tasks": len(self.tasks)}


class PendingRead:
    """A round's read in two halves: the labelled tasks at once, every other task listed in a thread.

    Training needs only the labelled tasks; listing the rest is most of a first round's read (12,000
    tasks: ~15 s of Label Studio's time against ~3 s for the export). So the round splits and fits
    while the listing runs, and waits for it (:meth:`finish`) only when it scores the pool.
    """

    def __init__(self, gateway: LabelStudioGateway, store: Store, project_id: int) -> None:
        self.labelled = gateway.labelled_tasks(project_id)
        self.unlabelled: list[dict[str, Any]] = []
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"read-project-{project_id}")
        self._listing: Future[tuple[str, int, list[dict[str, Any]]]] = self._threads.submit(
            _list_tasks, gateway, store, project_id)

    def finish(self) -> TaskRead:
        """Wait for the listing; every task, the labelled ones with their annotations (raises what it raised)."""
        try:
            mode, listed, cached = self._listing.result()
        finally:
            self._threads.shutdown(wait=False)
        labelled_ids = {int(t["id"]) for t in self.labelled}
        # A task labelled after the export is listed here without its label: it joins the pool for this
        # round, and the next round's export brings its label.
        self.unlabelled = [{**t, "annotations": []} for t in cached if t["id"] not in labelled_ids]
        return TaskRead(tasks=[*self.labelled, *self.unlabelled], mode=mode, listed=listed,
                        labelled=len(self.labelled))

    def abandon(self) -> None:
        """The round stopped before it needed the pool: the listing finishes on its own (it only fills the cache)."""
        self._threads.shutdown(wait=False, cancel_futures=True)


def read_tasks(gateway: LabelStudioGateway, store: Store, project_id: int) -> TaskRead:
    """Every task of the project, labelled ones with their annotations (see the module docstring)."""
    return PendingRead(gateway, store, project_id).finish()


def _list_tasks(gateway: LabelStudioGateway, store: Store, project_id: int) -> tuple[str, int, list[dict[str, Any]]]:
    """The read mode, how many task objects Label Studio listed, and every task's {id, data} (cache refreshed)."""
    high_water = store.cache_high_water(project_id)
    mode, listed = ("incremental" if high_water else "full"), 0
    if high_water:
        changed = list(gateway.list_tasks(project_id, updated_after=_before(high_water)))
        store.cache_tasks(project_id, changed)
        listed = len(changed)
        cached = store.cached_tasks(project_id)
        total = gateway.task_count(project_id)
        if total != len(cached):
            log.info("project %s: %d tasks cached, Label Studio has %d: listing them all", project_id,
                     len(cached), total)
            mode = "full"
    if mode == "full":
        everything = list(gateway.list_tasks(project_id))
        store.cache_tasks(project_id, everything, replace=True)
        listed += len(everything)
        cached = [{"id": int(t["id"]), "data": t.get("data")} for t in everything]
    return mode, listed, cached


def _before(stamp: str) -> str:
    """``stamp`` (Label Studio's ISO time) moved back by :data:`STAMP_MARGIN`, in the form its filters take."""
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "1970-01-01T00:00:00.000Z"  # unreadable: list everything changed since ever
    return (moment - STAMP_MARGIN).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

"""A round's read: labelled tasks from the export, the rest from the cache plus what Label Studio changed."""

from __future__ import annotations

from typing import Any

import pytest

from backend.config import ProjectPolicy
from backend.labelstudio.gateway import LabelStudioError
from backend.service.reading import _before, read_tasks
from backend.store import Store


class LabelStudioLike:
    """Answers the three reads as Label Studio does, and counts what it was asked to list."""

    def __init__(self, n: int) -> None:
        self.clock = 0
        self.tasks: dict[int, dict[str, Any]] = {}
        for i in range(1, n + 1):
            self.add(i, f"text {i}")
        self.listed = 0

    def stamp(self) -> str:
        self.clock += 2  # seconds: the 5 s margin re-lists about two tasks
        return f"2026-12-01T10:{self.clock // 60:02d}:{self.clock % 60:02d}.000000Z"

    def add(self, task_id: int, text: str) -> None:
        self.tasks[task_id] = {"id": task_id, "data": {"text": text}, "annotations": [], "updated_at": self.stamp()}

    def label(self, task_id: int, choice: str, cancelled: bool = False) -> None:
        task = self.tasks[task_id]
        task["annotations"] = [{"id": task_id * 10, "was_cancelled": cancelled, "result": [
            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}]}]
        task["updated_at"] = self.stamp()

    def labelled_tasks(self, project_id: int) -> list[dict[str, Any]]:
        return [dict(t) for t in self.tasks.values() if t["annotations"]]

    def task_count(self, project_id: int) -> int:
        return len(self.tasks)

    def list_tasks(self, project_id: int, updated_after: str | None = None):
        for t in self.tasks.values():
            if updated_after is None or t["updated_at"] > updated_after:
                self.listed += 1
                yield {"id": t["id"], "data": t["data"], "updated_at": t["updated_at"]}


@pytest.fixture
def store(database_url: str) -> Store:
    store = Store(database_url)
    store.upgrade()
    store.ensure_project(1, ProjectPolicy(), label_config="")
    return store


def by_id(tasks: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(t["id"]): t for t in tasks}


def test_the_first_read_lists_every_task_and_later_reads_only_the_changed_ones(store: Store) -> None:
    ls = LabelStudioLike(50)
    ls.label(3, "a")
    first = read_tasks(ls, store, 1)
    assert first.mode == "full" and ls.listed == 50
    assert by_id(first.tasks)[3]["annotations"] and not by_id(first.tasks)[4]["annotations"]

    ls.listed = 0
    ls.label(7, "b")
    ls.add(51, "a new task")
    second = read_tasks(ls, store, 1)
    assert second.mode == "incremental"
    assert ls.listed < 10, "only tasks stamped after (or shortly before) the cache's newest stamp are listed"
    tasks = by_id(second.tasks)
    assert set(tasks) == set(range(1, 52))
    assert tasks[7]["annotations"][0]["result"][0]["value"]["choices"] == ["b"]
    assert tasks[51]["data"] == {"text": "a new task"} and tasks[51]["annotations"] == []


def test_edited_task_data_reaches_the_next_round(store: Store) -> None:
    ls = LabelStudioLike(5)
    read_tasks(ls, store, 1)
    ls.tasks[2]["data"] = {"text": "edited"}
    ls.tasks[2]["updated_at"] = ls.stamp()
    assert by_id(read_tasks(ls, store, 1).tasks)[2]["data"] == {"text": "edited"}


def test_a_deleted_task_makes_the_next_read_list_everything_again(store: Store) -> None:
    ls = LabelStudioLike(20)
    read_tasks(ls, store, 1)
    del ls.tasks[5]
    ls.listed = 0
    again = read_tasks(ls, store, 1)
    assert again.mode == "full" and again.listed == ls.listed >= 19  # the changed ones, then all of them
    assert 5 not in by_id(again.tasks) and len(again.tasks) == 19
    assert 5 not in by_id(store.cached_tasks(1))


def test_an_unlabelled_task_comes_back_to_the_pool_and_cancelled_ones_stay_there(store: Store) -> None:
    ls = LabelStudioLike(6)
    ls.label(1, "a")
    ls.label(2, "a", cancelled=True)
    read_tasks(ls, store, 1)
    ls.tasks[1]["annotations"] = []  # the annotation was deleted in Label Studio
    tasks = by_id(read_tasks(ls, store, 1).tasks)
    assert tasks[1]["annotations"] == []
    assert tasks[2]["annotations"][0]["was_cancelled"] is True  # collect() keeps such a task in the pool


def test_a_failed_push_drops_the_cache(store: Store) -> None:
    ls = LabelStudioLike(4)
    read_tasks(ls, store, 1)
    assert store.cache_high_water(1) is not None
    store.drop_task_cache(1)
    assert store.cache_high_water(1) is None and store.cached_tasks(1) == []
    assert read_tasks(ls, store, 1).mode == "full"


def test_a_failing_read_fails_the_read(store: Store) -> None:
    class Down(LabelStudioLike):
        def labelled_tasks(self, project_id: int) -> list[dict[str, Any]]:
            raise LabelStudioError("reading the labelled tasks of project 1 (export) failed: connection refused")

    with pytest.raises(LabelStudioError, match="reading the labelled tasks"):
        read_tasks(Down(3), store, 1)


def test_the_stamp_margin_reads_back_five_seconds_in_label_studio_filter_form() -> None:
    assert _before("2026-12-01T10:01:03.123456Z") == "2026-12-01T10:00:58.123Z"
    assert _before("not a time") == "1970-01-01T00:00:00.000Z"


def test_the_labelled_tasks_come_first_and_the_listing_runs_meanwhile(store: Store) -> None:
    """The round fits on the labelled tasks while Label Studio is still listing the rest."""
    import threading

    from backend.service.reading import PendingRead

    ls = LabelStudioLike(30)
    ls.label(3, "a")
    listing_started, go_on = threading.Event(), threading.Event()
    real_list = ls.list_tasks

    def slow_list(project_id: int, updated_after: str | None = None):
        listing_started.set()
        assert go_on.wait(10)
        yield from real_list(project_id, updated_after)

    ls.list_tasks = slow_list
    pending = PendingRead(ls, store, 1)
    assert [t["id"] for t in pending.labelled] == [3]  # here while the listing still waits
    assert listing_started.wait(10)
    ls.label(4, "b")  # labelled after the export: listed without its label, so in this round's pool
    go_on.set()
    read = pending.finish()
    assert read.mode == "full" and read.labelled == 1 and len(read.tasks) == 30
    assert by_id(read.tasks)[4]["annotations"] == []
    assert {t["id"] for t in pending.unlabelled} == set(range(1, 31)) - {3}


def test_a_listing_that_fails_fails_the_read_when_the_round_needs_it(store: Store) -> None:
    from backend.service.reading import PendingRead

    ls = LabelStudioLike(5)

    def broken(project_id: int, updated_after: str | None = None):
        raise LabelStudioError("reading tasks of project 1 (page 1) failed after 3 attempts: 500")
        yield  # a generator, like the gateway's

    ls.list_tasks = broken
    pending = PendingRead(ls, store, 1)
    with pytest.raises(LabelStudioError, match="page 1"):
        pending.finish()

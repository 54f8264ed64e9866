"""The Label Studio gateway's push: small paced batches, retried with backoff."""

from __future__ import annotations

import pytest

from backend.labelstudio import gateway as gw


class FlakyProjects:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.batches: list[int] = []

    def import_predictions(self, id: int, request: list) -> None:  # noqa: A002 - the SDK's keyword
        if self.failures:
            self.failures -= 1
            raise RuntimeError("500 database is locked")
        self.batches.append(len(request))


def gateway_with(projects: FlakyProjects) -> gw.LabelStudioGateway:
    g = gw.LabelStudioGateway("http://ls.invalid", "t" * 40)
    g.client = type("Client", (), {"projects": projects})()
    return g


def test_batches_are_retried_and_paced(monkeypatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(gw.time, "sleep", sleeps.append)
    projects = FlakyProjects(failures=2)
    pushed = gateway_with(projects).import_predictions(1, [{"task": i} for i in range(250)], batch_size=100)
    assert pushed == 250 and projects.batches == [100, 100, 50]
    assert sleeps[:2] == [gw.PUSH_BACKOFF_SECONDS, gw.PUSH_BACKOFF_SECONDS * 2]  # backoff before each retry
    assert len(sleeps) == 2 + 2  # and a pause after every batch but the last


def test_a_batch_that_keeps_failing_names_the_step(monkeypatch) -> None:
    monkeypatch.setattr(gw.time, "sleep", lambda s: None)
    with pytest.raises(gw.LabelStudioError, match=r"pushing predictions 0\.\.10 to project 1 failed after 4 attempts"):
        gateway_with(FlakyProjects(failures=99)).import_predictions(1, [{"task": i} for i in range(10)], 100)


def test_the_pause_after_each_batch_is_asked_for_before_each_pause(monkeypatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr(gw.time, "sleep", sleeps.append)
    paces = iter([0.0, gw.PUSH_YIELD])
    asked: list[int] = []

    def pace() -> float:
        asked.append(1)
        return next(paces)

    gateway_with(FlakyProjects(failures=0)).import_predictions(1, [{"task": i} for i in range(250)], 100, pace=pace)
    assert len(asked) == 2  # after the first and second batch, not after the last
    assert sleeps[0] == 0.0 and sleeps[1] >= 0.0  # no crowd: no pause; then a crowd: a pause of its share

"""backend.memory: trimming the heap is safe to call at any time and says whether it could."""

from __future__ import annotations

import ctypes

from backend import memory


def test_release_free_heap_runs_and_reports_what_it_could_do():
    # On glibc (this project's Linux images) the trim is available; elsewhere it is a no-op returning False.
    try:
        glibc = hasattr(ctypes.CDLL(None), "malloc_trim")
    except OSError:
        glibc = False
    blocks = [bytearray(200_000) for _ in range(50)]  # freed below: something for the trim to hand back
    del blocks
    result = memory.release_free_heap()
    assert isinstance(result, bool)
    assert (memory._MALLOC_TRIM is not None) == glibc


def test_without_malloc_trim_it_does_nothing(monkeypatch):
    monkeypatch.setattr(memory, "_MALLOC_TRIM", None)
    assert memory.release_free_heap() is False

"""A push pauses between batches only while a crowd labels (PushPace)."""

from __future__ import annotations

from datetime import timedelta

from backend.config import ProjectPolicy
from backend.labelstudio.gateway import PUSH_YIELD
from backend.service.training import CROWD_WINDOW, PushPace
from backend.store import Store
from backend.store.schema import Event, utcnow


def test_pauses_only_while_labels_arrive(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    store.upgrade()
    store.ensure_project(1, ProjectPolicy())
    pace = PushPace(store, 1)
    assert pace() == 0.0 and not pace.paced  # nobody labelling: push without pauses
    event_id = store.record_event(1, "ANNOTATION_CREATED", n_labels=1)
    with store.session() as s:  # a label from before the window does not count as a crowd at work
        s.get(Event, event_id).received_at = utcnow() - CROWD_WINDOW - timedelta(seconds=5)
    assert pace() == 0.0
    store.record_event(1, "ANNOTATION_CREATED", n_labels=1)
    assert pace() == PUSH_YIELD and pace.paced
    store.dispose()

"""Projects and their events: connection, policy, the label counter, what /predict needs per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, case, exists, func, insert, or_, select
from sqlalchemy.orm import aliased

from backend.config import ProjectPolicy
from backend.store.base import Database
from backend.store.schema import Event, Iteration, Project

#: Integer columns are 32-bit signed on PostgreSQL.
MAX_INT = 2**31 - 1
#: How much of an event's error message is kept.
MAX_ERROR_CHARS = 10_000


# The two statements of every webhook's ack, built once: building a statement costs more CPU than
# running it on SQLite (coercing each value, its cache key), and a storm runs them a thousand times.
SERVING_STATE = (
    select(Project.label_config, Project.current_version, Project.current_iteration_id, Project.policy,
           Iteration.strategy, Iteration.model, Iteration.trusted_types,
           Iteration.label_config.label("served_config"))
    .outerjoin(Iteration, Iteration.id == Project.current_iteration_id)
    .where(Project.id == bindparam("project_id"))
)
_EVENTS = Event.__table__
_EARLIER = _EVENTS.alias("earlier")
# A delivery seen before (same project, same key) counts no labels: decided inside the INSERT itself, so the
# ack stays one statement. On SQLite the statement runs under the write lock, so of two deliveries at the same
# moment the second always sees the first; on PostgreSQL two concurrent INSERTs may both count, and
# :func:`first_delivery` makes the later one count nothing wherever labels are summed.
_REPEAT = select(_EARLIER.c.id).where(_EARLIER.c.project_id == bindparam("repeat_project"),
                                      _EARLIER.c.delivery == bindparam("repeat_delivery")).exists()
INSERT_EVENT = (insert(_EVENTS)
                .values(n_labels=case((_REPEAT, 0), else_=bindparam("new_labels", type_=_EVENTS.c.n_labels.type)))
                .returning(_EVENTS.c.id, _EVENTS.c.n_labels))


def first_delivery() -> ColumnElement[bool]:
    """An event that is no repeat of an earlier event of the project with the same delivery key.

    The INSERT already records a repeat with 0 labels; this covers the one case it cannot see: two
    deliveries committed at the same moment on PostgreSQL (each INSERT's snapshot misses the other), where
    the one with the larger id is the repeat. An index probe per event with a key and labels.
    """
    earlier = aliased(Event)
    return or_(Event.delivery.is_(None), Event.n_labels == 0,
               ~exists().where(earlier.project_id == Event.project_id, earlier.delivery == Event.delivery,
                               earlier.id < Event.id))


def waiting_labels(project_id: int, start: Any) -> Select[Any]:
    """The sum of the project's labels in events after event ``start`` (its ``counted_from_event``): what the
    next round will take. Every count towards a round (webhook settles, the ticker, queueing) is this query;
    a delivery that repeats an earlier one counts nothing (see :func:`first_delivery`)."""
    return select(func.coalesce(func.sum(Event.n_labels), 0)).where(Event.project_id == project_id, Event.id > start,
                                                                     first_delivery())


def counted_from(project_id: int) -> Any:
    """The project's ``counted_from_event`` (0 before any round) as a subquery for :func:`waiting_labels`."""
    return func.coalesce(select(Project.counted_from_event).where(Project.id == project_id).scalar_subquery(), 0)


def storable_text(value: str, max_chars: int) -> str:
    """``value`` as any database stores it: NUL removed (PostgreSQL refuses it in text), unpaired
    surrogates replaced (no UTF-8 for them), cut to ``max_chars``."""
    value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:max_chars]


def storable_id(value: int | None) -> int | None:
    """An id for an Integer column, or None when it is not one (a bool, out of range)."""
    ok = isinstance(value, int) and not isinstance(value, bool) and -MAX_INT - 1 <= value <= MAX_INT
    return value if ok else None


@dataclass(frozen=True)
class ServingState:
    """What /predict needs per request, read in one small query.

    ``strategy``, ``model``, ``trusted_types`` and ``label_config`` are the serving round's own (what
    trained and scored it), so a policy or config changed at `/setup` since then cannot ask a version for
    what it cannot do; before the first round, and for rounds recorded before these were stored, they are
    the project's live ones.
    """

    project_id: int
    label_config: str
    version: str | None
    iteration_id: int | None
    strategy: str
    retrain_every: int
    model: str = "auto"
    trusted_types: tuple[str, ...] = ()


class ProjectStore(Database):
    # -- projects -----------------------------------------------------------------------------
    def ensure_project(
        self,
        project_id: int,
        defaults: ProjectPolicy,
        *,
        label_config: str | None = None,
        label_studio_url: str | None = None,
        label_studio_token: str | None = None,
        policy: ProjectPolicy | None = None,
    ) -> Project:
        """Create the project on first sight; refresh config/connection/policy when given."""
        with self.session() as s:
            project = s.get(Project, project_id)
            if project is None:
                project = Project(id=project_id, label_config=label_config or "", labels_since_iteration=0,
                                  counted_from_event=0)
                project.set_rules(policy or defaults)
                s.add(project)
            elif policy is not None:
                project.set_rules(policy)
            if label_config:
                project.label_config = label_config
            if label_studio_url:
                project.label_studio_url = label_studio_url
            if label_studio_token:
                project.label_studio_token = label_studio_token
            s.flush()
            return project

    def get_project(self, project_id: int) -> Project | None:
        with self.session() as s:
            return s.get(Project, project_id)

    def count_projects(self) -> int:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(Project)) or 0

    def list_projects(self) -> list[Project]:
        with self.session() as s:
            return list(s.scalars(select(Project).order_by(Project.id)))

    def serving_state(self, project_id: int) -> ServingState | None:
        with self.autocommit() as conn:  # one statement: no transaction around it (see autocommit)
            row = conn.execute(SERVING_STATE, {"project_id": project_id}).first()
        if row is None:
            return None
        rules = ProjectPolicy.from_stored(row.policy)
        served = row.strategy is not None and row.model is not None
        config = row.served_config if row.served_config else row.label_config
        return ServingState(project_id, config, row.current_version, row.current_iteration_id,
                            row.strategy if served else rules.strategy, rules.retrain_every,
                            row.model if served else rules.model,
                            tuple(row.trusted_types or ()) if served else tuple(rules.trusted_types))

    # -- events -------------------------------------------------------------------------------
    def record_event(
        self,
        project_id: int | None,
        action: str,
        *,
        annotation_id: int | None = None,
        task_id: int | None = None,
        n_labels: int = 0,
        payload: dict[str, Any] | None = None,
        error: str | None = None,
        delivery: str | None = None,
    ) -> int:
        """Store the event (one INSERT, nothing to lock); returns its id. See :meth:`record_delivery`."""
        return self.record_delivery(project_id, action, annotation_id=annotation_id, task_id=task_id,
                                    n_labels=n_labels, payload=payload, error=error, delivery=delivery)[0]

    def record_delivery(
        self,
        project_id: int | None,
        action: str,
        *,
        annotation_id: int | None = None,
        task_id: int | None = None,
        n_labels: int = 0,
        payload: dict[str, Any] | None = None,
        error: str | None = None,
        delivery: str | None = None,
    ) -> tuple[int, int]:
        """Store the event (one INSERT, nothing to lock); returns its id and the labels it counts.

        The event is the record of what arrived, so it is always storable: the action is cut to its
        column and cleaned, like the error; ids that do not fit an Integer column are dropped (the
        callers in backend/web refuse such requests, and still record them here). Its labels count
        towards the next round through :meth:`labels_since` rather than a counter row: under a storm
        of webhooks every request used to queue for that row's lock. ``delivery`` names this delivery
        of the event (see backend/web/protocol.py ``delivery_key``): a second delivery of it (a second
        webhook to this backend, a replay) is recorded with 0 labels, decided in the same INSERT.
        """
        action_chars = Event.__table__.c.action.type.length
        delivery = storable_text(delivery, Event.__table__.c.delivery.type.length) if delivery else None
        row = {
            "project_id": project_id,
            "action": storable_text(action, action_chars) or "(none)",
            "annotation_id": storable_id(annotation_id),
            "task_id": storable_id(task_id),
            "new_labels": n_labels,
            "payload": payload,
            "error": storable_text(error, MAX_ERROR_CHARS) if error is not None else None,
            "delivery": delivery,
            "repeat_project": project_id,
            "repeat_delivery": delivery,
        }
        with self.autocommit() as conn:  # one INSERT, committed on its own: the ack's only write
            event_id, counted = conn.execute(INSERT_EVENT, row).one()
        return int(event_id), int(counted)

    def labels_since(self, project_id: int) -> int:
        """Labels that arrived since the last round started (the events after ``counted_from_event``)."""
        with self.session() as s:
            return int(s.scalar(waiting_labels(project_id, counted_from(project_id))) or 0)

    def events(self, project_id: int) -> list[Event]:
        with self.session() as s:
            return list(s.scalars(select(Event).where(Event.project_id == project_id).order_by(Event.id)))


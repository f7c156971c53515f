"""Read state: whose it is (`Reader`), what they have not read, marking read.

Read state belongs to the reader, not the event: activities stay immutable.
"""
from __future__ import annotations

import functools
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..filters import ActivityFilter
from ..ids import uuid7_floor
from ..models import utcnow
from .database import dialect
from .feed import get_activity
from .filtering import apply_filter
from .tables import activities, read_cursors, read_marks


# An event is unread by a reader when it was received after their cursor
# (`Reader.read_up_to`) and they have not marked it. Marking everything moves
# the cursor; marking what a filter shows marks each of those events.

# The unread count stops here: "999+" needs no exact count of a big backlog.
UNREAD_COUNT_CAP = 999


class Reader:
    """Whose read state a request sees, in one tenant (see `reader_of`)."""

    def __init__(self, tenant_id: int, key: str):
        self.tenant_id = tenant_id
        self.key = key

    @functools.cached_property
    def read_up_to(self) -> str | None:
        """Every event received up to this id is read (ids are UUIDv7, made
        on receipt, so id order is receive order); None: nothing is."""
        return db.session.execute(
            sa.select(read_cursors.c.read_up_to)
            .where(read_cursors.c.tenant_id == self.tenant_id, read_cursors.c.reader == self.key)
        ).scalar_one_or_none()

    def cursor_moved(self) -> None:
        """Read the cursor again when next needed."""
        self.__dict__.pop("read_up_to", None)

    def unread(self):
        """The SQL condition on `activities`: unread by this reader (after
        their cursor and not marked read)."""
        c = activities.c
        marked = sa.exists().where(read_marks.c.tenant_id == self.tenant_id, read_marks.c.reader == self.key,
                                   read_marks.c.activity_id == c.id)
        if self.read_up_to is None:
            return ~marked
        return sa.and_(c.tenant_id == self.tenant_id, c.id > self.read_up_to, ~marked)

    def unread_among(self, ids: list[str]) -> set[str]:
        """Which of these events (of the reader's tenant) the reader has not read."""
        # UUIDv7 text sorts as the database sorts the ids.
        after_cursor = [i for i in ids if self.read_up_to is None or i > self.read_up_to]
        if not after_cursor:
            return set()
        marked = db.session.execute(
            sa.select(read_marks.c.activity_id).where(
                read_marks.c.tenant_id == self.tenant_id, read_marks.c.reader == self.key,
                read_marks.c.activity_id.in_(after_cursor))
        ).scalars()
        return set(after_cursor) - set(marked)


def reader_of(principal) -> Reader:
    """A signed-in user reads as themselves, an API token as itself; local
    mode has one reader, shared by the dashboard and token-less API calls."""
    if principal.user_id is not None:
        key = f"user:{principal.user_id}"
    elif principal.token_id is not None:
        key = f"token:{principal.token_id}"
    elif principal.local:
        key = "local"
    else:
        raise ValueError("this principal has no read state")
    return Reader(principal.tenant_id, key)


def start_reading(reader: Reader) -> None:
    """A reader with no cursor yet (a person's first visit) starts having
    read everything received so far: unread means new since they came, not
    the whole backlog. Does nothing once the reader has a cursor."""
    if reader.read_up_to is not None:
        return
    insert = _upsert(read_cursors).values(tenant_id=reader.tenant_id, reader=reader.key,
                                          read_up_to=uuid7_floor(utcnow()), updated_at=utcnow())
    db.session.execute(insert.on_conflict_do_nothing(index_elements=["tenant_id", "reader"]))
    db.session.commit()
    reader.cursor_moved()


# The count is of rows as the feed shows them: a tool call's start and its
# outcome are one row, the outcome's once it has come (web/present.py,
# `feed_rows`), so a start with an outcome is not counted; a running call is
# its start. Statuses that are no outcome: timeline.NOT_AN_OUTCOME.
_NOT_AN_OUTCOME = ("started", "waiting")


def _tool_start():
    c = activities.c
    return sa.and_(c.entity_type == "tool", c.status == "started", c.correlation_id.is_not(None))


def _has_outcome(c=activities.c):
    """The start's call (`c`: the start's columns) has an outcome (served by ix_activities_correlation)."""
    outcome = activities.alias("outcome").c
    return sa.exists().where(outcome.tenant_id == c.tenant_id, outcome.correlation_id == c.correlation_id,
                             outcome.source == c.source, outcome.entity_type == "tool",
                             outcome.status.not_in(_NOT_AN_OUTCOME))


def unread_count(reader: Reader) -> int:
    """How many feed rows the reader has not read, up to UNREAD_COUNT_CAP + 1
    (a tool call counts once; see above)."""
    c = activities.c
    unread = sa.select(c.id).where(c.tenant_id == reader.tenant_id, reader.unread(),
                                   sa.not_(sa.and_(_tool_start(), _has_outcome())))
    return db.session.execute(
        sa.select(sa.func.count()).select_from(unread.limit(UNREAD_COUNT_CAP + 1).subquery())
    ).scalar_one()


# Running calls are looked for among this many of the newest unread tool starts.
RUNNING_WINDOW = 500


def unread_running_calls(reader: Reader, limit: int = 200, window: int = RUNNING_WINDOW) -> list[dict]:
    """The newest tool calls still running whose start the reader has not
    read: counted by `unread_count` already, so their outcome arriving live
    adds no row (the page keeps these and counts by row).

    Looked for among the newest `window` unread starts: a call is running
    for minutes, not across thousands of later calls, and without the bound
    a reader who had read nothing made every page check every start for an
    outcome (18 s at 10M events). A call older than that which does finish
    counts its outcome as one more unread row.

    Read through ix_activities_tool_starts, (tenant_id, id) of the starts
    alone: through the id-only primary key the planner walked every other
    tenant's newer events first (100,000 of them: 370 ms); through the feed
    index, all of this tenant's events older than a reader's cursor (4 s)."""
    c = activities.c
    starts = (sa.select(c.id, c.tenant_id, c.source, c.correlation_id, c.entity_type, c.status)
              .where(c.tenant_id == reader.tenant_id, _tool_start(), reader.unread())
              .order_by(c.id.desc()).limit(window).subquery("starts"))
    s = starts.c
    rows = db.session.execute(
        sa.select(s.source, s.correlation_id, s.entity_type, s.status).where(~_has_outcome(s))
        .order_by(s.id.desc()).limit(limit)
    ).mappings()
    return [dict(r) for r in rows]


def _upsert(table):
    return (postgresql.insert if dialect() == "postgresql" else sqlite.insert)(table)


def mark_read(reader: Reader, activity_id: str) -> dict | None:
    """Mark one event read; returns it, or None if the tenant has no such event."""
    activity = get_activity(reader.tenant_id, activity_id)
    if activity is not None and (reader.read_up_to is None or activity_id > reader.read_up_to):
        db.session.execute(_upsert(read_marks).values(
            tenant_id=reader.tenant_id, reader=reader.key, activity_id=activity_id).on_conflict_do_nothing())
        db.session.commit()
    return activity


def mark_call_read(reader: Reader, activity: dict) -> None:
    """Mark read the other events of a tool call (its start and outcome share
    one row on the dashboard: reading the row reads the call)."""
    c = activities.c
    partners = sa.select(sa.literal(reader.tenant_id), sa.literal(reader.key), c.id).where(
        c.tenant_id == reader.tenant_id, c.source == activity["source"],
        c.correlation_id == activity["correlation_id"], c.entity_type == "tool", c.id != activity["id"],
        reader.unread())
    db.session.execute(_upsert(read_marks).from_select(["tenant_id", "reader", "activity_id"], partners)
                       .on_conflict_do_nothing())
    db.session.commit()


def mark_all_read(reader: Reader, flt: ActivityFilter, up_to: str | None = None) -> None:
    """Mark read every event `flt` matches that was received up to the event
    `up_to` (default: the newest now), so what arrives meanwhile stays unread.

    With no filter that is the cursor moving; otherwise each matching unread
    event is marked, in one INSERT ... SELECT.
    """
    c = activities.c
    up_to = up_to or db.session.execute(  # the newest received (PostgreSQL has no max(uuid))
        sa.select(c.id).where(c.tenant_id == reader.tenant_id).order_by(c.id.desc()).limit(1)).scalar()
    if up_to is None:
        return
    flt = replace(flt, read=None)  # a read event is already marked; an unread one is what we mark
    if flt.is_empty():
        _move_cursor(reader, up_to)
    else:
        unread = apply_filter(
            sa.select(sa.literal(reader.tenant_id), sa.literal(reader.key), c.id)
            .where(c.tenant_id == reader.tenant_id, c.id <= up_to, reader.unread()),
            flt,
        )
        db.session.execute(_upsert(read_marks).from_select(["tenant_id", "reader", "activity_id"], unread)
                           .on_conflict_do_nothing())
    db.session.commit()


def _move_cursor(reader: Reader, up_to: str) -> None:
    """Move the reader's cursor forward to `up_to` (never back) and drop the marks it now covers."""
    insert = _upsert(read_cursors).values(tenant_id=reader.tenant_id, reader=reader.key, read_up_to=up_to,
                                          updated_at=utcnow())
    current = read_cursors.c.read_up_to
    db.session.execute(insert.on_conflict_do_update(
        index_elements=["tenant_id", "reader"],
        set_={"read_up_to": sa.case((current < insert.excluded.read_up_to, insert.excluded.read_up_to),
                                    else_=current),
              "updated_at": insert.excluded.updated_at},
    ))
    db.session.execute(sa.delete(read_marks).where(
        read_marks.c.tenant_id == reader.tenant_id, read_marks.c.reader == reader.key,
        read_marks.c.activity_id <= up_to))
    reader.cursor_moved()


"""What live delivery reads: new rows by id, and what a reader missed since an event."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import sqlalchemy as sa

from ..extensions import db
from ..filters import ActivityFilter
from ..ids import uuid7_floor, uuid7_time
from .database import release
from .filtering import apply_filter
from .tables import activities, public


def activities_by_ids(tenant_id: int, ids: list[str]) -> list[dict]:
    """Rows of one tenant by id, in receive (id) order; the live hub re-reads with this."""
    if not ids:
        return []
    query = (
        sa.select(activities)
        .where(activities.c.tenant_id == tenant_id, activities.c.id.in_(ids))
        .order_by(activities.c.id)
    )
    return [public(r) for r in db.session.execute(query).mappings()]


# Ids are made before commit, so an event committed just after a reader's
# newest one can carry a smaller id; replay reaches this far back.
REPLAY_OVERLAP = timedelta(seconds=5)


def missed_since(tenant_id: int, flt: ActivityFilter, since_id: str, limit: int | None = None) -> tuple[list[dict], bool]:
    """Events received after the event `since_id` (minus the overlap), in
    receive order, matching `flt`; and whether `limit` cut the list short.

    Used by live streams, which then wait for a long time: the database
    session is handed back before returning. Missed events are new, so
    unread by everyone: a `read` filter passes all of them or none.
    """
    since = uuid7_time(since_id)
    if since is None or flt.read:
        return [], False
    flt = replace(flt, read=None)
    floor = uuid7_floor(since - REPLAY_OVERLAP)
    base = apply_filter(
        sa.select(activities).where(activities.c.tenant_id == tenant_id, activities.c.id > floor), flt
    ).order_by(activities.c.id)
    events: list[dict] = []
    try:
        while True:
            page_size = 1000 if limit is None else min(1000, limit + 1 - len(events))
            query = base if not events else base.where(activities.c.id > events[-1]["id"])
            rows = [public(r) for r in db.session.execute(query.limit(page_size)).mappings()]
            events.extend(rows)
            if len(rows) < page_size or (limit is not None and len(events) > limit):
                break
    finally:
        release()
    if limit is not None and len(events) > limit:
        return events[:limit], True
    return events, False


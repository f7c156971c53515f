"""Reading the feed: keyset pages, one event, a count, and every event of a filter (exports)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Iterator

import sqlalchemy as sa

from ..extensions import db
from ..filters import ActivityFilter
from ..ids import is_uuid
from .filtering import apply_filter
from .tables import FEED_ORDER, activities, public

if TYPE_CHECKING:
    from .reading import Reader


@dataclass
class Page:
    items: list[dict]
    # The keyset position (occurred_at, id) the next page starts after; None on the last page.
    next_after: tuple[datetime, str] | None


def list_activities(
    tenant_id: int,
    flt: ActivityFilter,
    *,
    limit: int = 50,
    after: tuple[datetime, str] | None = None,
    reader: Reader | None = None,
) -> Page:
    """One keyset page in feed order, starting after the (occurred_at, id)
    `after`; `reader` is whose read state a `read` filter means."""
    query = apply_filter(sa.select(activities).where(activities.c.tenant_id == tenant_id), flt, reader)
    if after:
        moment, last_id = after
        c = activities.c
        # The first condition is what an index on (..., occurred_at) can seek
        # to; the row comparison then breaks ties on id.
        query = query.where(
            c.occurred_at <= moment,
            sa.tuple_(c.occurred_at, c.id) < sa.tuple_(sa.literal(moment, c.occurred_at.type), sa.literal(last_id, c.id.type)),
        )
    rows = db.session.execute(query.order_by(*FEED_ORDER).limit(limit + 1)).mappings().all()
    items = [public(r) for r in rows[:limit]]
    next_after = (items[-1]["occurred_at"], items[-1]["id"]) if len(rows) > limit else None
    return Page(items, next_after)


def get_activity(tenant_id: int, activity_id: str) -> dict | None:
    if not is_uuid(activity_id):
        return None
    row = db.session.execute(
        sa.select(activities).where(activities.c.tenant_id == tenant_id, activities.c.id == activity_id)
    ).mappings().first()
    return public(row) if row else None


def count_activities(tenant_id: int) -> int:
    return db.session.execute(
        sa.select(sa.func.count()).select_from(activities).where(activities.c.tenant_id == tenant_id)
    ).scalar_one()


# Rows fetched from the database at a time while exporting.
EXPORT_CHUNK = 2000


def stream_activities(tenant_id: int, flt: ActivityFilter, reader: Reader | None = None,
                      chunk: int = EXPORT_CHUNK) -> Iterator[dict]:
    """Every event `flt` matches, in feed order, read as it is consumed.

    Memory stays flat however many match: `yield_per` streams the result (a
    server-side cursor on PostgreSQL; SQLite's cursor steps through rows by
    itself) and holds `chunk` rows at a time. The read runs in one
    transaction, so the export is a consistent snapshot; it holds a database
    connection until the caller has consumed it or closed the generator.
    """
    query = apply_filter(sa.select(activities).where(activities.c.tenant_id == tenant_id), flt, reader)
    result = db.session.execute(query.order_by(*FEED_ORDER).execution_options(yield_per=chunk))
    try:
        for row in result.mappings():
            yield public(row)
    finally:
        result.close()


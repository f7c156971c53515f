"""How many events a feed group holds: for a live event joining its group.

A group is one type by one actor on one entity within a UTC day
(`activityweb.grouping`); its count here is of the events the reader's
filter shows, so a grouped feed's summary says the same as the feed.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, time, timedelta, timezone

import sqlalchemy as sa

from ..extensions import db
from ..filters import ActivityFilter
from ..grouping import group_key
from .filtering import apply_filter
from .tables import activities

c = activities.c


def _same(primary, fallback, event, first: str, second: str):
    """The identity's "id, else name" part: an id is matched alone; no id, the name (or neither)."""
    if event.get(first):
        return primary == event[first]
    return sa.and_(primary.is_(None), fallback == event[second] if event.get(second) else fallback.is_(None))


def group_counts(tenant_id: int, flt: ActivityFilter, events: list[dict]) -> dict[str, int]:
    """The number of events in each of these events' groups (by `group_key`), one query per group."""
    # Read state is each reader's own; a group's count is of what the rest of the filter shows.
    flt = dataclasses.replace(flt, read=None) if flt.read is not None else flt
    counts: dict[str, int] = {}
    for event in events:
        key = group_key(event)
        if key in counts:
            continue
        day = event["occurred_at"].astimezone(timezone.utc).date()
        start = datetime.combine(day, time(), tzinfo=timezone.utc)
        query = sa.select(sa.func.count()).select_from(activities).where(
            c.tenant_id == tenant_id, c.type == event["type"], c.occurred_at >= start,
            c.occurred_at < start + timedelta(days=1),
            _same(c.actor_id, c.actor_name, event, "actor_id", "actor_name"),
            c.entity_type.is_(None) if not event.get("entity_type") else c.entity_type == event["entity_type"],
            _same(c.entity_id, c.entity_name, event, "entity_id", "entity_name"))
        counts[key] = db.session.execute(apply_filter(query, flt)).scalar_one()
    return counts

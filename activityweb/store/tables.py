"""The tables the store reads and writes with SQLAlchemy Core, and the shape of a row.

Activity rows are read and written with Core, not the ORM: the feed reads
many rows and ingest writes many, and neither needs identity tracking.
"""
from __future__ import annotations

from ..models import ACTIVITY_FIELDS, Activity, PruneRun, ReadCursor, ReadMark, Tenant

activities = Activity.__table__
read_cursors = ReadCursor.__table__
read_marks = ReadMark.__table__
tenants = Tenant.__table__
prune_runs = PruneRun.__table__

# Feed order: newest first, ties broken by id.
FEED_ORDER = (activities.c.occurred_at.desc(), activities.c.id.desc())


def public(row) -> dict:
    """A row as the API and templates see it: the documented fields, no tenant id."""
    return {name: row[name] for name in ACTIVITY_FIELDS}

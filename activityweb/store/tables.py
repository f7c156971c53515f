"""The tables the store reads and writes with SQLAlchemy Core, and the shape of a row.

Activity rows are read and written with Core, not the ORM: the feed reads
many rows and ingest writes many, and neither needs identity tracking.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..models import ACTIVITY_FIELDS, Activity, PruneRun, ReadCursor, ReadMark, Tenant

activities = Activity.__table__
read_cursors = ReadCursor.__table__
read_marks = ReadMark.__table__
tenants = Tenant.__table__
prune_runs = PruneRun.__table__

# PostgreSQL's idempotency keys (migration 0017, store/partitions.py): made by
# hand, so outside the models' metadata.
activity_keys = sa.Table(
    "activity_keys", sa.MetaData(),
    sa.Column("key", postgresql.UUID(as_uuid=False), primary_key=True),
    sa.Column("activity_id", postgresql.UUID(as_uuid=False)),
)


def activity_key(tenant_id, source, source_id):
    """The key of (tenant, source, source_id), as activity_keys holds it."""
    return sa.func.activity_key(tenant_id, source, source_id, type_=postgresql.UUID(as_uuid=False))


# Feed order: newest first, ties broken by id.
FEED_ORDER = (activities.c.occurred_at.desc(), activities.c.id.desc())


def public(row) -> dict:
    """A row as the API and templates see it: the documented fields, no tenant id."""
    return {name: row[name] for name in ACTIVITY_FIELDS}

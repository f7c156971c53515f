"""Retention: each tenant keeps its events for a period, and `prune` deletes the expired."""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from . import rollups
from ..extensions import db
from ..models import utcnow
from .database import dialect
from .tables import activities, activity_key, activity_keys, prune_runs, read_marks, tenants
from .usage import prune_points


# Every event gets expires_at = occurred_at + its tenant's retention when it
# is stored; `prune` deletes expired events in small batches, each its own
# short transaction, so writers wait for one batch at most.

PRUNE_BATCH = 1000


def retention_periods(conn, tenant_ids) -> dict[int, timedelta]:
    """How long each tenant keeps its events."""
    rows = conn.execute(sa.select(tenants.c.id, tenants.c.retention_days).where(tenants.c.id.in_(tenant_ids)))
    return {tenant_id: timedelta(days=days) for tenant_id, days in rows}


@dataclass
class Pruned:
    deleted: int
    deleted_through: datetime | None  # the newest occurred_at among them
    batches: int


def prune(tenant_id: int, *, batch_size: int = PRUNE_BATCH, now: datetime | None = None,
          pause: float = 0.0) -> Pruned:
    """Delete the tenant's events that expired by `now`, `batch_size` per
    transaction (`pause` seconds between), and record the pass in prune_runs."""
    started = utcnow()
    now = now or started
    c = activities.c
    expired = (sa.select(c.id).where(c.tenant_id == tenant_id, c.expires_at <= now)
               .order_by(c.expires_at).limit(batch_size))
    result = Pruned(0, None, 0)
    while True:
        rows = db.session.execute(sa.delete(activities).where(c.tenant_id == tenant_id, c.id.in_(expired))
                                  .returning(c.occurred_at, c.tenant_id, c.id, c.source, c.source_id)).all()
        gone = [row.occurred_at for row in rows]
        # The hours the batch took events from are counted again from what remains, in its transaction.
        rollups.recompute(db.session.connection(), tenant_id, {rollups.truncate_hour(at) for at in gone})
        forget(db.session.connection(), rows)
        db.session.commit()
        if gone:
            result.batches += 1
            result.deleted += len(gone)
            result.deleted_through = max(gone + [result.deleted_through or gone[0]])
        if len(gone) < batch_size:
            break
        time.sleep(pause)
    # Cost and token points are kept as long as the tenant's events.
    keep = retention_periods(db.session.connection(), [tenant_id]).get(tenant_id)
    if keep is not None:
        prune_points(tenant_id, now - keep)
    db.session.execute(sa.insert(prune_runs).values(
        tenant_id=tenant_id, started_at=started, finished_at=utcnow(), deleted=result.deleted,
        deleted_through=result.deleted_through,
        retention_days=sa.select(tenants.c.retention_days).where(tenants.c.id == tenant_id).scalar_subquery()))
    db.session.commit()
    return result


def forget(conn, rows) -> None:
    """Delete what refers to deleted events (rows with tenant_id, id, source and
    source_id): the readers' marks, and on PostgreSQL their idempotency keys
    (partitions.py). Ids are unique across tenants: ix_read_marks_activity finds the marks."""
    if not rows:
        return
    conn.execute(sa.delete(read_marks).where(read_marks.c.activity_id.in_([str(row.id) for row in rows])))
    if conn.dialect.name == "postgresql":
        conn.execute(sa.delete(activity_keys).where(activity_keys.c.key.in_(
            [activity_key(row.tenant_id, row.source, row.source_id) for row in rows])))


def last_prune(tenant_id: int):
    """The tenant's latest prune that deleted something (a row of prune_runs), or None."""
    return db.session.execute(
        sa.select(prune_runs).where(prune_runs.c.tenant_id == tenant_id, prune_runs.c.deleted > 0)
        .order_by(prune_runs.c.finished_at.desc()).limit(1)
    ).first()


def set_retention(tenant_id: int, days: int, *, restamp: bool = False, batch_size: int = PRUNE_BATCH) -> int:
    """Keep the tenant's events `days` days from now on; with `restamp`, give
    its stored events the new expiry too (in batches). Returns how many were restamped."""
    db.session.execute(sa.update(tenants).where(tenants.c.id == tenant_id).values(retention_days=days))
    db.session.commit()
    c = activities.c
    restamped, after = 0, None
    while restamp:
        batch = db.session.execute(
            sa.select(c.id).where(c.tenant_id == tenant_id, *([c.id > after] if after else []))
            .order_by(c.id).limit(batch_size)).scalars().all()
        if not batch:
            break
        db.session.execute(sa.update(activities).where(c.tenant_id == tenant_id, c.id.in_(batch))
                           .values(expires_at=_expiry(days)))
        db.session.commit()
        restamped += len(batch)
        after = batch[-1]
    return restamped


def _expiry(days: int):
    """occurred_at + `days`, in SQL."""
    occurred = activities.c.occurred_at
    if dialect() == "postgresql":
        return occurred + sa.literal(timedelta(days=days), sa.Interval())
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' text: shift it, keep the fraction.
    return sa.func.strftime("%Y-%m-%d %H:%M:%S", occurred, f"+{int(days)} days").op("||")(sa.func.substr(occurred, 20))


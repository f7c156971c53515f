"""What live delivery reads: a tenant's events after a position, in commit order.

Positions are (txid, id) (`live/positions.py`, migration 0007). Everything
below the horizon is final: on PostgreSQL the oldest transaction still open
(`pg_snapshot_xmin(pg_current_snapshot())`), on SQLite one past the clock of
the last committed write (writers are serialised). A reader first takes the
horizon, then reads rows after its position: every transaction under that
horizon had ended before the read began, so all its rows are in the read.
Rows at or above it are returned too (they are committed) but are not final
yet: the caller stops there and looks again soon (`read_after`).

The live follower and a reconnecting client's replay run the same read; the
follower's LISTEN connection (PostgreSQL) is opened here too.
"""
from __future__ import annotations

import contextlib
from dataclasses import replace

import sqlalchemy as sa

from ..extensions import db
from ..filters import ActivityFilter
from .database import dialect, release
from .filtering import apply_filter
from .tables import activities, public

# The channel the trigger of migration 0002 notifies on (one per database).
CHANNEL = "activityweb"

_PG_SNAPSHOT = sa.text(
    "SELECT pg_snapshot_xmin(s)::text, pg_snapshot_xmax(s)::text, "
    "ARRAY(SELECT pg_snapshot_xip(s)::text) FROM pg_current_snapshot() AS s")
_PG_HORIZON = sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
_SQLITE_CLOCK = sa.text("SELECT value FROM live_clock WHERE id = 1")


def snapshot() -> tuple[int, int, list[int]]:
    """(xmin, xmax, open transactions) of a snapshot taken now: what a page
    read right after it shows (every transaction before xmax but the open ones)."""
    if dialect() == "postgresql":
        xmin, xmax, open_ = db.session.execute(_PG_SNAPSHOT).one()
        return int(xmin), int(xmax), [int(t) for t in open_]
    clock = db.session.execute(_SQLITE_CLOCK).scalar_one()
    return clock + 1, clock + 1, []


def horizon() -> int:
    """Every transaction below this has ended."""
    if dialect() == "postgresql":
        return int(db.session.execute(_PG_HORIZON).scalar_one())
    return db.session.execute(_SQLITE_CLOCK).scalar_one() + 1


def _after(after: tuple[int, str], pending: dict[int, str] | None):
    c = activities.c
    txid, event_id = after
    clause = sa.tuple_(c.txid, c.id) > sa.tuple_(sa.literal(txid, c.txid.type), sa.literal(event_id, c.id.type))
    for open_txid, had_up_to in (pending or {}).items():
        clause = clause | ((c.txid == sa.literal(open_txid, c.txid.type)) & (c.id > had_up_to))
    return clause


def read_after(tenant_id: int, after: tuple[int, str], *, pending: dict[int, str] | None = None,
               flt: ActivityFilter | None = None, limit: int = 500) -> tuple[int, list[tuple[int, dict]]]:
    """The horizon, and up to `limit` of the tenant's events after the
    position (`after`, `pending`) that `flt` matches, as (txid, event) in
    commit order. Those at or above the horizon are committed but not final."""
    if flt is not None and flt.read:
        # What is new is unread by everyone: a `read=true` filter matches none of it.
        return horizon(), []
    below = horizon()
    c = activities.c
    query = sa.select(activities).where(c.tenant_id == tenant_id, _after(after, pending))
    if flt is not None:
        query = apply_filter(query, replace(flt, read=None))
    rows = db.session.execute(query.order_by(c.txid, c.id).limit(limit)).mappings()
    return below, [(row["txid"], public(row)) for row in rows]


def count_after(tenant_id: int, after: tuple[int, str], cap: int) -> int:
    """How many of the tenant's events follow the position, counting up to `cap + 1`."""
    c = activities.c
    inner = sa.select(sa.literal(1)).where(c.tenant_id == tenant_id, _after(after, None)).limit(cap + 1).subquery()
    return db.session.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one()


def position_of(tenant_id: int, event_id: str) -> tuple[int, str] | None:
    """Where one of the tenant's events stands, if it is still stored."""
    c = activities.c
    row = db.session.execute(sa.select(c.txid, c.id).where(c.tenant_id == tenant_id, c.id == event_id)).first()
    return (row[0], row[1]) if row else None


def first_position(tenant_id: int) -> tuple[int, str] | None:
    """Where the tenant's oldest stored event stands (retention deletes from the old end)."""
    c = activities.c
    row = db.session.execute(
        sa.select(c.txid, c.id).where(c.tenant_id == tenant_id).order_by(c.txid, c.id).limit(1)).first()
    return (row[0], row[1]) if row else None


@contextlib.contextmanager
def listening(dsn: str):
    """A connection of its own that LISTENs for new events (PostgreSQL):
    iterate `conn.notifies()`; each notification's payload names its tenant."""
    import psycopg
    import psycopg.sql

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(CHANNEL)))
        yield conn


def probe(conn) -> None:
    """Ask the LISTEN connection something, so a dead one fails now."""
    conn.execute("SELECT 1")


__all__ = ["CHANNEL", "count_after", "first_position", "horizon", "listening", "position_of", "probe", "read_after",
           "release", "snapshot"]

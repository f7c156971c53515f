"""What live delivery reads: a tenant's events after a position, in commit order.

Positions are (txid, id) (`live/positions.py`, migration 0007). Everything
below the horizon is final: on PostgreSQL the oldest transaction of this
database still open (see `_PG_OPEN_HERE`), on SQLite one past the clock of
the last committed write (writers are serialised). A read takes the horizon
first, then the rows in a later snapshot: every transaction under the
horizon had ended by then, so all of its rows are in the read. A row at or
above it is committed but not final (an older transaction may still commit
before it): the read stops there and the caller looks again soon.

On PostgreSQL a read first tries the cheaper horizon of the snapshot it reads
in (the cluster's oldest open transaction, `_PG_CLUSTER_HORIZON`): one round
trip. Only a page that reaches past it asks for this database's own horizon.

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

# The horizon of this database: the oldest of its transactions still open
# (none: the next transaction id). Not the cluster's `pg_snapshot_xmin`, which
# counts every database's transactions: a CREATE or DROP DATABASE elsewhere,
# or another application's long write, would hold our delivery back for as
# long as it runs, and only our own database's transactions can write our
# rows. `pg_current_snapshot()` is taken when the statement starts and the
# backends are read after it: a transaction of ours that had an id before
# that snapshot's xmax (every id below it was handed out before) shows in
# `pg_stat_activity` until it ends. Prepared transactions count too. Backend
# status is cached per transaction, hence the clear first.
_PG_CLEAR_STATUS = sa.text("SELECT pg_stat_clear_snapshot()")
_PG_OPEN_HERE = sa.text(
    "SELECT pg_snapshot_xmax(pg_current_snapshot())::text, ARRAY("
    " SELECT backend_xid::text FROM pg_stat_activity WHERE backend_xid IS NOT NULL"
    "  AND datid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " UNION ALL SELECT transaction::text FROM pg_prepared_xacts WHERE database = current_database()"
    ")")
_SQLITE_CLOCK = sa.text("SELECT value FROM live_clock WHERE id = 1")


def _widen(xid: int, near: int) -> int:
    """A 32-bit xid as the 64-bit xid8 it is, given an xid8 within 2^31 of it (`near`)."""
    candidate = (near & ~0xFFFFFFFF) | xid
    if candidate > near + (1 << 31):
        return candidate - (1 << 32)
    if candidate < near - (1 << 31):
        return candidate + (1 << 32)
    return candidate


def snapshot(conn=None) -> tuple[int, int, list[int]]:
    """(horizon, next, open): every transaction of this database below
    `next` but the `open` ones has ended; `horizon` is the oldest open one
    (or `next`). What a page read right after this shows, no more.
    Read on `conn` if given, else in the request's session."""
    execute = (conn or db.session).execute
    if dialect() == "postgresql":
        execute(_PG_CLEAR_STATUS)
        next_, open_ = execute(_PG_OPEN_HERE).one()
        next_ = int(next_)
        # Ids handed out after the snapshot are at or above `next`: no matter.
        open_ = sorted(t for t in {_widen(int(x), next_) for x in open_} if t < next_)
        return (open_[0] if open_ else next_), next_, open_
    clock = execute(_SQLITE_CLOCK).scalar_one()
    return clock + 1, clock + 1, []


def horizon(conn=None) -> int:
    """Every transaction of this database below this has ended."""
    return snapshot(conn)[0]


def _after(after: tuple[int, str], pending: dict[int, str] | None):
    c = activities.c
    txid, event_id = after
    clause = sa.tuple_(c.txid, c.id) > sa.tuple_(sa.literal(txid, c.txid.type), sa.literal(event_id, c.id.type))
    for open_txid, had_up_to in (pending or {}).items():
        clause = clause | ((c.txid == sa.literal(open_txid, c.txid.type)) & (c.id > had_up_to))
    return clause


# The cluster's horizon, in the statement that reads the page: the oldest
# transaction still open in the snapshot the rows are read in, any database's.
# Under it everything is final and already in the page, so most reads are one
# round trip. It can only be earlier than this database's own horizon
# (`snapshot`), which a read asks for only when the page reaches past it.
_PG_CLUSTER_HORIZON = sa.literal_column("pg_snapshot_xmin(pg_current_snapshot())::text").label("cluster_horizon")


def read_after(tenant_id: int, after: tuple[int, str], *, pending: dict[int, str] | None = None,
               flt: ActivityFilter | None = None, limit: int = 500, conn=None) -> tuple[list[tuple[int, dict]], bool]:
    """Up to `limit` of the tenant's events after the position (`after`,
    `pending`) that `flt` matches, as (txid, event) in commit order, and only
    those that are final: the read stops at the first one at or above the
    horizon (committed, but an older transaction may still commit before it).
    Returns (rows, held): `held` says the read stopped there.

    Read on `conn` if given (the follower's: in autocommit, a read is one
    round trip with no BEGIN and ROLLBACK around it), else in the session."""
    if flt is not None and flt.read:
        # What is new is unread by everyone: a `read=true` filter matches none of it.
        return [], False
    c = activities.c
    query = sa.select(activities).where(c.tenant_id == tenant_id, _after(after, pending))
    if flt is not None:
        query = apply_filter(query, replace(flt, read=None))
    query = query.order_by(c.txid, c.id).limit(limit)
    execute = (conn or db.session).execute
    if dialect() != "postgresql":
        below = horizon(conn)
        return _final(execute(query).mappings(), below)
    rows = execute(query.add_columns(_PG_CLUSTER_HORIZON)).mappings().all()
    cluster = int(rows[0]["cluster_horizon"]) if rows else 0
    found, held = _final(rows, cluster)
    if not held:
        return found, False
    # Another database's transaction may be what holds the cluster back:
    # this database's horizon, then the rows again in a later snapshot.
    below = horizon(conn)
    if below == cluster:
        return found, True
    return _final(execute(query).mappings(), below)


def _final(rows, below: int) -> tuple[list[tuple[int, dict]], bool]:
    """The rows (in commit order) below the horizon `below`, and whether one was at or above it."""
    found = []
    for row in rows:
        if row["txid"] >= below:
            return found, True
        found.append((row["txid"], public(row)))
    return found, False


def count_after(tenant_id: int, after: tuple[int, str], cap: int) -> int:
    """How many of the tenant's events follow the position, counting up to `cap + 1`."""
    c = activities.c
    txid, event_id = after
    at = sa.literal(txid, c.txid.type)

    def counted(*where):
        inner = sa.select(sa.literal(1)).where(c.tenant_id == tenant_id, *where).limit(cap + 1).subquery()
        return sa.select(sa.func.count()).select_from(inner).scalar_subquery()

    # Later transactions from the index alone (it has no id, migration 0018), then the rest of this one.
    later, rest = counted(c.txid > at), counted(c.txid == at, c.id > sa.literal(event_id, c.id.type))
    return min(cap + 1, db.session.execute(sa.select(later + rest)).scalar_one())


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


__all__ = ["CHANNEL", "count_after", "first_position", "listening", "position_of", "probe", "read_after",
           "release", "snapshot"]

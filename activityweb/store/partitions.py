"""Time partitions of `activities` on PostgreSQL (migration 0017): one a UTC month.

Retention then drops a month whole once every event in it has expired,
instead of deleting it row by row; a tenant's feed, newest first, reads the
newest months' indexes and stops.

- `activities_YYYY_MM` holds the events that occurred in that month;
  `ensure` makes this one and the next `AHEAD_MONTHS` (producers may be a day ahead of
  our clock, see schemas.MAX_FUTURE), from the migration, `flask partitions
  ensure`, `flask prune` and ingest once an hour a process.
- `activities_before` holds everything older than the first month made (a
  backfill); `activities_default` whatever no month was made for (ensure
  has not run for months). Neither is ever needed for a write to succeed,
  which is the point: no event is refused for want of a partition.
- A unique index on a partitioned table must contain the partition key, so
  the idempotency key (tenant, source, source_id) lives in `activity_keys`
  (see `KEY_SQL`), whose rows go with their events.

SQLite stays one table; everything here is a no-op there.
"""
from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from ..extensions import db
from ..models import utcnow
from .retention import forget

log = logging.getLogger(__name__)

AHEAD_MONTHS = 2
BEFORE = "activities_before"
DEFAULT = "activities_default"
# Key rows and read marks of a dropped month are deleted this many at a time,
# each batch its own short transaction (a long one would hold back the live
# horizon, see live/positions.py).
CLEANUP_BATCH = 5000
# DDL on `activities` waits for its readers; it gives up rather than queue
# every reader behind it (and is tried again on the next call).
LOCK_TIMEOUT = "2s"
# How often a process re-checks that the months ahead exist (ingest).
CHECK_EVERY_SECONDS = 3600.0

# The idempotency key: 16 bytes of the md5 of (tenant, source, source_id). The
# source's length goes first so that no two (source, source_id) pairs make the
# same text. One definition, in the database (`activity_key`, migration 0017).
KEY_SQL = "activity_key({tenant}, {source}, {source_id})"

_PARTITIONS = sa.text("""
    SELECT c.relname, pg_get_expr(c.relpartbound, c.oid),
           greatest(c.reltuples, 0)::bigint, pg_size_pretty(pg_total_relation_size(c.oid))
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'activities'::regclass
""")
# Tables of ours no longer attached: a drop cut short after its detach.
_DETACHED = sa.text("""
    SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind = 'r' AND NOT c.relispartition
      AND c.relname ~ '^activities_[0-9]{4}_[0-9]{2}$'
""")


def month_start(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, count: int) -> datetime:
    """The start of the month `count` months after `month`'s start (before, if negative)."""
    years, months = divmod(month.year * 12 + month.month - 1 + count, 12)
    return month.replace(year=years, month=months + 1)


def next_month(month: datetime) -> datetime:
    return add_months(month, 1)


def month_name(month: datetime) -> str:
    return f"activities_{month:%Y_%m}"


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None: from the beginning of time (`activities_before`)
    end: datetime | None    # None: the default partition
    events: int = 0         # the planner's estimate
    size: str = ""          # with its indexes


def partitions(conn) -> list[Partition]:
    """The partitions of `activities`, oldest first (the default last)."""
    found = []
    for name, bound, events, size in conn.execute(_PARTITIONS):
        start = end = None
        if bound != "DEFAULT":
            low, high = re.findall(r"\(([^)]*)\)", bound)
            start, end = None if low == "MINVALUE" else _bound(low), _bound(high)
        found.append(Partition(name, start, end, events, size))
    return sorted(found, key=lambda p: (p.end is None, p.end or datetime.max.replace(tzinfo=timezone.utc)))


def _bound(text: str) -> datetime:
    return datetime.fromisoformat(text.strip("'")).astimezone(timezone.utc)


def _literal(moment: datetime) -> str:
    return f"'{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}+00'"


def is_partitioned(conn) -> bool:
    return conn.dialect.name == "postgresql" and conn.execute(sa.text(
        "SELECT relkind = 'p' FROM pg_class WHERE oid = 'activities'::regclass")).scalar_one()


# The advisory lock whoever changes the partitions holds (a migration, session-wide, for its loop).
LOCK_KEY = "hashtext('activityweb.partitions')"


@contextlib.contextmanager
def _changing_partitions():
    """A transaction for DDL on the partitions, one process at a time; None on one table (SQLite)."""
    with db.engine.begin() as conn:
        if not is_partitioned(conn):
            yield None
            return
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        yield conn


# ------------------------------------------------------------ making months


def create_partitioned_table(conn, name: str, first_month: datetime, now: datetime) -> None:
    """A partitioned copy of `activities`' columns named `name`, with its
    before, month and default partitions (migration 0017)."""
    conn.exec_driver_sql(
        f"CREATE TABLE {name} (LIKE activities INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE)"
        " PARTITION BY RANGE (occurred_at)")
    conn.exec_driver_sql(f"CREATE TABLE {BEFORE} PARTITION OF {name} FOR VALUES FROM (MINVALUE) TO ({_literal(first_month)})")
    month = first_month
    while month <= month_start(now) or month < _ahead(now):
        conn.exec_driver_sql(f"CREATE TABLE {month_name(month)} PARTITION OF {name} "
                             f"FOR VALUES FROM ({_literal(month)}) TO ({_literal(next_month(month))})")
        month = next_month(month)
    conn.exec_driver_sql(f"CREATE TABLE {DEFAULT} PARTITION OF {name} DEFAULT")


def _ahead(now: datetime) -> datetime:
    """The first month not to be made yet: the one after the AHEAD_MONTHS after this one."""
    return add_months(month_start(now), AHEAD_MONTHS + 1)


def ensure(now: datetime | None = None) -> list[str]:
    """Make each month from `now`'s through AHEAD_MONTHS after it that is
    missing; returns the names made. Events that went to the default
    partition for want of their month move into it (same transaction)."""
    now = now or utcnow()
    made = []
    with _changing_partitions() as conn:
        if conn is None:
            return made
        have = {p.name for p in partitions(conn)}
        month = month_start(now)
        while month < _ahead(now):
            if month_name(month) not in have:
                _make_month(conn, month)
                made.append(month_name(month))
            month = next_month(month)
    return made


def _make_month(conn, month: datetime) -> None:
    name, start, end = month_name(month), _literal(month), _literal(next_month(month))
    held = f"FROM {DEFAULT} WHERE occurred_at >= {start} AND occurred_at < {end}"
    stray = conn.exec_driver_sql(f"SELECT EXISTS (SELECT 1 {held})").scalar_one()
    if not stray:
        # PostgreSQL checks the default partition for rows of the month: none.
        conn.exec_driver_sql(f"CREATE TABLE {name} PARTITION OF activities FOR VALUES FROM ({start}) TO ({end})")
        return
    # Written straight into the partition, the moved rows fire none of the
    # parent's statement triggers: they are counted in the rollups already.
    columns = ", ".join(stored_columns(conn))
    conn.exec_driver_sql(f"ALTER TABLE activities DETACH PARTITION {DEFAULT}")
    conn.exec_driver_sql(f"CREATE TABLE {name} PARTITION OF activities FOR VALUES FROM ({start}) TO ({end})")
    conn.exec_driver_sql(f"INSERT INTO {name} ({columns}) SELECT {columns} {held}")
    conn.exec_driver_sql(f"DELETE {held}")
    conn.exec_driver_sql(f"ALTER TABLE activities ATTACH PARTITION {DEFAULT} DEFAULT")


def stored_columns(conn) -> list[str]:
    """The columns of `activities` one can write (not the generated search vector)."""
    return list(conn.exec_driver_sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'activities'::regclass AND attnum > 0"
        " AND NOT attisdropped AND attgenerated = '' ORDER BY attnum").scalars())


class EnsureTimer:
    """Per process: whether the months ahead are due a check (ingest calls it).
    A failure is logged, not raised: the default partition takes any event."""

    def __init__(self):
        self._next = 0.0

    def check(self) -> None:
        if time.monotonic() < self._next:
            return
        self._next = time.monotonic() + CHECK_EVERY_SECONDS
        try:
            made = ensure()
        except Exception as exc:  # the database away, or DDL waiting on a lock too long
            log.warning("could not make the months ahead (%s); trying again in an hour", exc)
            return
        if made:
            log.info("made partitions %s", ", ".join(made))


# ------------------------------------------------------------ dropping months


@dataclass
class Dropped:
    name: str
    events: int


def drop_expired(now: datetime | None = None) -> list[Dropped]:
    """Drop each month that ended before `now` and
    whose every event has expired: detach it and clear its rollup hours in
    one short transaction, then delete its idempotency keys and read marks
    in batches, then the table. A drop cut short is finished next time."""
    now = now or utcnow()
    with _changing_partitions() as conn:
        if conn is None:
            return []
        tenant_ids = list(conn.exec_driver_sql("SELECT id FROM tenants").scalars())
        for part in partitions(conn):
            # activities_before (start None) is never dropped: backfills land there, and it is pruned by rows.
            if part.start is None or part.end is None or part.end > now \
                    or _holds_unexpired(conn, part.name, tenant_ids, now):
                continue
            conn.exec_driver_sql(f"ALTER TABLE activities DETACH PARTITION {part.name}")
            _clear_rollups(conn, part)
        leftovers = list(conn.execute(_DETACHED).scalars())
    return [Dropped(name, _clean_up_and_drop(name)) for name in leftovers]


def _holds_unexpired(conn, name: str, tenant_ids: list[int], now: datetime) -> bool:
    # Per tenant, so each question is one probe of the partition's (tenant_id, expires_at) index.
    return conn.exec_driver_sql(
        f"SELECT EXISTS (SELECT 1 FROM unnest(%(tenants)s::int[]) AS t(id) WHERE EXISTS ("
        f"SELECT 1 FROM {name} a WHERE a.tenant_id = t.id AND a.expires_at > %(now)s))",
        {"tenants": tenant_ids, "now": now}).scalar_one()


def _clear_rollups(conn, part: Partition) -> None:
    """The month held every event of its hours and days: none remain."""
    for table, column in (("activity_rollups", "hour"), ("activity_rollups_daily", "day")):
        where = [f"{column} < %(end)s"] + ([f"{column} >= %(start)s"] if part.start else [])
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE {' AND '.join(where)}", {"start": part.start, "end": part.end})


def _clean_up_and_drop(name: str) -> int:
    """Delete what refers to a detached month's events (retention.forget), batch by batch, then the table."""
    events = 0
    after = (0, "00000000-0000-0000-0000-000000000000")
    while True:
        with db.engine.begin() as conn:
            batch = conn.exec_driver_sql(
                f"SELECT tenant_id, id, source, source_id FROM {name} WHERE (tenant_id, id) > (%(t)s, %(id)s::uuid)"
                f" ORDER BY tenant_id, id LIMIT {CLEANUP_BATCH}", {"t": after[0], "id": after[1]}).all()
            if not batch:
                conn.exec_driver_sql(f"DROP TABLE {name}")
                return events
            forget(conn, batch)
        events += len(batch)
        after = (batch[-1].tenant_id, str(batch[-1].id))


def describe() -> list[Partition]:
    """Each partition with its estimated events and its size."""
    with db.engine.connect() as conn:
        return partitions(conn) if is_partitioned(conn) else []

"""Hourly rollups of the events: kept by every writer, read by stats.

A rollup row counts a tenant's events of one hour and one (type, source,
status, priority, tool), with a fixed log-scale histogram of their durations
(`models.DURATION_BOUNDS`). Every number in it merges by addition, so:

- every insert adds its rows' counts in its own transaction, one upsert
  per key in the batch, not per event (a 1,000-event batch is a handful of
  rows): on PostgreSQL a statement trigger (`pg_trigger_sql`), so ingest,
  COPY and any other writer are covered; on SQLite the writers add a
  `Tally` (ingest and `flask seed`);
- the duration maximum merges by GREATEST, so it is exact while events are
  only added; whatever deletes events (`retention.prune`) recomputes the
  hours it touched from the rows that remain (`recompute`);
- `flask rollups rebuild` recomputes everything, and is what the tests
  compare with.

Hot rows: several writers adding to the same hour and key would queue on one
row lock until each commits. On PostgreSQL each writing transaction takes the
first free shard (a non-blocking advisory lock on 0..ROLLUP_SHARDS-1) and
writes its rows under that shard; readers sum the shards. A lone writer
always takes shard 0, so shards only multiply rows under real concurrency.
SQLite has one writer at a time and always uses shard 0.
"""
from __future__ import annotations

import bisect
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..models import (
    DURATION_BOUNDS, DURATION_COLUMNS, ROLLUP_KEY, ROLLUP_SHARDS, ActivityRollup,
)
from .tables import activities

rollups = ActivityRollup.__table__
HOUR = timedelta(hours=1)
_VALUE_COLUMNS = ("events", "timed", "duration_max") + DURATION_COLUMNS
# The advisory-lock class (first key) of the shard locks: 'roll'.
SHARD_LOCK_CLASS = 0x726F6C6C
_PG_SHARD = (
    f"COALESCE((SELECT s FROM generate_series(0, {ROLLUP_SHARDS - 1}) AS s "
    f"WHERE pg_try_advisory_xact_lock({SHARD_LOCK_CLASS}, s) LIMIT 1), mod(pg_backend_pid(), {ROLLUP_SHARDS}))"
)


def duration_bucket(duration_ms: int) -> int:
    """The histogram bucket of a duration; the SQL below agrees (`_bucket_of`)."""
    return bisect.bisect_right(DURATION_BOUNDS, duration_ms)


def truncate_hour(moment: datetime) -> datetime:
    """The UTC hour a moment falls in (an offset of :30 must not shift it)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.replace(minute=0, second=0, microsecond=0, tzinfo=timezone.utc)


# ------------------------------------------------------------------ writing


class Tally:
    """Rollup rows of events counted in Python: bulk loads and SQLite ingest."""

    def __init__(self):
        self.rows: dict[tuple, list] = {}

    def add(self, event: dict, tenant_id: int) -> None:
        is_tool = event.get("entity_type") == "tool" and event.get("entity_id")
        key = (tenant_id, truncate_hour(event["occurred_at"]), event["type"], event["source"],
               event.get("status") or "", event.get("priority") or "normal", event["entity_id"] if is_tool else "")
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = [0, 0, None] + [0] * len(DURATION_COLUMNS)
        row[0] += 1
        duration = event.get("duration_ms")
        if duration is not None:
            row[1] += 1
            row[2] = duration if row[2] is None else max(row[2], duration)
            row[3 + duration_bucket(duration)] += 1

    def params(self, shard: int = 0) -> list[dict]:
        """One parameter set per rollup row, in key order (concurrent upserts lock rows in one order)."""
        return [{**dict(zip(ROLLUP_KEY, (*key, shard))), **dict(zip(_VALUE_COLUMNS, values))}
                for key, values in sorted(self.rows.items(), key=lambda kv: kv[0])]


def _upsert(dialect: str, insert=None):
    """An insert into the rollups (`insert`, or one of values) that adds to the rows already there."""
    insert = insert if insert is not None else _insert_for(dialect)
    t = rollups.c
    excluded = insert.excluded
    greatest = sa.func.greatest if dialect == "postgresql" else (
        lambda a, b: sa.func.coalesce(sa.func.max(a, b), a, b))
    changes = {name: t[name] + excluded[name] for name in _VALUE_COLUMNS if name != "duration_max"}
    changes["duration_max"] = greatest(t.duration_max, excluded.duration_max)
    return insert.on_conflict_do_update(index_elements=list(ROLLUP_KEY), set_=changes)


def _insert_for(dialect: str):
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(rollups)


def add_tally(conn, tally: Tally) -> None:
    """Add counted rows to the rollups on `conn`, in its transaction."""
    if tally.rows:
        conn.execute(_upsert(conn.dialect.name), tally.params())


def _bucket_of(duration, dialect: str):
    if dialect == "postgresql":
        return sa.func.width_bucket(duration, sa.literal_column(
            "ARRAY[" + ",".join(map(str, DURATION_BOUNDS)) + "]::bigint[]"))
    return sa.case((duration.is_(None), None), *((duration < bound, k) for k, bound in enumerate(DURATION_BOUNDS)),
                   else_=len(DURATION_BOUNDS))


def grouped(source, dialect: str, *, shard=None, ordered: bool = True) -> sa.Select:
    """Rollup rows of the events in `source` (a select or table with the
    activity columns), computed in SQL: what ingest adds on PostgreSQL,
    `recompute` and `rebuild` store, and stats add for part-hours."""
    c = source.c
    if dialect == "postgresql":
        hour = sa.func.date_trunc("hour", c.occurred_at, "UTC")
    else:
        hour = sa.func.strftime("%Y-%m-%d %H:00:00.000000", c.occurred_at)
    tool = sa.case((sa.and_(c.entity_type == "tool", c.entity_id.is_not(None)), c.entity_id), else_="")
    keys = [c.tenant_id, hour.label("hour"), c.type, c.source, sa.func.coalesce(c.status, "").label("status"),
            c.priority, tool.label("tool")]
    inner = sa.select(*keys, c.duration_ms, _bucket_of(c.duration_ms, dialect).label("bucket")).subquery("timed")
    i = inner.c
    key_columns = [i.tenant_id, i.hour, i.type, i.source, i.status, i.priority, i.tool]
    shard_column = (sa.literal_column(shard) if isinstance(shard, str) else sa.literal(shard or 0)).label("shard")
    query = (
        sa.select(*key_columns, shard_column, sa.func.count().label("events"),
                  sa.func.count(i.duration_ms).label("timed"), sa.func.max(i.duration_ms).label("duration_max"),
                  *(sa.func.count().filter(i.bucket == k).label(name) for k, name in enumerate(DURATION_COLUMNS)))
        .group_by(*key_columns)
    )
    return query.order_by(*key_columns) if ordered else query


def pg_trigger_sql() -> str:
    """PostgreSQL: the statement trigger that adds every INSERT's rows
    (ingest's, COPY's) to the rollups, in the inserting statement's
    transaction. The migration creates it.

    A trigger rather than a CTE in ingest's INSERT: its statement has no
    parameters, so PL/pgSQL plans it once per connection; the same upsert as
    a CTE of a prepared INSERT was planned afresh on every POST (PostgreSQL
    kept choosing custom plans for its array parameters), 9 ms a time."""
    new_rows = sa.table("new_rows", *(sa.column(name) for name in activities.c.keys()))
    add = _upsert("postgresql", _insert_for("postgresql").from_select(
        [*ROLLUP_KEY, *_VALUE_COLUMNS], grouped(new_rows, "postgresql", shard=_PG_SHARD)))
    upsert = str(add.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    return f"""
        CREATE FUNCTION activities_rollup() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
          {upsert};
          RETURN NULL;
        END
        $fn$;
        CREATE TRIGGER activities_rollup AFTER INSERT ON activities REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION activities_rollup();
    """


# --------------------------------------------------------------- recomputing


def recompute(conn, tenant_id: int | None, hours=None) -> None:
    """Replace the rollup rows of a tenant (every tenant if None) in `hours`
    (all if None) with rows computed from the events stored now, in `conn`'s
    transaction.

    PostgreSQL: SHARE ROW EXCLUSIVE on the rollups makes writers that would
    add to them wait for this transaction (their statement locks the table
    first), so none is counted twice or lost; readers are not blocked.
    """
    dialect = conn.dialect.name
    if hours is not None:
        hours = sorted(set(hours))
        if not hours:
            return
    if dialect == "postgresql":
        conn.exec_driver_sql("LOCK TABLE activity_rollups IN SHARE ROW EXCLUSIVE MODE")
    scope, events = [], sa.select(activities)
    if tenant_id is not None:
        scope.append(rollups.c.tenant_id == tenant_id)
        events = events.where(activities.c.tenant_id == tenant_id)
    if hours is not None:
        scope.append(rollups.c.hour.in_(hours))
        events = events.where(sa.or_(*(
            sa.and_(activities.c.occurred_at >= hour, activities.c.occurred_at < hour + HOUR) for hour in hours)))
    conn.execute(sa.delete(rollups).where(*scope))
    conn.execute(sa.insert(rollups).from_select([*ROLLUP_KEY, *_VALUE_COLUMNS], grouped(events.subquery(), dialect)))


def rebuild(tenant_id: int | None = None) -> int:
    """`flask rollups rebuild`: recompute a tenant's rollups (every tenant's
    if None) from its events, in one transaction; returns the rows written."""
    from ..extensions import db

    conn = db.session.connection()
    recompute(conn, tenant_id)
    db.session.commit()
    count = sa.select(sa.func.count()).select_from(rollups)
    if tenant_id is not None:
        count = count.where(rollups.c.tenant_id == tenant_id)
    return db.session.execute(count).scalar()

"""Hourly rollups of the events: kept by every writer, read by stats.

A rollup row counts a tenant's events of one hour and one (type, source,
status, priority, tool), with a fixed log-scale histogram of their durations
(`models.DURATION_BOUNDS`). A second table holds the same counts per UTC day
(`daily_rollups`) for the days before a marker (`rollup_state.daily_before`):
a range of whole days reads a row per day and key, not one per hour, about
20 times fewer. A day's daily rows are summed from its hourly rows once it
is over (`compact`, which moves the marker); after that a writer adds a
late event to both tables. Writing both for every event cost a quarter more
per single-row INSERT (634 -> 794 us); an event of a day not yet compacted
writes the hourly rows only, and the check costs 6 % (706 -> 748 us; each
pair measured A/B in one run). Every number in a row merges by addition, so:

- every insert adds its rows' counts in its own transaction, one upsert
  per key in the batch, not per event (a 1,000-event batch is a handful of
  rows): on PostgreSQL a statement trigger (`pg_trigger_sql`), so ingest,
  COPY and any other writer are covered; on SQLite the writers add a
  `Tally` (ingest and `flask seed`);
- the duration maximum merges by GREATEST, so it is exact while events are
  only added; whatever deletes events (`retention.prune`) recomputes the
  hours it touched from the rows that remain, and those hours' compacted
  days from their hours (`recompute`);
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
    DURATION_BOUNDS, DURATION_COLUMNS, ROLLUP_KEY, ROLLUP_SHARDS, ActivityRollup, ActivityRollupDaily, RollupState,
    utcnow,
)
from .tables import activities

rollups = ActivityRollup.__table__
daily_rollups = ActivityRollupDaily.__table__
rollup_state = RollupState.__table__
# Each table's time column: the start of its hour or day.
PERIOD = {rollups: "hour", daily_rollups: "day"}
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
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


def truncate_day(moment: datetime) -> datetime:
    return truncate_hour(moment).replace(hour=0)


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

    def params(self, shard: int = 0, table=rollups, before: datetime | None = None) -> list[dict]:
        """One parameter set per row of `table` (the hourly rollups, or the
        daily for the days before `before`), in key order (concurrent upserts
        lock rows in one order)."""
        rows = self.rows
        if table is daily_rollups:
            rows = {}
            for (tenant, hour, *rest), values in self.rows.items():
                if before is not None and hour >= before:
                    continue
                key = (tenant, hour.replace(hour=0), *rest)
                rows[key] = added(rows[key], values) if key in rows else values
        names = _key(table)
        return [{**dict(zip(names, (*key, shard))), **dict(zip(_VALUE_COLUMNS, values))}
                for key, values in sorted(rows.items(), key=lambda kv: kv[0])]


def added(a: list, b: list, longest: int = 2) -> list:
    """Two rows' values as one: (events, timed, duration_max, d0, ...) by
    default; each adds but the duration maximum at `longest`, which takes the
    larger (None is no duration)."""
    return [x + y if i != longest else (y if x is None else x if y is None else max(x, y))
            for i, (x, y) in enumerate(zip(a, b))]


def _key(table) -> list[str]:
    """A rollup table's key columns, in primary-key order."""
    return [PERIOD[table] if name == "hour" else name for name in ROLLUP_KEY]


def _upsert(dialect: str, insert=None, table=rollups):
    """An insert into a rollup table (`insert`, or one of values) that adds to the rows already there."""
    insert = insert if insert is not None else _insert_for(dialect, table)
    t = table.c
    excluded = insert.excluded
    greatest = sa.func.greatest if dialect == "postgresql" else (
        lambda a, b: sa.func.coalesce(sa.func.max(a, b), a, b))
    changes = {name: t[name] + excluded[name] for name in _VALUE_COLUMNS if name != "duration_max"}
    changes["duration_max"] = greatest(t.duration_max, excluded.duration_max)
    return insert.on_conflict_do_update(index_elements=_key(table), set_=changes)


def _insert_for(dialect: str, table=rollups):
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def add_tally(conn, tally: Tally) -> None:
    """Add counted rows to the hourly rollups, and those of compacted days to
    the daily, on `conn`, in its transaction."""
    if not tally.rows:
        return
    conn.execute(_upsert(conn.dialect.name), tally.params())
    late = tally.params(table=daily_rollups, before=daily_before(conn))
    if late:
        conn.execute(_upsert(conn.dialect.name, table=daily_rollups), late)


def daily_before(conn) -> datetime:
    """The daily rollups hold every day before this (the start of a UTC day;
    migration 0015 writes the one row)."""
    return conn.execute(sa.select(rollup_state.c.daily_before).where(rollup_state.c.id == 1)).scalar_one()


def _bucket_of(duration, dialect: str):
    if dialect == "postgresql":
        return sa.func.width_bucket(duration, sa.literal_column(
            "ARRAY[" + ",".join(map(str, DURATION_BOUNDS)) + "]::bigint[]"))
    return sa.case((duration.is_(None), None), *((duration < bound, k) for k, bound in enumerate(DURATION_BOUNDS)),
                   else_=len(DURATION_BOUNDS))


def _period_start(moment, period: str, dialect: str):
    """SQL: the start of the hour or day `moment` falls in, as the rollups store it."""
    if dialect == "postgresql":
        return sa.func.date_trunc(period, moment, "UTC")
    return sa.func.strftime("%Y-%m-%d %H:00:00.000000" if period == "hour" else "%Y-%m-%d 00:00:00.000000", moment)


def per_bucket(source, dialect: str, period: str = "hour") -> sa.Select:
    """The events in `source` (a select or table with the activity columns)
    counted per rollup key and duration bucket: (tenant_id, <period>, type,
    source, status, priority, tool, bucket, n, longest). `bucket` is NULL for
    events without a duration. The first step of `grouped`; stats pivot it
    in Python (`pivot`)."""
    c = source.c
    start = _period_start(c.occurred_at, period, dialect)
    tool = sa.case((sa.and_(c.entity_type == "tool", c.entity_id.is_not(None)), c.entity_id), else_="")
    keys = [c.tenant_id, start.label(period), c.type, c.source, sa.func.coalesce(c.status, "").label("status"),
            c.priority, tool.label("tool")]
    inner = sa.select(*keys, c.duration_ms, _bucket_of(c.duration_ms, dialect).label("bucket")).subquery("timed")
    i = inner.c
    key_columns = [i.tenant_id, i[period], i.type, i.source, i.status, i.priority, i.tool, i.bucket]
    return sa.select(*key_columns, sa.func.count().label("n"), sa.func.max(i.duration_ms).label("longest")) \
        .group_by(*key_columns)


def pivot(rows, period: str = "hour") -> list[dict]:
    """`per_bucket` rows as rollup rows (key, events, timed, duration_max, d0..d97)."""
    found: dict[tuple, dict] = {}
    for row in rows:
        key = tuple(row[name] for name in _KEY_NAMES[period])
        into = found.get(key)
        if into is None:
            into = found[key] = {**dict(zip(_KEY_NAMES[period], key)), "shard": 0, "events": 0, "timed": 0,
                                 "duration_max": None, **dict.fromkeys(DURATION_COLUMNS, 0)}
        into["events"] += row["n"]
        if row["bucket"] is not None:
            into["timed"] += row["n"]
            into[DURATION_COLUMNS[row["bucket"]]] += row["n"]
            longest = row["longest"]
            into["duration_max"] = longest if into["duration_max"] is None else max(into["duration_max"], longest)
    return list(found.values())


_KEY_NAMES = {period: ("tenant_id", period, "type", "source", "status", "priority", "tool")
              for period in ("hour", "day")}


def grouped(source, dialect: str, *, shard=None, ordered: bool = True, period: str = "hour") -> sa.Select:
    """Rollup rows (of `period`, hour or day) of the events in `source` (a
    select or table with the activity columns), computed in SQL: what ingest
    adds on PostgreSQL, `recompute` and `rebuild` store.

    Two steps: events counted per key and duration bucket (`per_bucket`, a
    few aggregates a row), then those few rows a key pivoted into d0..d97.
    Pivoting in one step tested 98 FILTERs on every event (a 10M tenant's
    hour is 30,000 events)."""
    b = per_bucket(source, dialect, period).subquery("per_bucket").c
    key_columns = [b.tenant_id, b[period], b.type, b.source, b.status, b.priority, b.tool]
    shard_column = (sa.literal_column(shard) if isinstance(shard, str) else sa.literal(shard or 0)).label("shard")

    def total(condition=None):
        counted = b.n if condition is None else sa.case((condition, b.n), else_=0)
        return sa.cast(sa.func.sum(counted), sa.BigInteger)

    query = (
        sa.select(*key_columns, shard_column, total().label("events"),
                  total(b.bucket.is_not(None)).label("timed"), sa.func.max(b.longest).label("duration_max"),
                  *(total(b.bucket == k).label(name) for k, name in enumerate(DURATION_COLUMNS)))
        .group_by(*key_columns)
    )
    return query.order_by(*key_columns) if ordered else query


def pg_function_sql(daily: bool = True) -> str:
    """PostgreSQL: the trigger function that adds every INSERT's rows
    (ingest's, COPY's) to the rollups, in the inserting statement's
    transaction: hourly, and (`daily`, from migration 0015) daily.

    A trigger rather than a CTE in ingest's INSERT: its statement has no
    parameters, so PL/pgSQL plans it once per connection; the same upsert as
    a CTE of a prepared INSERT was planned afresh on every POST (PostgreSQL
    kept choosing custom plans for its array parameters), 9 ms a time. Both
    upserts take the same shard: the transaction already holds its lock."""
    new_rows = sa.table("new_rows", *(sa.column(name) for name in activities.c.keys()))

    def upsert(table, source) -> str:
        add = _upsert("postgresql", _insert_for("postgresql", table).from_select(
            [*_key(table), *_VALUE_COLUMNS], grouped(source, "postgresql", shard=_PG_SHARD, period=PERIOD[table])),
            table)
        return str(add.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))

    body = upsert(rollups, new_rows) + ";"
    if daily:
        marker = "(SELECT daily_before FROM rollup_state WHERE id = 1)"
        late = sa.select(new_rows).where(new_rows.c.occurred_at < sa.literal_column(marker)).subquery("late")
        body += f"""
          -- Events of days already compacted (late ones) go to the daily rows too.
          IF EXISTS (SELECT 1 FROM new_rows WHERE occurred_at < {marker}) THEN
            {upsert(daily_rollups, late)};
          END IF;"""
    return f"""
        CREATE OR REPLACE FUNCTION activities_rollup() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
          {body}
          RETURN NULL;
        END
        $fn$;
    """


def pg_trigger_sql(daily: bool = True) -> str:
    """The function (`pg_function_sql`) and the statement trigger that calls it."""
    return pg_function_sql(daily) + """
        CREATE TRIGGER activities_rollup AFTER INSERT ON activities REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION activities_rollup();
    """


# --------------------------------------------------------------- recomputing


def recompute(conn, tenant_id: int | None, hours=None, *, daily: bool = True) -> None:
    """Replace the rollup rows of a tenant (every tenant if None) in `hours`
    (all if None) with rows computed from the events stored now, in `conn`'s
    transaction; then (`daily`) the daily rows of those hours' days, summed
    from their hourly rows (a day's events are up to 24 times as many).

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
        if daily:
            conn.exec_driver_sql("LOCK TABLE activity_rollups_daily IN SHARE ROW EXCLUSIVE MODE")
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
    if daily:
        _recompute_days(conn, tenant_id, None if hours is None else {truncate_day(h) for h in hours})


def _recompute_days(conn, tenant_id: int | None, days=None, *, since: datetime | None = None,
                    until: datetime | None = None) -> None:
    """Replace the daily rows of `days` (all if None; or of [since, until))
    with the sums of their hourly rows: compacted days only, unless `until`
    says up to where."""
    dialect, r, d = conn.dialect.name, rollups.c, daily_rollups.c
    until = until or daily_before(conn)
    scope, hourly = [d.day < until], [r.hour < until]
    if since is not None:
        scope.append(d.day >= since)
        hourly.append(r.hour >= since)
    if tenant_id is not None:
        scope.append(d.tenant_id == tenant_id)
        hourly.append(r.tenant_id == tenant_id)
    if days is not None:
        days = sorted(day for day in days if day < until)
        if not days:
            return
        scope.append(d.day.in_(days))
        hourly.append(sa.or_(*(sa.and_(r.hour >= day, r.hour < day + DAY) for day in days)))
    keys = [r.tenant_id, _period_start(r.hour, "day", dialect).label("day"), r.type, r.source, r.status, r.priority,
            r.tool]
    sums = [sa.func.sum(r.events), sa.func.sum(r.timed), sa.func.max(r.duration_max),
            *(sa.func.sum(r[name]) for name in DURATION_COLUMNS)]
    conn.execute(sa.delete(daily_rollups).where(*scope))
    conn.execute(sa.insert(daily_rollups).from_select(
        [*_key(daily_rollups), *_VALUE_COLUMNS],
        sa.select(*keys, sa.literal(0).label("shard"), *sums).where(*hourly).group_by(*keys)))


def compact(conn, now: datetime | None = None) -> int:
    """Sum the hourly rows of every day over by `now` and not yet compacted
    into daily rows, and move the marker to the start of `now`'s day, in
    `conn`'s transaction; returns how many days. Writers wait meanwhile (on
    PostgreSQL the table locks of `recompute`; SQLite has one writer), so an
    event is counted by the compaction or added by its writer, never both."""
    today = truncate_day(now or utcnow())
    if daily_before(conn) >= today:
        return 0
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE activity_rollups IN SHARE ROW EXCLUSIVE MODE")
        conn.exec_driver_sql("LOCK TABLE activity_rollups_daily IN SHARE ROW EXCLUSIVE MODE")
        conn.exec_driver_sql("LOCK TABLE rollup_state IN SHARE ROW EXCLUSIVE MODE")
    since = daily_before(conn)  # again, under the locks: another compaction may have run
    if since >= today:
        return 0
    _recompute_days(conn, None, since=since, until=today)
    conn.execute(sa.update(rollup_state).where(rollup_state.c.id == 1).values(daily_before=today))
    return (today - since).days


def compact_rollups() -> int:
    """`compact` in a transaction of its own (`flask rollups compact`, `flask prune`); how many days."""
    from ..extensions import db

    days = compact(db.session.connection())
    db.session.commit()
    return days


def compact_if_due() -> datetime:
    """`compact_rollups` if a day has ended since the last compaction (stats
    by the day ask); returns the marker, as `daily_before` would."""
    from ..extensions import db

    marker, today = daily_before(db.session.connection()), truncate_day(utcnow())
    if marker < today:
        compact_rollups()
        marker = daily_before(db.session.connection())
    return marker


def rebuild(tenant_id: int | None = None) -> int:
    """`flask rollups rebuild`: recompute a tenant's rollups (every tenant's
    if None) from its events, in one transaction; returns the hourly rows written."""
    from ..extensions import db

    conn = db.session.connection()
    recompute(conn, tenant_id)
    db.session.commit()
    count = sa.select(sa.func.count()).select_from(rollups)
    if tenant_id is not None:
        count = count.where(rollups.c.tenant_id == tenant_id)
    return db.session.execute(count).scalar()

"""Stats of what a filter matches: counts, a time series, top lists, durations.

Two paths, and the answer says which it took (`Stats.path`):

- `rollups`: a filter of only ROLLUP_FIELDS is answered from the rollups
  (store/rollups.py): whole hours from their rows, the part-hours at
  either end of since/until from their events, grouped the same way; with a
  series by the day, whole days from the daily rows. Counts
  and series are exact; p50/p95 come from the duration histogram (within
  one bucket, under 19 %). The top actors and entities are not in the
  rollups: they count the latest TOP_WINDOW matching events among the
  latest SCAN_CAP events (`top_lists_since` says from when).
- `scan`: any other filter (a search, an actor, read state...) groups the
  matching events among the newest SCAN_CAP events at most
  (`scanned_since` says from when, if the cap cut in); percentiles are exact.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy.sql.visitors import replacement_traverse

from ..errors import InvalidQuery
from ..extensions import db
from ..filters import ActivityFilter
from ..models import DURATION_COLUMNS
from .database import dialect
from .durations import TOP, Durations, from_histogram, summarize, tool_durations
from .filtering import apply_filter
from .reading import Reader
from .rollups import (
    DAY, HOUR, PERIOD, added, compact_if_due, daily_rollups, per_bucket, pivot, rollups, truncate_day, truncate_hour,
)
from .tables import activities


# Time series points at most; a finer bucket over a longer span is refused.
MAX_BUCKETS = 2000
# An automatic bucket is an hour up to this span, a day beyond it.
HOURLY_UP_TO = timedelta(days=3)
# The filter fields the rollups can answer (names of `filters.ActivityFilter`).
ROLLUP_FIELDS = frozenset({"type", "source", "status", "priority", "since", "until"})
# A scan reads at most this many of the newest events (in the filter's times).
SCAN_CAP = 20_000
# The top actors and entities of the rollup path count this many of the newest
# matching events, among the newest SCAN_CAP events.
TOP_WINDOW = 10_000


@dataclass
class SeriesPoint:
    at: datetime
    count: int
    failed: int
    by_source: dict[str, int]


@dataclass
class Stats:
    total: int
    first_at: datetime | None
    last_at: datetime | None
    by_type: list[tuple[str, int]]
    by_source: list[tuple[str, int]]
    by_status: list[tuple[str | None, int]]
    by_priority: list[tuple[str, int]]
    bucket: str
    series: list[SeriesPoint]
    top_actors: list[tuple[str, str | None, int]]
    top_entities: list[tuple[str | None, str, str | None, int]]
    durations: Durations
    tools: list[tuple[str, Durations]]
    path: str = "scan"  # "rollups" or "scan"
    scanned_since: datetime | None = None  # the scan's cap cut in here
    top_lists_since: datetime | None = None  # the top actors and entities count from here

    @property
    def failed(self) -> int:
        return dict(self.by_status).get("failed", 0)

    @property
    def succeeded(self) -> int:
        return dict(self.by_status).get("success", 0)

    @property
    def failure_rate(self) -> float | None:
        """Failed ÷ (failed + succeeded): events still running or of no outcome do not count."""
        finished = self.failed + self.succeeded
        return self.failed / finished if finished else None


def activity_stats(tenant_id: int, flt: ActivityFilter, bucket: str = "auto", reader: Reader | None = None,
                   *, use_rollups: bool = True) -> Stats:
    """Counts, a time series, top lists and durations of the events `flt` matches.

    `bucket` is `hour`, `day` or `auto` (hours up to HOURLY_UP_TO of span);
    one that makes more than MAX_BUCKETS points is a 400. See the module
    docstring for the two paths; `use_rollups=False` forces the scan.
    """
    if use_rollups and {f.name for f, _ in flt.active} <= ROLLUP_FIELDS:
        return _from_rollups(tenant_id, flt, bucket)
    c = activities.c
    # The cap bounds the rows read, not the rows matched: the scan looks at
    # the newest SCAN_CAP events in the filter's time range, matching or not
    # (a sparse match would otherwise walk the whole tenant).
    scanned_since = _newest_boundary(tenant_id, ActivityFilter(since=flt.since, until=flt.until), None, SCAN_CAP)
    if scanned_since is not None:
        flt = replace(flt, since=max(scanned_since, flt.since or scanned_since))

    def matching(*columns):
        return apply_filter(sa.select(*columns).where(c.tenant_id == tenant_id), flt, reader)

    def counts(column, limit=None):
        query = matching(column, sa.func.count().label("n")).group_by(column).order_by(sa.desc("n"), column)
        return [tuple(row) for row in db.session.execute(query.limit(limit))]

    total, first_at, last_at = db.session.execute(
        matching(sa.func.count(), sa.func.min(c.occurred_at), sa.func.max(c.occurred_at))).one()
    start, end = flt.since or first_at, flt.until or last_at
    bucket = _bucket_for(bucket, start, end)
    at = _bucket_at(c.occurred_at, bucket)
    series = _series(db.session.execute(matching(at, c.source, sa.func.count(), sa.func.count().filter(
        c.status == "failed")).group_by(at, c.source)), bucket, start, end) if total else []
    return Stats(
        total=total, first_at=first_at, last_at=last_at,
        by_type=counts(c.type, 20), by_source=counts(c.source), by_status=counts(c.status),
        by_priority=counts(c.priority), bucket=bucket, series=series,
        **_top_lists(tenant_id, flt, reader, SCAN_CAP),
        durations=summarize(matching(c.duration_ms).where(c.duration_ms.is_not(None))),
        tools=tool_durations(matching), path="scan", scanned_since=scanned_since,
    )


def _top_lists(tenant_id: int, flt: ActivityFilter, reader, window: int) -> dict:
    """The top actors and entities among the newest `window` events `flt`
    matches, in one statement: the window is read once (through the feed
    order's index), then grouped twice. `top_lists_since` is where the window
    starts, if it cut off older events."""
    c = activities.c
    recent = apply_filter(sa.select(c.actor_id, c.actor_name, c.entity_type, c.entity_id, c.entity_name,
                                    c.occurred_at).where(c.tenant_id == tenant_id), flt, reader)
    recent = recent.order_by(c.occurred_at.desc()).limit(window).cte("recent")
    r, n = recent.c, sa.func.count().label("n")
    none = sa.literal(None, sa.String)

    def ranked(kind: str, keys, name):
        return sa.select(*sa.select(sa.literal(kind).label("kind"), *keys, sa.func.max(name).label("name"), n,
                                    sa.literal(None, activities.c.occurred_at.type).label("since"))
                         .where(keys[-1].is_not(None)).group_by(*keys).order_by(sa.desc("n"), keys[-1]).limit(TOP)
                         .subquery().c)

    rows = db.session.execute(sa.union_all(
        ranked("actor", [none.label("a"), r.actor_id.label("b")], r.actor_name),
        ranked("entity", [r.entity_type.label("a"), r.entity_id.label("b")], r.entity_name),
        sa.select(sa.literal("window"), none, none, none, sa.func.count(), sa.func.min(r.occurred_at)),
    )).all()
    counted, since = next((row[4], row[5]) for row in rows if row[0] == "window")
    return dict(
        top_actors=sorted(((b, name, n) for kind, _, b, name, n, _ in rows if kind == "actor"),
                          key=lambda t: (-t[2], t[0])),
        top_entities=sorted(((a, b, name, n) for kind, a, b, name, n, _ in rows if kind == "entity"),
                            key=lambda t: (-t[3], t[1])),
        top_lists_since=since if counted >= window else None,
    )


def _top_lists_among_newest(tenant_id: int, flt: ActivityFilter) -> dict:
    """The rollup path's top lists: the newest TOP_WINDOW matching events
    among the newest SCAN_CAP events in the filter's times, matching or not.
    The second bound is on rows read: a rare filter (github's failures, 0.1 %
    of the events) otherwise walked back through the whole tenant to find
    10,000 of its events, 525 ms at 10M."""
    newest = _newest_boundary(tenant_id, ActivityFilter(since=flt.since, until=flt.until), None, SCAN_CAP)
    if newest is None:
        return _top_lists(tenant_id, flt, None, TOP_WINDOW)
    found = _top_lists(tenant_id, replace(flt, since=max(newest, flt.since or newest)), None, TOP_WINDOW)
    return {**found, "top_lists_since": found["top_lists_since"] or newest}


def _newest_boundary(tenant_id: int, flt: ActivityFilter, reader, count: int) -> datetime | None:
    """occurred_at of the `count`-th newest event `flt` matches; None if there are fewer."""
    c = activities.c
    return db.session.execute(
        apply_filter(sa.select(c.occurred_at).where(c.tenant_id == tenant_id), flt, reader)
        .order_by(c.occurred_at.desc()).offset(count - 1).limit(1)).scalar()


# ------------------------------------------------------------- the rollups


def _on_rollups(flt: ActivityFilter, table=rollups) -> list:
    """The filter's clauses (but its times) on a rollup table: the same SQL
    `apply_filter` writes, its columns swapped for the rollups' namesakes."""
    where = apply_filter(sa.select(activities.c.id), replace(flt, since=None, until=None)).whereclause
    if where is None:
        return []
    return [replacement_traverse(where, {}, lambda e: table.c[e.name] if isinstance(e, sa.Column)
                                 and e.table is activities else None)]


def _ceil_hour(moment: datetime) -> datetime:
    hour = truncate_hour(moment)
    return hour if hour == moment else hour + HOUR


def _ceil_day(moment: datetime) -> datetime:
    day = truncate_day(moment)
    return day if day == moment else day + DAY


def _stored_rows(table, tenant_id: int, flt: ActivityFilter, low: datetime | None, high: datetime | None):
    """The rows of a rollup table in [low, high) (None: unbounded) that `flt`
    matches, with the hourly table's columns (a day's start as its `hour`)."""
    r = table.c
    period = r[PERIOD[table]]
    return (sa.select(*(column.label("hour") if column is period else column for column in r))
            .where(r.tenant_id == tenant_id, *_on_rollups(flt, table),
                   *([period >= low] if low else []), *([period < high] if high else [])))


def _picked_rollups(tenant_id: int, flt: ActivityFilter, *, daily_before: datetime | None = None):
    """The stored rollup rows of what `flt` matches (a subquery, or None if
    there are none to read) and the part-hours at its ends, as (since, until)
    pairs to group from the events. The stored rows are its whole hours;
    with `daily_before` (the compaction marker), its whole days before it from
    the daily rows and the hours left from the hourly (a series by the hour
    cannot use days)."""
    daily = daily_before is not None
    low = _ceil_hour(flt.since) if flt.since else None
    high = truncate_hour(flt.until) if flt.until else None
    parts = []
    if low and high and low >= high:
        return None, [(flt.since, flt.until)]
    ends = [(a, b) for a, b in ((flt.since, low), (high, flt.until)) if a and b and a < b]
    day_low = _ceil_day(low) if (daily and low) else None
    day_high = truncate_day(high) if (daily and high) else None
    if daily:  # the days from the marker on are not compacted yet: their hours are read instead
        day_high = min(day_high, daily_before) if day_high else daily_before
    if daily and not (day_low and day_high and day_low >= day_high):
        parts.append(_stored_rows(daily_rollups, tenant_id, flt, day_low, day_high))
        hours = [(low, day_low)] if low and day_low and low < day_low else []
        if day_high and (high is None or day_high < high):
            hours.append((day_high, high))
    else:
        hours = [(low, high)]
    parts.extend(_stored_rows(rollups, tenant_id, flt, a, b) for a, b in hours)
    return (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery("picked"), ends


def _part_hour_rows(tenant_id: int, flt: ActivityFilter, ends) -> list:
    """Rollup rows grouped from the events of the part-hours, read once:
    every statement below adds them in Python (in SQL each statement grouped
    them again; a part-hour of a 10M tenant is 15,000 events)."""
    if not ends:
        return []
    parts = [per_bucket(apply_filter(sa.select(activities).where(activities.c.tenant_id == tenant_id),
                                     replace(flt, since=since, until=until)).subquery(), dialect())
             for since, until in ends]
    return pivot(db.session.execute(parts[0] if len(parts) == 1 else sa.union_all(*parts)).mappings())


def _from_rollups(tenant_id: int, flt: ActivityFilter, bucket: str) -> Stats:
    p, ends = _picked_rollups(tenant_id, flt)
    extra = _part_hour_rows(tenant_id, flt, ends)
    hours = [_as_utc(row["hour"]) for row in extra]
    if p is not None:
        hours.extend(_as_utc(h) for h in db.session.execute(
            sa.select(sa.func.min(p.c.hour), sa.func.max(p.c.hour)).where(p.c.events > 0)).one() if h is not None)
    first_at = last_at = None
    if hours:
        first_at, last_at = _first_and_last(tenant_id, flt, min(hours), max(hours))
    start, end = flt.since or first_at, flt.until or last_at
    bucket = _bucket_for(bucket, start, end)
    if bucket != "hour":  # a series by the day: whole days from the daily rows
        p, _ = _picked_rollups(tenant_id, flt, daily_before=compact_if_due())
    dims = ("type", "source", "status", "priority")
    counted: dict[str, dict] = {name: {} for name in dims}
    series_rows = []
    if p is not None:
        # The four counts and the series in one statement, over the rows read once.
        cte = sa.select(p.c.hour, p.c.type, p.c.source, p.c.status, p.c.priority, p.c.events).cte("counted")
        k = cte.c
        n, none = sa.func.sum(k.events), sa.literal(None, sa.String)
        failed = sa.func.sum(k.events).filter(k.status == "failed")
        at = _bucket_at(k.hour, bucket)
        for dim, value, when, count, failures in db.session.execute(sa.union_all(
                *(sa.select(sa.literal(name), k[name], none, n, sa.literal(None, sa.BigInteger)).group_by(k[name])
                  .having(n > 0)
                  for name in dims),
                sa.select(sa.literal("series"), k.source, _as_text(at), n, failed)
                .group_by(at, k.source).having(n > 0))):
            if dim == "series":
                series_rows.append((when, value, count, failures))
            else:
                counted[dim][value] = int(count)
    for row in extra:
        for dim in dims:
            counted[dim][row[dim]] = counted[dim].get(row[dim], 0) + row["events"]
        series_rows.append((_truncate(_as_utc(row["hour"]), bucket), row["source"], row["events"],
                            row["events"] if row["status"] == "failed" else 0))
    counts = {dim: [(None if dim == "status" and value == "" else value, count) for value, count in found.items()]
              for dim, found in counted.items()}
    nulls_last = dialect() == "postgresql"  # ties in the order the scan's ORDER BY gives them
    for pairs in counts.values():
        pairs.sort(key=lambda pair: (-pair[1], (pair[0] is None) == nulls_last, pair[0] or ""))
    total = sum(count for _, count in counts["source"])
    # Histograms per tool ('' for events about no tool), summed once; the
    # overall one is their sum.
    by_tool: dict[str, list] = {}
    if p is not None:
        histogram = [sa.func.sum(p.c[name]) for name in DURATION_COLUMNS]
        for tool, *values in db.session.execute(
                sa.select(p.c.tool, sa.func.sum(p.c.timed), sa.func.max(p.c.duration_max), *histogram)
                .where(p.c.timed > 0).group_by(p.c.tool)):
            by_tool[tool] = [int(v) if v is not None else None for v in values]
    for row in extra:
        if row["timed"]:
            values = [row["timed"], row["duration_max"], *(row[name] for name in DURATION_COLUMNS)]
            by_tool[row["tool"]] = added(by_tool[row["tool"]], values, longest=1) if row["tool"] in by_tool else values
    rows = [(tool, *values) for tool, values in by_tool.items()]
    overall = [None, sum(row[1] for row in rows), max((row[2] for row in rows), default=None),
               *(sum(column) for column in zip(*(row[3:] for row in rows)))]
    tools = sorted((row for row in rows if row[0] != ""), key=lambda row: (-row[1], row[0]))[:TOP]
    return Stats(
        total=total, first_at=first_at, last_at=last_at,
        by_type=counts["type"][:20], by_source=counts["source"], by_status=counts["status"],
        by_priority=counts["priority"], bucket=bucket,
        series=_series(series_rows, bucket, start, end) if total else [],
        **_top_lists_among_newest(tenant_id, flt),
        durations=from_histogram(overall), tools=[(row[0], from_histogram(row)) for row in tools],
        path="rollups",
    )


def _first_and_last(tenant_id: int, flt: ActivityFilter, first_hour, last_hour):
    """The exact first and last occurred_at, looked for in the first and last hours only."""
    c = activities.c
    first_hour, last_hour = (_as_utc(h) for h in (first_hour, last_hour))

    def within(hour, order):
        # ORDER BY ... LIMIT 1, not min(): the planner then walks the feed
        # index within the hour instead of a type range's whole index.
        return apply_filter(sa.select(c.occurred_at).where(
            c.tenant_id == tenant_id, c.occurred_at >= hour, c.occurred_at < hour + HOUR), flt
        ).order_by(order).limit(1).scalar_subquery()

    return db.session.execute(sa.select(within(first_hour, c.occurred_at),
                                        within(last_hour, c.occurred_at.desc()))).one()


def _as_text(moment):
    """A time in SQL as UTC text (one column of a UNION ALL with text columns)."""
    if dialect() == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", moment), "YYYY-MM-DD HH24:MI:SS")
    return moment


def _as_utc(moment) -> datetime:
    """A bucket's time as the databases answer it: PostgreSQL a datetime, SQLite text."""
    moment = moment if isinstance(moment, datetime) else datetime.fromisoformat(moment)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _bucket_for(asked: str, start: datetime | None, end: datetime | None) -> str:
    span = (end - start) if start and end else timedelta(0)
    bucket = asked if asked != "auto" else ("hour" if span <= HOURLY_UP_TO else "day")
    if span / _BUCKET_STEP[bucket] > MAX_BUCKETS:
        raise InvalidQuery("bucket", f"{span.days} days by the {bucket} is over {MAX_BUCKETS:,} points; "
                          "use a larger bucket or a shorter since/until")
    return bucket


_BUCKET_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_SQLITE_BUCKET_FORMAT = {"hour": "%Y-%m-%d %H:00:00", "day": "%Y-%m-%d 00:00:00"}


def _truncate(moment: datetime, bucket: str) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment


def _bucket_at(column, bucket: str):
    """`column` (a time) truncated to the bucket, in UTC."""
    if dialect() == "postgresql":
        return sa.func.date_trunc(bucket, column, "UTC").label("at")
    return sa.func.strftime(_SQLITE_BUCKET_FORMAT[bucket], column).label("at")


def _series(rows, bucket: str, start: datetime, end: datetime) -> list[SeriesPoint]:
    """Points from `rows` of (bucket time, source, count, failed), every
    bucket (UTC) from `start` to `end`, empty ones included."""
    points: dict[datetime, SeriesPoint] = {}
    step = _BUCKET_STEP[bucket]
    moment = _truncate(start, bucket)
    while moment <= end:
        points[moment] = SeriesPoint(moment, 0, 0, {})
        moment += step
    for when, source, count, failed in rows:
        when = _as_utc(when)
        point = points.setdefault(when, SeriesPoint(when, 0, 0, {}))
        point.count += int(count)
        point.failed += int(failed or 0)
        point.by_source[source] = point.by_source.get(source, 0) + int(count)
    return sorted(points.values(), key=lambda p: p.at)

"""Stats of what a filter matches: counts, a time series, top lists, durations."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa

from ..errors import InvalidQuery
from ..extensions import db
from ..filters import ActivityFilter
from .database import dialect
from .filtering import apply_filter
from .reading import Reader
from .tables import activities


# Time series points at most; a finer bucket over a longer span is refused.
MAX_BUCKETS = 2000
# An automatic bucket is an hour up to this span, a day beyond it.
HOURLY_UP_TO = timedelta(days=3)
TOP = 10


@dataclass
class Durations:
    """`duration_ms` of some events: how many have one, p50 and p95
    (interpolated, as PostgreSQL's percentile_cont), the longest."""

    count: int
    p50: float | None
    p95: float | None
    max: int | None


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


def activity_stats(tenant_id: int, flt: ActivityFilter, bucket: str = "auto", reader: Reader | None = None) -> Stats:
    """Counts, a time series, top lists and durations of the events `flt` matches.

    `bucket` is `hour`, `day` or `auto` (hours up to HOURLY_UP_TO of span);
    one that makes more than MAX_BUCKETS points is a 400. Each figure is one
    grouped query over the filtered events.
    """
    c = activities.c

    def matching(*columns):
        return apply_filter(sa.select(*columns).where(c.tenant_id == tenant_id), flt, reader)

    def counts(column, limit=None):
        query = matching(column, sa.func.count().label("n")).group_by(column).order_by(sa.desc("n"), column)
        return [tuple(row) for row in db.session.execute(query.limit(limit))]

    total, first_at, last_at = db.session.execute(
        matching(sa.func.count(), sa.func.min(c.occurred_at), sa.func.max(c.occurred_at))).one()
    start, end = flt.since or first_at, flt.until or last_at
    bucket = _bucket_for(bucket, start, end)
    actor = sa.func.max(c.actor_name)
    entity = sa.func.max(c.entity_name)
    return Stats(
        total=total, first_at=first_at, last_at=last_at,
        by_type=counts(c.type, 20), by_source=counts(c.source), by_status=counts(c.status),
        by_priority=counts(c.priority), bucket=bucket,
        series=_series(matching, bucket, start, end) if total else [],
        top_actors=[tuple(r) for r in db.session.execute(
            matching(c.actor_id, actor, sa.func.count().label("n")).where(c.actor_id.is_not(None))
            .group_by(c.actor_id).order_by(sa.desc("n"), c.actor_id).limit(TOP))],
        top_entities=[tuple(r) for r in db.session.execute(
            matching(c.entity_type, c.entity_id, entity, sa.func.count().label("n")).where(c.entity_id.is_not(None))
            .group_by(c.entity_type, c.entity_id).order_by(sa.desc("n"), c.entity_id).limit(TOP))],
        durations=_durations(matching(c.duration_ms).where(c.duration_ms.is_not(None))),
        tools=_tool_durations(matching),
    )


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


def _series(matching, bucket: str, start: datetime, end: datetime) -> list[SeriesPoint]:
    """Events per bucket (UTC) from `start` to `end`, empty buckets included."""
    c = activities.c
    if dialect() == "postgresql":
        at = sa.func.date_trunc(bucket, sa.func.timezone("UTC", c.occurred_at))
    else:
        at = sa.func.strftime(_SQLITE_BUCKET_FORMAT[bucket], c.occurred_at)
    at = at.label("at")
    rows = db.session.execute(
        matching(at, c.source, sa.func.count(), sa.func.count().filter(c.status == "failed")).group_by(at, c.source))
    points: dict[datetime, SeriesPoint] = {}
    step = _BUCKET_STEP[bucket]
    moment = _truncate(start, bucket)
    while moment <= end:
        points[moment] = SeriesPoint(moment, 0, 0, {})
        moment += step
    for when, source, count, failed in rows:
        # PostgreSQL answers a naive UTC timestamp, SQLite the text we formatted.
        when = (when if isinstance(when, datetime) else datetime.fromisoformat(when)).replace(tzinfo=timezone.utc)
        point = points.setdefault(when, SeriesPoint(when, 0, 0, {}))
        point.count += count
        point.failed += failed
        point.by_source[source] = count
    return sorted(points.values(), key=lambda p: p.at)


def _durations(values) -> Durations:
    """Summary of a one-column select of non-null `duration_ms`.

    PostgreSQL computes percentile_cont; SQLite has none, so the two values
    around each rank are read with ORDER BY ... LIMIT 2 OFFSET and
    interpolated the same way (no value list is held in memory).
    """
    column = values.selected_columns[0]
    summary = values.with_only_columns(sa.func.count(), sa.func.max(column))
    if dialect() == "postgresql":
        count, longest, p50, p95 = db.session.execute(summary.add_columns(
            sa.func.percentile_cont(0.5).within_group(column), sa.func.percentile_cont(0.95).within_group(column))).one()
        return Durations(count, _ms(p50), _ms(p95), longest)
    count, longest = db.session.execute(summary).one()

    def percentile(p: float) -> float | None:
        if not count:
            return None
        rank = p * (count - 1)
        around = db.session.execute(values.order_by(column).limit(2).offset(int(rank))).scalars().all()
        low, high = around[0], around[-1]
        return low + (high - low) * (rank - int(rank))

    return Durations(count, _ms(percentile(0.5)), _ms(percentile(0.95)), longest)


def _tool_durations(matching) -> list[tuple[str, Durations]]:
    """`Durations` of the TOP most timed tools, in one grouped query
    (PostgreSQL), or two on SQLite: the counts, then only the rows at the
    ranks the percentiles need, numbered per tool by a window function."""
    c = activities.c
    timed = matching(c.entity_id).where(c.entity_type == "tool", c.duration_ms.is_not(None))
    grouped = (timed.add_columns(sa.func.count().label("n"), sa.func.max(c.duration_ms))
               .group_by(c.entity_id).order_by(sa.desc("n"), c.entity_id).limit(TOP))
    if dialect() == "postgresql":
        rows = db.session.execute(grouped.add_columns(
            sa.func.percentile_cont(0.5).within_group(c.duration_ms),
            sa.func.percentile_cont(0.95).within_group(c.duration_ms)))
        return [(tool, Durations(n, _ms(p50), _ms(p95), longest)) for tool, n, longest, p50, p95 in rows]
    tops = db.session.execute(grouped).all()
    if not tops:
        return []
    wanted = {(tool, rank) for tool, n, _ in tops for p in (0.5, 0.95)
              for rank in (int(p * (n - 1)) + 1, min(int(p * (n - 1)) + 2, n))}
    ranked = timed.where(c.entity_id.in_([tool for tool, _, _ in tops])).add_columns(
        c.duration_ms, sa.func.row_number().over(partition_by=c.entity_id, order_by=c.duration_ms).label("rank"),
    ).subquery()
    at = {(tool, rank): value for tool, value, rank in db.session.execute(
        sa.select(ranked.c.entity_id, ranked.c.duration_ms, ranked.c.rank)
        .where(sa.tuple_(ranked.c.entity_id, ranked.c.rank).in_(sorted(wanted))))}

    def percentile(tool: str, n: int, p: float) -> float:
        rank = p * (n - 1)
        low, high = at[(tool, int(rank) + 1)], at[(tool, min(int(rank) + 2, n))]
        return low + (high - low) * (rank - int(rank))

    return [(tool, Durations(n, _ms(percentile(tool, n, 0.5)), _ms(percentile(tool, n, 0.95)), longest))
            for tool, n, longest in tops]


def _ms(value: float | None) -> float | None:
    """Interpolated milliseconds, to the microsecond (both databases agree to there)."""
    return None if value is None else round(value, 3)


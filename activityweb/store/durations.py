"""Duration summaries of stats: count, p50, p95 and the longest, from the
events (exact, percentile_cont) or from a rollup histogram (within a bucket)."""
from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..extensions import db
from ..models import DURATION_BOUNDS
from .database import dialect
from .tables import activities

# The most timed tools a summary covers.
TOP = 10


@dataclass
class Durations:
    """`duration_ms` of some events: how many have one, p50 and p95
    (interpolated, as PostgreSQL's percentile_cont), the longest."""

    count: int
    p50: float | None
    p95: float | None
    max: int | None



def from_histogram(row) -> Durations:
    """Durations from a histogram row (label, count, max, d0..d97): p50 and
    p95 interpolated like percentile_cont between ranks, each rank's value
    placed log-uniformly within its bucket."""
    _, count, longest, *buckets = row
    count = int(count or 0)
    if not count:
        return Durations(0, None, None, None)
    buckets = [int(b or 0) for b in buckets]

    def value_at(index: int) -> float:
        seen = 0
        for k, in_bucket in enumerate(buckets):
            if index < seen + in_bucket:
                if k == 0:
                    return 0.0
                low = DURATION_BOUNDS[k - 1]
                high = min(DURATION_BOUNDS[k] - 1 if k < len(DURATION_BOUNDS) else longest, longest)
                if high <= low:
                    return float(low)
                return low * (high / low) ** ((index - seen + 0.5) / in_bucket)
            seen += in_bucket
        return float(longest)

    def percentile(p: float) -> float:
        rank = p * (count - 1)
        low, high = value_at(int(rank)), value_at(min(int(rank) + 1, count - 1))
        return low + (high - low) * (rank - int(rank))

    return Durations(count, _ms(percentile(0.5)), _ms(percentile(0.95)), longest)


def summarize(values) -> Durations:
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


def tool_durations(matching) -> list[tuple[str, Durations]]:
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

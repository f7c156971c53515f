"""Cost and tokens of Claude Code sessions: the metric points received over
OpenTelemetry (`integrations/claude_code_otel`), stored once and summed.

Values are scaled integers (`UsagePoint`), so every total here is an exact
sum of what was exported, per session, model, day, project and actor.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..costs import COST, TOKENS, Usage, add_point
from ..extensions import db
from ..models import UsagePoint
from .database import dialect
from .tables import activities

usage_points = UsagePoint.__table__
# The most points a series shows (400 days; 16 days of hours).
SERIES_MAX = 400
GROUPS = ("model", "day", "hour", "project", "actor", "session")


@functools.cache
def _insert(dialect_name: str):
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    return insert(usage_points).on_conflict_do_nothing(index_elements=["tenant_id", "point_key"])


def add_points(tenant_id: int, points: list[dict]) -> int:
    """Store metric points once each (a resent export adds nothing); how many were new."""
    if not points:
        return 0
    result = db.session.execute(_insert(dialect()), [{**p, "tenant_id": tenant_id} for p in points])
    db.session.commit()
    return max(result.rowcount or 0, 0)


def session_usage(tenant_id: int, session_ids) -> dict[str, Usage]:
    """The usage of each of these sessions that has any, with its split by model."""
    ids = [s for s in set(session_ids) if s]
    if not ids:
        return {}
    c = usage_points.c
    rows = db.session.execute(
        sa.select(c.session_id, c.model, c.metric, c.kind, sa.func.sum(c.value))
        .where(c.tenant_id == tenant_id, c.session_id.in_(ids), c.metric.in_((COST, TOKENS)))
        .group_by(c.session_id, c.model, c.metric, c.kind))
    found: dict[str, Usage] = {}
    for session, model, metric, kind, value in rows:
        usage = found.setdefault(session, Usage())
        add_point(usage, metric, kind, int(value))
        add_point(usage.by_model.setdefault(model or "unknown", Usage()), metric, kind, int(value))
    return found


def _first_project(tenant_id: int, session_id):
    """A Claude Code session's project: that of its first hook event with one
    (metrics carry none; a later `cd` would name a subdirectory). A lookup per
    session through the conversation index: ranking every hook event of the
    tenant to find the first ones read all of them, 1.6 s a page at 10M."""
    a = activities.c
    return (sa.select(a.project)
            .where(a.tenant_id == tenant_id, a.conversation_id == session_id, a.source == "claude_code",
                   a.project.is_not(None))
            .order_by(a.occurred_at, a.id).limit(1).scalar_subquery())


def usage_by(tenant_id: int, group: str, since: datetime | None = None, until: datetime | None = None,
             limit: int = 50) -> list[tuple[str | None, Usage]]:
    """Usage grouped by model, day, project, actor or session, largest cost
    first (days in order), within [since, until)."""
    c = usage_points.c
    query = (sa.select(c.metric, c.kind, sa.func.sum(c.value).label("value"))
             .where(c.tenant_id == tenant_id, c.metric.in_((COST, TOKENS))))
    if since is not None:
        query = query.where(c.occurred_at >= since)
    if until is not None:
        query = query.where(c.occurred_at < until)
    if group == "project":
        # Summed per session first, then each session's project looked up once; the sums merge below.
        sessions = query.add_columns(c.session_id).group_by(c.session_id, c.metric, c.kind).subquery()
        s = sessions.c
        query = sa.select(s.metric, s.kind, s.value, _first_project(tenant_id, s.session_id).label("key"))
    else:
        if group == "hour":
            key = (sa.func.date_trunc("hour", c.occurred_at) if dialect() == "postgresql"
                   else sa.func.strftime("%Y-%m-%dT%H:00:00+00:00", c.occurred_at))
        else:
            key = {"model": c.model, "day": c.day, "actor": c.actor_id, "session": c.session_id}[group]
        query = query.add_columns(key.label("key")).group_by(key, c.metric, c.kind)
    rows = db.session.execute(query)
    groups: dict = {}
    for metric, kind, value, group_key in rows:
        if isinstance(group_key, str) and group == "day":
            group_key = date.fromisoformat(group_key)
        elif isinstance(group_key, str) and group == "hour":
            group_key = datetime.fromisoformat(group_key)
        add_point(groups.setdefault(group_key, Usage()), metric, kind, int(value))
    if group in ("day", "hour"):
        ordered = sorted(groups.items(), key=lambda kv: str(kv[0]))
    else:
        ordered = sorted(groups.items(), key=lambda kv: (-kv[1].cost, -kv[1].total_tokens, str(kv[0])))
    return [(_time_key(k) if isinstance(k, date) else k, usage) for k, usage in ordered[:limit]]


def _time_key(moment: date) -> str:
    """A day as 2026-12-02, an hour as 2026-12-02T07:00:00Z."""
    if isinstance(moment, datetime):
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:00:00Z")
    return moment.isoformat()


def metric_totals(tenant_id: int, session_id: str) -> dict[tuple[str, str], int]:
    """Every metric's scaled sum in a session, by (metric, kind): what the exports added up to."""
    c = usage_points.c
    rows = db.session.execute(sa.select(c.metric, c.kind, sa.func.sum(c.value))
                              .where(c.tenant_id == tenant_id, c.session_id == session_id)
                              .group_by(c.metric, c.kind))
    return {(metric, kind): int(value) for metric, kind, value in rows}


@dataclass
class UsageReport:
    """Cost and tokens over a period: in total, per day, and by model, project and actor."""

    total: Usage
    bucket: str  # "day" or "hour": the step of `series`
    series: list  # (day or hour, Usage), in time order
    by_model: list
    by_project: list
    by_actor: list

    def as_json(self) -> dict:
        def rows(pairs, key):
            return [{key: k, **usage.as_json()} for k, usage in pairs]
        return {"total": self.total.as_json(), "bucket": self.bucket, "series": rows(self.series, "at"),
                "by_model": rows(self.by_model, "model"), "by_project": rows(self.by_project, "project"),
                "by_actor": rows(self.by_actor, "actor")}


def usage_report(tenant_id: int, since: datetime | None = None, until: datetime | None = None,
                 bucket: str = "day") -> UsageReport:
    """Usage within [since, until): in total, per `bucket` (day or hour), by model, project and actor."""
    series = usage_by(tenant_id, bucket, since, until, limit=SERIES_MAX)
    total = Usage()
    for _, usage in series:
        total.cost += usage.cost
        for kind, count in usage.tokens.items():
            total.tokens[kind] += count
    return UsageReport(total, bucket, series,
                       *(usage_by(tenant_id, group, since, until) for group in ("model", "project", "actor")))


def prune_points(tenant_id: int, before: datetime) -> int:
    """Delete the tenant's metric points from before `before` (its retention, as
    for events), in the caller's transaction."""
    c = usage_points.c
    result = db.session.execute(sa.delete(usage_points).where(c.tenant_id == tenant_id, c.occurred_at < before))
    return result.rowcount or 0

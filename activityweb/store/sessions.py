"""Claude Code sessions as they run: the session a fork continues, the
sessions waiting on a person, and the lanes of /sessions."""
from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from .. import lanes
from ..extensions import db
from ..models import utcnow
from .tables import activities, public
from .usage import session_usage


def previous_session(tenant_id: int, source: str, project: str | None, before: datetime,
                     other_than: str | None) -> str | None:
    """The session of `source` in `project` most recently active at `before`,
    other than `other_than`: the one a fork continues (Claude Code gives a
    fork a new session id and does not name its parent)."""
    if not project:
        return None
    c = activities.c
    query = (
        sa.select(c.conversation_id)
        .where(c.tenant_id == tenant_id, c.project == project, c.source == source,
               c.occurred_at <= before, c.conversation_id.is_not(None))
        .order_by(c.occurred_at.desc(), c.id.desc()).limit(1)
    )
    if other_than:
        query = query.where(c.conversation_id != other_than)
    return db.session.execute(query).scalar()


# How far back "Needs you" and /sessions look: a session quiet for longer
# is not waiting on anyone any more, nor running.
NEEDS_YOU_HORIZON = timedelta(hours=24)
LANES_HORIZON = timedelta(hours=1)
# The most events /sessions reads (the newest); enough for dozens of busy sessions.
LANES_MAX_EVENTS = 5000
HOOKS = "claude_code"
TELEMETRY = "claude_code_otel"


def _waiting_condition(c=activities.c):
    """SQL for `lanes.is_waiting`."""
    return sa.or_(c.type.in_(lanes.WAITING_TYPES),
                  sa.and_(c.type == "claude.notification", c.entity_id.in_(lanes.WAITING_NOTIFICATIONS)))


def _moving_condition(c=activities.c):
    """SQL for `lanes.moves_on`."""
    return sa.or_(c.type.in_(lanes.MOVING_TYPES),
                  sa.and_(c.type == "claude.notification", c.entity_id.in_(lanes.MOVING_NOTIFICATIONS)))


def waiting_sessions(tenant_id: int, now: datetime | None = None) -> list[lanes.Waiting]:
    """Sessions waiting on a person now, the longest waiting first."""
    now = now or utcnow()
    c = activities.c
    recent = sa.and_(c.tenant_id == tenant_id, c.occurred_at >= now - NEEDS_YOU_HORIZON,
                     c.source.in_((HOOKS, TELEMETRY)), c.conversation_id.is_not(None))
    # Waits are rare (the type index finds them); most events move a session
    # on, so each waiting session is checked for a later one through its own
    # events (the conversation index), not by grouping a day of every
    # session's events (2.4 s on every page at 10M events).
    last_wait = (sa.select(c.conversation_id, sa.func.max(c.occurred_at).label("at"))
                 .where(recent, _waiting_condition()).group_by(c.conversation_id).subquery())
    later = activities.alias("later").c
    moved_on = sa.exists().where(later.tenant_id == tenant_id, later.conversation_id == last_wait.c.conversation_id,
                                 later.source.in_((HOOKS, TELEMETRY)), later.occurred_at > last_wait.c.at,
                                 _moving_condition(later))
    candidates = [row[0] for row in db.session.execute(sa.select(last_wait.c.conversation_id).where(~moved_on))]
    if not candidates:
        return []
    rows = db.session.execute(
        sa.select(activities).where(recent, c.conversation_id.in_(candidates),
                                    sa.or_(_waiting_condition(), _moving_condition()))
        .order_by(c.conversation_id, c.occurred_at, c.id)).mappings()
    by_session: dict[str, list[dict]] = {}
    for row in rows:
        by_session.setdefault(row["conversation_id"], []).append(public(row))
    found = [w for session, events in by_session.items() if (w := lanes.waiting_in(session, events))]
    return sorted(found, key=lambda w: w.since)


def session_lanes(tenant_id: int, now: datetime | None = None) -> list[lanes.Lane]:
    """A lane per Claude Code session active within LANES_HORIZON: running
    ones first (the most recently active first), ended ones last."""
    now = now or utcnow()
    c = activities.c
    active = [row[0] for row in db.session.execute(
        sa.select(c.conversation_id).where(c.tenant_id == tenant_id, c.source == HOOKS,
                                           c.occurred_at >= now - LANES_HORIZON, c.conversation_id.is_not(None))
        .group_by(c.conversation_id))]
    if not active:
        return []
    newest = (sa.select(activities).where(c.tenant_id == tenant_id, c.conversation_id.in_(active),
                                          c.source.in_((HOOKS, TELEMETRY)), c.occurred_at >= now - NEEDS_YOU_HORIZON)
              .order_by(c.occurred_at.desc(), c.id.desc()).limit(LANES_MAX_EVENTS))
    by_session: dict[str, list[dict]] = {}
    for row in reversed(db.session.execute(newest).mappings().all()):
        by_session.setdefault(row["conversation_id"], []).append(public(row))
    found = [lanes.lane_of(session, events, now) for session, events in by_session.items()]
    for session, usage in session_usage(tenant_id, by_session).items():
        next(lane for lane in found if lane.id == session).usage = usage
    return sorted(found, key=lambda lane: (lane.state == "ended", -lane.last_at.timestamp()))

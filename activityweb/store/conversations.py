"""Conversations and sessions: one read as a timeline, the recently active ones,
and the starts a Claude Code finish pairs with."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa

from ..extensions import db
from ..filters import ConversationQuery
from ..models import utcnow
from ..timeline import ENDING_TYPES, RUNNING_IDLE, ConversationSummary, Timeline
from .filtering import apply_filter
from .tables import FEED_ORDER, activities, public
from .usage import session_usage


# The most events one timeline shows; a longer conversation says so.
CONVERSATION_MAX_EVENTS = 5000
# How many of the newest conversation events `list_conversations` reads to
# find the most recently active conversations without grouping them all.
RECENT_CONVERSATION_SCAN = 10_000


def conversation(tenant_id: int, conversation_id: str, limit: int = CONVERSATION_MAX_EVENTS) -> tuple[list[dict], bool]:
    """The events of one conversation in timeline order (`sequence`, then
    time, then receipt; `ix_activities_conversation` serves it), and whether
    `limit` cut them short."""
    c = activities.c
    query = (
        sa.select(activities)
        .where(c.tenant_id == tenant_id, c.conversation_id == conversation_id)
        .order_by(c.sequence.asc().nulls_last(), c.occurred_at, c.id)
        .limit(limit + 1)
    )
    events = [public(r) for r in db.session.execute(query).mappings()]
    return events[:limit], len(events) > limit


def occurred_times(tenant_id: int, source: str, keys: set[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    """When the newest event of each (type, correlation_id) from `source`
    occurred, for the keys that have one: how finishes find their starts."""
    if not keys:
        return {}
    c = activities.c
    rows = db.session.execute(
        sa.select(c.type, c.correlation_id, sa.func.max(c.occurred_at))
        .where(c.tenant_id == tenant_id, c.source == source,
               c.correlation_id.in_({key for _, key in keys}), c.type.in_({kind for kind, _ in keys}))
        .group_by(c.type, c.correlation_id))
    return {(kind, key): at for kind, key, at in rows if (kind, key) in keys}


def conversation_timeline(tenant_id: int, conversation_id: str) -> Timeline | None:
    """The conversation as a timeline, or None if the tenant has no event in it."""
    events, truncated = conversation(tenant_id, conversation_id)
    if not events:
        return None
    usage = session_usage(tenant_id, [conversation_id]).get(conversation_id)
    return Timeline.of(conversation_id, events, truncated).with_usage(usage)


def conversation_names(tenant_id: int, ids) -> dict[str, str]:
    """The first prompt of each of these conversations that has one: what a person calls it."""
    ids = [i for i in ids if i]
    if not ids:
        return {}
    c = activities.c
    names: dict[str, str] = {}
    for conversation_id, summary, title in db.session.execute(
        sa.select(c.conversation_id, c.summary, c.title)
        .where(c.tenant_id == tenant_id, c.conversation_id.in_(ids), c.entity_type == "prompt")
        .order_by(c.conversation_id, c.sequence.asc().nulls_last(), c.occurred_at, c.id)
    ):
        names.setdefault(conversation_id, summary or title)
    return names


@dataclass
class ConversationPage:
    items: list[ConversationSummary]
    # The keyset position (last_at, id) the next page starts after; None on the last page.
    next_after: tuple[datetime, str] | None


def list_conversations(tenant_id: int, query: ConversationQuery, *, limit: int = 50,
                       after: tuple[datetime, str] | None = None, reader=None) -> ConversationPage:
    """One keyset page of conversations, the most recently active first, to the very end
    (`reader`: whose read state a `read` filter in `query.events` means).

    Groups the tenant's conversation events (`ix_activities_conversation`
    serves the grouping) and filters the groups; the page's first prompts
    come in one more query.
    """
    c = activities.c
    if query == ConversationQuery():
        found = _newest_conversation_ids(tenant_id, limit + 1, after)
        if found is not None:  # the page, from a bounded read of the newest events
            in_these = sa.and_(c.tenant_id == tenant_id, c.conversation_id.in_(found))
            query_ids = found
        else:
            in_these = query_ids = None
    else:
        in_these = query_ids = None
    last_at = sa.func.max(c.occurred_at)
    failures = sa.func.count().filter(c.status == "failed")
    ended = sa.func.count().filter(c.type.in_(ENDING_TYPES))
    select = (
        sa.select(c.conversation_id, sa.func.count(), sa.func.min(c.occurred_at), last_at, failures,
                  sa.func.max(c.project), ended)
        .where(c.tenant_id == tenant_id, c.conversation_id.is_not(None))
        .group_by(c.conversation_id)
    )
    if in_these is not None:
        select = select.where(in_these)
    events = replace(query.events, q=query.q) if query.q else query.events
    if not events.is_empty():  # one of its events matches
        matching = apply_filter(sa.select(c.conversation_id).where(c.tenant_id == tenant_id,
                                                                   c.conversation_id.is_not(None)),
                                events, reader)
        select = select.where(c.conversation_id.in_(matching))
    if query.project:
        select = select.having(sa.func.max(c.project) == query.project)
    if query.person:
        person = query.person.lower()
        select = select.having(sa.func.count().filter(sa.or_(sa.func.lower(c.actor_id) == person,
                                                             sa.func.lower(c.actor_name) == person)) > 0)
    if query.failed:
        select = select.having(failures > 0)
    if query.state:
        idle_since = utcnow() - RUNNING_IDLE
        running = sa.and_(ended == 0, last_at >= idle_since)
        select = select.having(running if query.state == "running" else sa.not_(running))
    if after and query_ids is None:
        moment, last_id = after
        select = select.having(sa.or_(last_at < moment, sa.and_(last_at == moment, c.conversation_id < last_id)))
    rows = db.session.execute(select.order_by(last_at.desc(), c.conversation_id.desc()).limit(limit + 1)).all()
    shown = rows[:limit]
    names = conversation_names(tenant_id, [row[0] for row in shown])
    items = [ConversationSummary(*row[:6], first_prompt=names.get(row[0]), ended=bool(row[6])) for row in shown]
    usages = session_usage(tenant_id, [item.id for item in items])
    for item in items:  # cost and tokens, where telemetry came in
        item.usage = usages.get(item.id)
    next_after = (items[-1].last_at, items[-1].id) if len(rows) > limit else None
    return ConversationPage(items, next_after)


def _newest_conversation_ids(tenant_id: int, wanted: int, after: tuple[datetime, str] | None) -> list[str] | None:
    """The next `wanted` conversations in (last_at, id) order after `after`,
    found among the newest RECENT_CONVERSATION_SCAN events below it (the
    feed index) instead of summing every conversation; None when that read
    holds too few of them to be sure (then the caller groups them all).

    Exact: a conversation whose newest event is below the position is first
    met, scanning newest first, at that event; one with an event above the
    position was on an earlier page and is left out.
    """
    c = activities.c
    scan = sa.select(c.conversation_id, c.occurred_at).where(c.tenant_id == tenant_id, c.conversation_id.is_not(None))
    if after:
        scan = scan.where(c.occurred_at <= after[0])
    newest = scan.order_by(*FEED_ORDER).limit(RECENT_CONVERSATION_SCAN).subquery()
    rows = db.session.execute(
        sa.select(newest.c.conversation_id, sa.func.max(newest.c.occurred_at).label("last_at"))
        .group_by(newest.c.conversation_id)).all()
    if after:
        moment, last_id = after
        candidates = [conversation_id for conversation_id, _ in rows]
        shown_before = set()
        for chunk in range(0, len(candidates), 500):
            shown_before.update(db.session.execute(
                sa.select(c.conversation_id).distinct().where(
                    c.tenant_id == tenant_id, c.conversation_id.in_(candidates[chunk:chunk + 500]),
                    sa.or_(c.occurred_at > moment, sa.and_(c.occurred_at == moment, c.conversation_id >= last_id)))
            ).scalars())
        rows = [row for row in rows if row[0] not in shown_before]
    rows.sort(key=lambda row: (row[1], row[0]), reverse=True)
    if len(rows) < wanted:
        return None  # too few in the read (or the end is near): the caller sums them all
    return [conversation_id for conversation_id, _ in rows[:wanted]]


def conversation_projects(tenant_id: int, limit: int = 200) -> list[str]:
    """The projects conversations ran in, for the page's filter menu."""
    c = activities.c
    return list(db.session.execute(
        sa.select(c.project).where(c.tenant_id == tenant_id, c.conversation_id.is_not(None), c.project.is_not(None))
        .group_by(c.project).order_by(c.project).limit(limit)).scalars())

"""Conversations and sessions: one read as a timeline, the recently active ones,
and the starts a Claude Code finish pairs with."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ..extensions import db
from ..filters import ActivityFilter
from ..timeline import ConversationSummary, Timeline
from .filtering import apply_filter
from .tables import FEED_ORDER, activities, public
from .usage import session_usage


# The most events one timeline shows; a longer conversation says so.
CONVERSATION_MAX_EVENTS = 5000
# How many of the newest conversation events `recent_conversations` reads to
# find the most recently active conversations.
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


def recent_conversations(tenant_id: int, flt: ActivityFilter, limit: int = 20) -> list[ConversationSummary]:
    """The conversations most recently active among the events `flt` matches,
    newest first, each summarised over all of its events.

    Finds them among the newest RECENT_CONVERSATION_SCAN matching events (a
    bounded read of the feed index) rather than grouping the whole table.
    """
    c = activities.c
    newest = apply_filter(
        sa.select(c.conversation_id, c.occurred_at).where(c.tenant_id == tenant_id, c.conversation_id.is_not(None)),
        flt,
    ).order_by(*FEED_ORDER).limit(RECENT_CONVERSATION_SCAN).subquery()
    ids = [row[0] for row in db.session.execute(
        sa.select(newest.c.conversation_id).group_by(newest.c.conversation_id)
        .order_by(sa.func.max(newest.c.occurred_at).desc()).limit(limit)
    )]
    if not ids:
        return []
    in_these = sa.and_(c.tenant_id == tenant_id, c.conversation_id.in_(ids))
    totals = db.session.execute(
        sa.select(c.conversation_id, sa.func.count(), sa.func.min(c.occurred_at), sa.func.max(c.occurred_at),
                  sa.func.count().filter(c.status == "failed"), sa.func.max(c.project))
        .where(in_these).group_by(c.conversation_id)
    ).all()
    prompts: dict[str, str] = {}
    for conversation_id, summary, title in db.session.execute(
        sa.select(c.conversation_id, c.summary, c.title).where(in_these, c.entity_type == "prompt")
        .order_by(c.conversation_id, c.sequence.asc().nulls_last(), c.occurred_at, c.id)
    ):
        prompts.setdefault(conversation_id, summary or title)
    by_id = {
        row[0]: ConversationSummary(*row, first_prompt=prompts.get(row[0]))
        for row in totals
    }
    for conversation_id, usage in session_usage(tenant_id, by_id).items():
        by_id[conversation_id].usage = usage
    return [by_id[i] for i in ids if i in by_id]


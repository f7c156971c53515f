"""Claude Code sessions as they run: the session a fork continues, the
sessions waiting on a person, and the lanes of /sessions."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ..extensions import db
from .tables import activities


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

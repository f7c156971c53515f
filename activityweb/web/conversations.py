"""Conversation and session timelines: the recently active ones, paged to
the end, searched and filtered; and one as a vertical flow that stays live
while the conversation runs."""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from flask import abort, render_template, request

from .. import live, store
from ..auth import web_principal
from ..errors import InvalidQuery
from ..filters import MAX_SEARCH_CHARS, MAX_VALUE_CHARS, in_time_range
from ..serialize import encode_cursor
from . import bp
from .views import render_page_or_partial

PAGE_SIZE = 50
STATES = ("running", "ended")


def parse_conversation_query(args) -> store.ConversationQuery:
    def text(name: str, most: int) -> str:
        value = args.get(name, "").strip()
        if len(value) > most:
            raise InvalidQuery(name, f"at most {most} characters")
        return value

    state = args.get("state", "").strip()
    if state and state not in STATES:
        raise InvalidQuery("state", "is running or ended")
    return store.ConversationQuery(q=text("q", MAX_SEARCH_CHARS), project=text("project", MAX_VALUE_CHARS),
                                   person=text("person", MAX_VALUE_CHARS), failed=args.get("failed") == "true",
                                   state=state)


def parse_conversation_cursor(args) -> tuple[datetime, str] | None:
    """The position after which the next page starts (`encode_cursor`'s format; a conversation id is any text)."""
    raw = args.get("cursor", "").strip()
    if not raw:
        return None
    try:
        moment, conversation_id = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        moment = datetime.fromisoformat(moment)
        if moment.tzinfo is None or not isinstance(conversation_id, str):
            raise ValueError
        moment = in_time_range("cursor", moment)  # a year-1 or year-9999 time overflows in UTC
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidQuery("cursor", "is not a cursor this server made") from None
    return moment, conversation_id


def query_args(query: store.ConversationQuery, **changes) -> dict:
    """The query as URL arguments (empty ones left out), with some replaced."""
    args = {"q": query.q, "project": query.project, "person": query.person,
            "failed": "true" if query.failed else "", "state": query.state, **changes}
    return {k: v for k, v in args.items() if v}


@bp.get("/conversations")
def conversations():
    principal = web_principal()
    projects = store.conversation_projects(principal.tenant_id)
    try:
        query = parse_conversation_query(request.args)
        after = parse_conversation_cursor(request.args)
    except InvalidQuery as exc:
        return render_page_or_partial("conversations/index.html", "conversations/_results.html", 400,
                                      query=store.ConversationQuery(), page=None, error=exc, after=None,
                                      projects=projects, query_args=query_args)
    page = store.list_conversations(principal.tenant_id, query, limit=PAGE_SIZE, after=after)
    more = query_args(query, cursor=encode_cursor(page.next_after)) if page.next_after else None
    partial = "conversations/_page.html" if after else "conversations/_results.html"
    return render_page_or_partial("conversations/index.html", partial, query=query, page=page, error=None,
                                  after=after, more=more, projects=projects, query_args=query_args)


@bp.get("/conversations/<conversation_id>")
def conversation(conversation_id: str):
    principal = web_principal()
    live_since = live.position_now()  # before the read: its socket resumes from there
    timeline = store.conversation_timeline(principal.tenant_id, conversation_id)
    if timeline is None:
        abort(404, "No such conversation in this tenant.")
    return render_template("conversations/show.html", live_since=live_since,
                           **vars(timeline))

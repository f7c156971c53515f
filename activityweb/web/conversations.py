"""Conversation and session timelines: the recently active ones, paged to
the end, searched and filtered; and one as a vertical flow that stays live
while the conversation runs."""
from __future__ import annotations

from flask import abort, render_template, request

from .. import live, store
from ..auth import web_principal
from ..errors import InvalidQuery
from ..filters import ConversationQuery, parse_conversation_query
from ..serialize import any_key, encode_cursor, parse_cursor
from . import bp
from .views import render_page_or_partial

PAGE_SIZE = 50


def query_args(query: ConversationQuery, **changes) -> dict:
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
        after = parse_cursor(request.args, any_key)
    except InvalidQuery as exc:
        return render_page_or_partial("conversations/index.html", "conversations/_results.html", 400,
                                      query=ConversationQuery(), page=None, error=exc, after=None,
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

"""Conversation and session timelines: the recently active ones, and one as
a vertical flow that stays live while the conversation runs."""
from __future__ import annotations

from flask import abort, render_template, request

from .. import live, store
from ..auth import web_principal
from ..filters import parse_filter
from . import bp


@bp.get("/conversations")
def conversations():
    principal = web_principal()
    flt = parse_filter(request.args, strict=False)
    found = store.recent_conversations(principal.tenant_id, flt, limit=50)
    return render_template("conversations/index.html", conversations=found, flt=flt)


@bp.get("/conversations/<conversation_id>")
def conversation(conversation_id: str):
    principal = web_principal()
    live_since = live.position_now()  # before the read: its socket resumes from there
    timeline = store.conversation_timeline(principal.tenant_id, conversation_id)
    if timeline is None:
        abort(404, "No such conversation in this tenant.")
    return render_template("conversations/show.html", live_since=live_since,
                           **vars(timeline))

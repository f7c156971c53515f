"""Conversation and session timelines: the recently active ones, and one as
a vertical flow that stays live while the conversation runs."""
from __future__ import annotations

from flask import abort, render_template, request

from .. import store
from ..auth import web_principal
from ..filters import parse_filter
from ..ids import uuid7_floor
from ..models import utcnow
from . import bp
from .reading import web_reader


@bp.get("/conversations")
def conversations():
    principal = web_principal()
    flt = parse_filter(request.args, strict=False)
    found = store.recent_conversations(principal.tenant_id, flt, limit=50, reader=web_reader())
    return render_template("conversations/index.html", conversations=found, flt=flt)


@bp.get("/conversations/<conversation_id>")
def conversation(conversation_id: str):
    principal = web_principal()
    timeline = store.conversation_timeline(principal.tenant_id, conversation_id)
    if timeline is None:
        abort(404, "No such conversation in this tenant.")
    return render_template("conversations/show.html", live_since=uuid7_floor(utcnow()),
                           **vars(timeline))

"""Sockets beside the feed's: a conversation's timeline and the header's
unread count, kept live.

The same protocol and delivery as the feed socket (`sockets.follow_page`):
the page says its position, the server replays what it missed, then sends a
message per batch. What differs is the message, rendered once per batch for
every socket that shares it.
"""
from __future__ import annotations

from flask import Blueprint, g, render_template

from .. import live, store
from ..auth import web_principal
from ..extensions import sock
from ..filters import ActivityFilter
from .present import row_id
from .reading import unread_state, web_reader
from .sockets import follow_page, reset_message

bp = Blueprint("insight_sockets", __name__)
bp.before_request(live.guard(web_principal))


@sock.route("/conversations/<conversation_id>/ws", bp=bp)
def conversation_socket(ws, conversation_id: str):
    """Each batch of the conversation's new events re-renders its timeline
    (a result pairs with a step already drawn, a subagent nests under one),
    swapped out of band over the page's."""
    tenant_id = g.principal.tenant_id

    def render(_delivery):
        try:
            timeline = store.conversation_timeline(tenant_id, conversation_id)
            return render_template("conversations/_timeline.html", oob=True, **vars(timeline)) if timeline else ""
        finally:
            store.release()  # back to waiting

    flt = ActivityFilter(conversation_id=(conversation_id,))
    # The render reads the database, so the socket's owner does it, not the fan-out.
    follow_page(ws, flt, render, ("timeline", tenant_id, conversation_id), direct=False)


@sock.route("/unread/ws", bp=bp)
def unread_socket(ws):
    """An event that arrives is unread by every reader, so each batch goes to
    every page as the same fragment of the rows it takes (`present.row_id`:
    a tool call's two events, one row); the page adds the rows it has not counted."""
    follow_page(ws, ActivityFilter(), lambda d: render_template("reading/_arrived.html", rows=[row_id(e) for e in d]),
                "unread", render_reset=unread_reset)


def unread_reset(reset: live.Reset) -> str:
    """Too far behind to replay: what was missed is not sent, so the page gets
    a fresh count with its fresh position (swapped out of band)."""
    return reset_message(reset) + render_template("reading/_unread.html", oob=True, **unread_state(web_reader()))

"""Sockets beside the feed's: a conversation's timeline and the header's
unread count, kept live.

They reuse the feed socket's machinery (`sockets.follow` and
`sockets.stream`): the page says the newest event it has, the server replays
what it missed, then sends a message per batch of new events. What differs is
the message, rendered once per batch for every socket that shares it.
"""
from __future__ import annotations

from flask import Blueprint, g, render_template

from .. import store
from ..auth import check_origin, web_principal
from ..extensions import sock
from ..filters import ActivityFilter
from .sockets import HELLO_TIMEOUT, REPLAY_LIMIT, Hello, follow, no_compression, serve_socket

bp = Blueprint("insight_sockets", __name__)


@bp.before_request
def guard_handshake():
    """As for the feed socket: a refused client gets a plain HTTP error and no socket."""
    g.principal = web_principal()
    check_origin()
    no_compression()


@sock.route("/conversations/<conversation_id>/ws", bp=bp)
def conversation_socket(ws, conversation_id: str):
    """Each batch of the conversation's new events re-renders its timeline
    (a result pairs with a step already drawn, a subagent nests under one),
    swapped out of band over the page's."""
    tenant_id = g.principal.tenant_id

    def render(_events):
        try:
            timeline = store.conversation_timeline(tenant_id, conversation_id)
            return render_template("conversations/_timeline.html", oob=True, **vars(timeline)) if timeline else ""
        finally:
            store.release()  # back to waiting

    flt = ActivityFilter(conversation_id=(conversation_id,))
    # The render reads the database, so the socket's own sender does it, not the hub's fan-out.
    follow_with_hello(ws, flt, render, ("timeline", tenant_id, conversation_id), replay=anything_missed, direct=False)


@sock.route("/unread/ws", bp=bp)
def unread_socket(ws):
    """An event that arrives is unread by every reader, so each batch goes to
    every page as the same fragment of ids; the page adds those it has not
    counted yet (a reconnect's replay overlaps on purpose). Events up to the
    page's render are in the count it was rendered with."""

    def render(events):
        return render_template("reading/_arrived.html", ids=[e["id"] for e in events])

    follow_with_hello(ws, ActivityFilter(), render, "unread", replay_limit=REPLAY_LIMIT,
           already_has=lambda hello, event: hello.page_since is not None and event["id"] <= hello.page_since)


def anything_missed(tenant_id: int, flt: ActivityFilter, since: str, limit: int | None):
    """Replay for a message re-read whole: it only needs to know whether something came."""
    events, _ = store.missed_since(tenant_id, flt, since, limit=1)
    return events, False


def follow_with_hello(ws, flt: ActivityFilter, render, render_key, *, replay=None, replay_limit: int | None = None,
                      already_has=None, direct: bool = True) -> None:
    """Say hello, then follow; `already_has(hello, event)`: replayed events the page has."""
    serve_socket(ws)
    hello = Hello(ws.receive(timeout=HELLO_TIMEOUT))
    follow(ws, flt, hello.since, render, render_key, replay=replay, replay_limit=replay_limit,
           already_has=already_has and (lambda event: already_has(hello, event)), direct=direct)

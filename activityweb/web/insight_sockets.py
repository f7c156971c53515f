"""Sockets beside the feed's: a conversation's timeline and the header's
unread count, kept live.

They reuse the feed socket's machinery (`live.Follower` and
`sockets.stream`): the page says the newest event it has, the server replays
what it missed, then sends a message per batch of new events. What differs is
the message, rendered once per batch for every socket that shares it.
"""
from __future__ import annotations

from flask import Blueprint, current_app, g, render_template

from .. import live, store
from ..auth import check_origin, web_principal
from ..extensions import db, sock
from ..schemas import ActivityFilter
from .sockets import HELLO_TIMEOUT, REPLAY_LIMIT, Hello, no_compression, serve_socket, stream

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
            db.session.remove()  # back to waiting: give the connection back

    flt = ActivityFilter(conversation_id=(conversation_id,))
    # The render reads the database, so the socket's own sender does it, not the hub's fan-out.
    follow(ws, flt, anything_missed, render, ("timeline", tenant_id, conversation_id), direct=False)


@sock.route("/unread/ws", bp=bp)
def unread_socket(ws):
    """An event that arrives is unread by every reader, so each batch goes to
    every page as the same fragment of ids; the page adds those it has not
    counted yet (a reconnect's replay overlaps on purpose). Events up to the
    page's render are in the count it was rendered with."""

    def render(events):
        return render_template("reading/_arrived.html", ids=[e["id"] for e in events])

    follow(ws, ActivityFilter(), store.missed_since, render, "unread", replay_limit=REPLAY_LIMIT,
           already_has=lambda hello, event: hello.page_since is not None and event["id"] <= hello.page_since)


def anything_missed(tenant_id: int, flt: ActivityFilter, since: str, limit: int | None):
    """Replay for a message re-read whole: it only needs to know whether something came."""
    events, _ = store.missed_since(tenant_id, flt, since, limit=1)
    return events, False


def follow(ws, flt: ActivityFilter, replay, render, render_key, *, replay_limit: int | None = None,
           already_has=None, direct: bool = True) -> None:
    """Say hello, then stream; `already_has(hello, event)`: replayed events the page has."""
    serve_socket(ws)
    hello = Hello(ws.receive(timeout=HELLO_TIMEOUT))
    follower = live.Follower(g.principal.tenant_id, flt, hello.since, replay=replay,
                             window=current_app.config["LIVE_WINDOW"],
                             already_has=already_has and (lambda event: already_has(hello, event)))
    try:
        stream(ws, follower, render, render_key, replay_limit=replay_limit, direct=direct)
    finally:
        follower.close()

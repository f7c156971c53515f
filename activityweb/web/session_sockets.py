"""Sockets of "Needs you" and /sessions: each batch of Claude Code events redraws them.

They ride the dashboard's live delivery (`sockets.follow_page`): the page
says its position, the server replays what it missed, then sends a message
per batch of the tenant's Claude Code events (hooks and telemetry). Who waits
and what a lane shows depend on a session's earlier events, so a message is
the whole badge, list or set of lanes read afresh, swapped out of band.
"""
from __future__ import annotations

from flask import Blueprint, g, render_template

from .. import live, store
from ..auth import web_principal
from ..extensions import sock
from ..filters import ActivityFilter
from .claude_sessions import lanes_context
from .sockets import follow_page

bp = Blueprint("session_sockets", __name__)
bp.before_request(live.guard(web_principal))

CLAUDE_EVENTS = ActivityFilter(source=("claude_code", "claude_code_otel"))


def _follow(ws, name: str, render) -> None:
    tenant_id = g.principal.tenant_id

    def message(_delivery):
        try:
            return render(tenant_id)
        finally:
            store.release()  # back to waiting

    # The render reads the database, so the socket's owner does it, not the fan-out.
    follow_page(ws, CLAUDE_EVENTS, message, (name, tenant_id), direct=False)


@sock.route("/needs-you/ws", bp=bp)
def needs_you_badge_socket(ws):
    """The header's count, on every page."""
    _follow(ws, "needs_you_badge", lambda tenant_id: render_template(
        "needs_you/_badge.html", oob=True, needs_you_count=len(store.sessions.waiting_sessions(tenant_id))))


@sock.route("/needs-you/list/ws", bp=bp)
def needs_you_list_socket(ws):
    _follow(ws, "needs_you_list", lambda tenant_id: render_template(
        "needs_you/_list.html", oob=True, waiting=store.sessions.waiting_sessions(tenant_id)))


@sock.route("/sessions/ws", bp=bp)
def sessions_socket(ws):
    _follow(ws, "session_lanes", lambda tenant_id: render_template(
        "sessions/_lanes.html", oob=True, **lanes_context(tenant_id)))

"""Claude Code sessions as they run: "Needs you" (sessions waiting on a
person) and /sessions (a lane per running session and subagent)."""
from __future__ import annotations

import json

from flask import current_app, g, render_template, request

from .. import store
from ..auth import web_principal
from ..integrations.claude_code_otel import otel_settings
from ..models import utcnow
from . import bp
from .views import render_page_or_partial


def otel_env_block() -> str:
    """The settings.json env block that turns Claude Code's telemetry on, for this server."""
    base = request.host_url
    return json.dumps(otel_settings(base), indent=2)


@bp.app_context_processor
def claude_session_helpers() -> dict:
    return {"otel_env_block": otel_env_block}


def _poll_seconds() -> int:
    return current_app.config.get("SESSIONS_POLL_SECONDS", 5)


@bp.app_context_processor
def needs_you_badge() -> dict:
    """The header's "Needs you" count, for full pages (partials and sockets ask nothing)."""
    principal = g.get("web_principal")
    if principal is None or g.get("error_page") or request.headers.get("HX-Request"):
        return {}
    if "needs_you_count" not in g:
        g.needs_you_count = len(store.sessions.waiting_sessions(principal.tenant_id))
    return {"needs_you_count": g.needs_you_count, "sessions_poll_seconds": _poll_seconds()}


@bp.get("/needs-you")
def needs_you():
    principal = web_principal()
    waiting = store.sessions.waiting_sessions(principal.tenant_id)
    return render_page_or_partial("needs_you/index.html", "needs_you/_list.html", waiting=waiting, now=utcnow(),
                                  poll_seconds=_poll_seconds())


@bp.get("/needs-you/badge")
def needs_you_count():
    principal = web_principal()
    return render_template("needs_you/_badge.html", needs_you_count=len(store.sessions.waiting_sessions(principal.tenant_id)),
                           sessions_poll_seconds=_poll_seconds())


@bp.get("/sessions")
def sessions():
    principal = web_principal()
    found = store.sessions.session_lanes(principal.tenant_id)
    return render_page_or_partial("sessions/index.html", "sessions/_lanes.html",
                                  running=[lane for lane in found if lane.state != "ended"],
                                  ended=[lane for lane in found if lane.state == "ended"],
                                  now=utcnow(), poll_seconds=_poll_seconds())

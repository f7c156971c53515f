"""Claude Code sessions as they run: "Needs you" (sessions waiting on a
person) and /sessions (a lane per running session and subagent). Their
sockets (web/session_sockets.py) redraw them as events arrive."""
from __future__ import annotations

import json

from flask import current_app, g, render_template, request

from .. import live, store
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


def _clock_seconds() -> int:
    """How often /sessions redraws its clocks and pulses between events."""
    return current_app.config.get("SESSIONS_CLOCK_SECONDS", 15)


@bp.app_context_processor
def needs_you_badge() -> dict:
    """The header's "Needs you" count, for full pages (partials and sockets ask
    nothing), and the position its socket resumes from (taken before the count:
    an event in between is sent again, never missed)."""
    principal = g.get("web_principal")
    if principal is None or g.get("error_page") or request.headers.get("HX-Request"):
        return {}
    if "needs_you_count" not in g:
        g.needs_you_since = live.position_now()
        g.needs_you_count = len(store.sessions.waiting_sessions(principal.tenant_id))
    return {"needs_you_count": g.needs_you_count, "needs_you_since": g.needs_you_since}


@bp.get("/needs-you")
def needs_you():
    principal = web_principal()
    live_since = live.position_now()  # before the read: its socket resumes from there
    waiting = store.sessions.waiting_sessions(principal.tenant_id)
    return render_page_or_partial("needs_you/index.html", "needs_you/_list.html", waiting=waiting,
                                  live_since=live_since)


@bp.get("/sessions")
def sessions():
    principal = web_principal()
    live_since = live.position_now()
    return render_page_or_partial("sessions/index.html", "sessions/_lanes.html", live_since=live_since,
                                  clock_seconds=_clock_seconds(), **lanes_context(principal.tenant_id))


def lanes_context(tenant_id: int) -> dict:
    """What sessions/_lanes.html draws: the running lanes, the ended ones, and now."""
    found = store.sessions.session_lanes(tenant_id)
    return {"running": [lane for lane in found if lane.state != "ended"],
            "ended": [lane for lane in found if lane.state == "ended"], "now": utcnow()}

"""Claude Code sessions as they run: who waits on a person, and a lane per session."""
from flask import g, jsonify

from .. import store
from ..auth import require
from ..serialize import iso
from . import bp


@bp.get("/sessions/waiting")
@require("read")
def waiting_sessions():
    return jsonify({"items": [waiting_json(w) for w in store.sessions.waiting_sessions(g.principal.tenant_id)]})


@bp.get("/sessions")
@require("read")
def session_lanes():
    return jsonify({"items": [lane_json(lane) for lane in store.sessions.session_lanes(g.principal.tenant_id)]})


def waiting_json(w) -> dict:
    return {"session_id": w.session_id, "project": w.project, "since": iso(w.since), "asks": w.asks, "kind": w.kind,
            "event_id": w.event_id, "agent": w.agent}


def lane_json(lane) -> dict:
    return {"id": lane.id, "session_id": lane.session_id, "name": lane.name, "state": lane.state,
            "started_at": iso(lane.started_at), "last_at": iso(lane.last_at), "tool": lane.tool,
            "tool_since": iso(lane.tool_since) if lane.tool_since else None, "last_prompt": lane.last_prompt,
            "waiting": waiting_json(lane.waiting) if lane.waiting else None, "pulse": lane.pulse,
            "usage": lane.usage.as_json() if lane.usage else None,
            "subagents": [lane_json(s) for s in lane.subagents]}

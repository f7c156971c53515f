"""Live JSON streams for programs: Server-Sent Events and a WebSocket.

Both take the list endpoint's filters, authenticate with the API token, and
resume from an event id (`Last-Event-ID` or `since=<id>`), replaying what was
missed before going live, so a reconnecting client loses nothing.
"""
from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, g, request, stream_with_context

from .. import live, store
from ..auth import authenticate_api, check_origin
from ..errors import ApiError
from ..extensions import sock
from ..filters import parse_stream_args
from ..serialize import activity_json
from ..web.sockets import follow, no_compression, serve_socket
from . import bp

KEEPALIVE_SECONDS = 15.0

ws_bp = Blueprint("activity_socket", __name__)


def _sse_event(activity: dict, slug: str) -> str:
    payload = json.dumps(activity_json(activity, slug), separators=(",", ":"))
    return f"id: {activity['id']}\nevent: activity_created\ndata: {payload}\n\n"


@bp.get("/activities/stream")
def activity_stream():
    principal = _stream_principal()
    flt, since = parse_stream_args(request.args, request.headers.get("Last-Event-ID"))
    follower = live.Follower(principal.tenant_id, flt, since, replay=store.missed_since,
                             window=current_app.config["LIVE_WINDOW"])
    stopping = current_app.extensions["activityweb.stopping"]

    def events():
        try:
            yield "retry: 2000\n\n"
            missed, _ = follower.missed()
            store.release()  # a long wait follows
            for activity in missed:
                yield _sse_event(activity, principal.tenant_slug)
            while not stopping.is_set():
                batch = follower.next(timeout=KEEPALIVE_SECONDS)
                if not batch:
                    yield ": keep-alive\n\n"
                for activity in batch:
                    yield _sse_event(activity, principal.tenant_slug)
        except live.SlowConsumer:
            # Ending the response makes EventSource reconnect with Last-Event-ID.
            return
        finally:
            follower.close()

    return Response(stream_with_context(events()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _stream_principal():
    principal = authenticate_api()
    if not principal.can("read"):
        raise ApiError(403, "insufficient_scope", "This token lacks the `read` scope.")
    check_origin()
    g.principal = principal
    return principal


@ws_bp.before_request
def guard_handshake():
    principal = _stream_principal()
    g.stream_filter, g.stream_since = parse_stream_args(request.args)
    g.principal = principal
    no_compression()


@sock.route("/ws", bp=ws_bp)
def activity_socket(ws):
    """`{"type": "activity_created", "activity": {...}}` per event, one message each."""
    serve_socket(ws)
    slug = g.principal.tenant_slug

    def render(events):
        return [json.dumps({"type": "activity_created", "activity": activity_json(a, slug)}, separators=(",", ":"))
                for a in events]

    follow(ws, g.stream_filter, g.stream_since, render, ("json", slug))

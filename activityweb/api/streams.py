"""Live JSON streams for programs: Server-Sent Events and a WebSocket.

Both take the list endpoint's filters, authenticate with the API token, and
resume from a position: the SSE `id:` of the last event had (`Last-Event-ID`,
or `since=`), or the `position` of the last `/ws` message. Replay is exact:
what came after, in commit order, each event once. A position too far behind
gets a `reset` (SSE event, `/ws` message) carrying a fresh position: reload
your copy, then go on from there. Delivery is `live.transport`'s.
"""
from __future__ import annotations

import json

from flask import Blueprint, Response, g, request, stream_with_context

from .. import live
from ..auth import authenticate_api, check_origin, still_allowed
from ..errors import ApiError, InvalidQuery
from ..extensions import sock
from ..filters import parse_stream_args
from ..serialize import activity_json
from . import bp

KEEPALIVE_SECONDS = 15.0

ws_bp = Blueprint("activity_socket", __name__)


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def stream_request(header: str | None = None):
    """The filter and resume point of a stream request; a bad one is a 400."""
    args = request.args.copy()
    value, field = args.get("since"), "since"
    if header:
        value, field = header, "Last-Event-ID"
    try:
        since = live.resume_point(value)
    except ValueError:
        if field == "since":  # not a position: the time filter `since`
            since = None
        else:
            raise InvalidQuery(field, "is not a position this stream sent") from None
    if since is not None and field == "since":
        args.poplist("since")
    flt, _ = parse_stream_args(args)
    return flt, since


def _sse(delivery) -> str:
    slug = g.principal.tenant_slug
    return "".join(f"id: {p.token}\nevent: activity_created\ndata: {_json(activity_json(a, slug))}\n\n"
                   for a, p in zip(delivery.events, delivery.positions))


def _sse_reset(reset) -> str:
    return f"id: {reset.position.token}\nevent: reset\ndata: {_json({'position': reset.position.token})}\n\n"


@bp.get("/activities/stream")
def activity_stream():
    principal = _stream_principal()
    check_origin()  # as the socket guard does
    flt, since = stream_request(request.headers.get("Last-Event-ID"))
    reader = live.Reader(principal.tenant_id, flt, since)
    stream = live.sse_stream(reader, _sse, _sse_reset, KEEPALIVE_SECONDS, allowed=still_allowed(principal))
    return Response(stream_with_context(stream),
                    mimetype="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _stream_principal():
    principal = authenticate_api()
    if not principal.can("read"):
        raise ApiError(403, "insufficient_scope", "This token lacks the `read` scope.")
    g.principal = principal
    return principal


def _parse_socket_request():
    g.stream_filter, g.stream_since = stream_request()


ws_bp.before_request(live.guard(_stream_principal, _parse_socket_request))


@sock.route("/ws", bp=ws_bp)
def activity_socket(ws):
    """`{"type": "activity_created", "activity": {...}, "position": "..."}`
    per event; `{"type": "reset", "position": "..."}` when too far behind;
    `{"type": "position", "position": "..."}` once the replay is sent."""
    slug = g.principal.tenant_slug

    def render(delivery):
        return [_json({"type": "activity_created", "activity": activity_json(a, slug), "position": p.token})
                for a, p in zip(delivery.events, delivery.positions)]

    def render_reset(reset):
        return _json({"type": "reset", "position": reset.position.token})

    def render_position(position):
        return _json({"type": "position", "position": position.token})

    tenant_id, flt, since = g.principal.tenant_id, g.stream_filter, g.stream_since
    live.serve_socket(ws, lambda: live.Reader(tenant_id, flt, since), render, ("json", slug), render_reset,
                      render_position=render_position, allowed=still_allowed(g.principal))

"""The dashboard's live feed socket: server-rendered event partials over a WebSocket.

Protocol. The page connects to `/feed/ws?<its filter>` (the htmx ws
extension), then says where it is: `{"since": "<position>"}`, the token the
page was rendered with (`data-since`) or the last one a message brought.
The server sends what the page missed, then each new matching event as it
is read. Every message is HTML for the ws extension: a comment carrying the
position after it (`<!--position:TOKEN-->`, which app.js keeps), then
`feed/_live.html` wrapping the events (newest first, each rendered by
`feed/_event.html`) in an out-of-band swap that prepends to `#feed-items`.
A page too far behind gets `<!--reset:TOKEN-->` and reloads its feed.
Closing codes (1013 fell behind, 1012 server restart) make the extension
reconnect and resume. Delivery itself is `live.transport`'s.
"""
from __future__ import annotations

import json

from flask import Blueprint, g, request

from .. import live
from ..auth import still_allowed, web_principal
from ..errors import InvalidQuery
from ..extensions import sock
from ..filters import parse_filter
from .grouped import grouped_live_message, grouping_of
from .render import live_message

bp = Blueprint("feed_socket", __name__)

HELLO_TIMEOUT = 5.0


def _parse_feed_filter():
    try:
        g.feed_filter = parse_filter(request.args, strict=False)
    except InvalidQuery as exc:
        return exc.message, 400
    return None


bp.before_request(live.guard(web_principal, _parse_feed_filter))


def hello_since(ws):
    """The resume point the page says when its socket opens (None: from now)."""
    raw = ws.receive(timeout=HELLO_TIMEOUT)
    try:
        message = json.loads(raw) if raw else {}
        since = message.get("since") if isinstance(message, dict) else None
        return live.resume_point(since) if isinstance(since, str) else None
    except ValueError:
        return None


def positioned(html: str, position) -> str:
    """A message with the position after it first, where app.js finds it."""
    return f"<!--position:{position.token}-->{html}"


def reset_message(reset: live.Reset) -> str:
    return f"<!--reset:{reset.position.token}-->"


def follow_page(ws, flt, render, render_key, *, direct: bool = True, render_reset=reset_message) -> None:
    """Every page socket: say hello, then stream `render(delivery)` messages
    (`render_reset(reset)` when the page is too far behind to replay)."""
    since = hello_since(ws)
    tenant_id = g.principal.tenant_id
    live.serve_socket(ws, lambda: live.Reader(tenant_id, flt, since), lambda d: positioned(render(d), d.end),
                      render_key, render_reset, direct=direct, allowed=still_allowed(g.principal))


@sock.route("/feed/ws", bp=bp)
def feed_socket(ws):
    if grouping_of():  # each event into its group; the count is read per socket, off the fan-out
        tenant_id, flt = g.principal.tenant_id, g.feed_filter
        follow_page(ws, flt, lambda d: grouped_live_message(d.events, tenant_id, flt), object(), direct=False)
        return
    follow_page(ws, g.feed_filter, lambda d: live_message(d.events), "feed")

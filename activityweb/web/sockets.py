"""The dashboard's live feed socket: server-rendered event partials over a WebSocket.

Protocol. The page connects to `/feed/ws?<its filter>` (the htmx ws
extension), then says the newest event it has: `{"since": "<event id>"}`. The
server sends what the page missed, then each new matching event as it commits.
Every message is HTML for the ws extension: `feed/_live.html` wraps the events
(newest first, each rendered by `feed/_event.html`) in an out-of-band swap that
prepends to `#feed-items`. Bursts within the `LIVE_WINDOW` go out as one
message. A client that falls behind is closed with 1013 (try again later) and
the extension reconnects and replays; so is every client when the server
shuts down (1012), so pages come back after a deploy.
"""
from __future__ import annotations

import _socket
import contextlib
import json
import socket
import threading
from functools import partial

from flask import Blueprint, copy_current_request_context, current_app, g, render_template, request
from wsproto.frame_protocol import FrameProtocol

from .. import live, store
from ..auth import check_origin, web_principal
from ..errors import InvalidQuery
from ..extensions import sock
from ..filters import parse_filter
from ..ids import is_uuid
from ..serialize import decode_cursor
from .render import live_message

bp = Blueprint("feed_socket", __name__)

HELLO_TIMEOUT = 5.0
# A page that missed more than this is told to reload instead of replaying.
REPLAY_LIMIT = 500
# A waiting handler is woken when its client goes; this is only a backstop.
IDLE_CHECK_SECONDS = 30.0
CLOSE_TRY_AGAIN = 1013
CLOSE_SERVICE_RESTART = 1012


@bp.before_request
def guard_handshake():
    """Authenticate and check Origin before the WebSocket handshake: a refused
    client gets a plain HTTP error and no socket at all."""
    g.principal = web_principal()
    check_origin()
    try:
        g.feed_filter = parse_filter(request.args, strict=False)
    except InvalidQuery as exc:
        return exc.message, 400
    no_compression()


def no_compression() -> None:
    # permessage-deflate costs ~90 KB of zlib state per socket and CPU per
    # frame (measured: 125 KB vs 37 KB per idle socket); the feed goes without.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


class _SerialSocket:
    """The socket under a simple-websocket connection, made safe for the feed.

    simple-websocket writes with `sock.send`, which may write only part of a
    large frame, and writes pings from its reader thread while we write
    frames from ours. Here every write is whole (`sendall`) and one at a time.

    `send_now` is the live fast path: the hub's fan-out writes a shared frame
    to each idle socket itself, without waking the socket's own sender (a
    greenlet switch and a wake-up per socket per batch were most of the cost
    of a fan-out). It never waits: if the socket is busy it declines, and if
    the kernel takes only part of the frame the rest is kept for the owner's
    `flush`, ahead of any other write.
    """

    def __init__(self, sock):
        self._sock = sock
        self._lock = threading.Lock()
        self._rest = b""
        self._closing = False  # a Close frame went out: no data may follow it
        self.on_rest = None  # called when a fast write left bytes for `flush`
        # The C-level socket for a send that cannot block. Only plain TCP
        # sockets without a timeout (gevent's are non-blocking underneath; a
        # blocking one has none): with TLS, bytes must go through the TLS layer.
        raw = getattr(sock, "_sock", sock)
        plain = isinstance(raw, _socket.socket) and not hasattr(sock, "cipher") and not raw.gettimeout()
        self._raw = raw if plain else None

    @property
    def can_send_now(self) -> bool:
        return self._raw is not None

    def send(self, data: bytes) -> int:
        with self._lock:
            if self._rest:
                self._sock.sendall(self._rest)
                self._rest = b""
            if data[:1] == _CLOSE_FRAME_START:
                self._closing = True
            self._sock.sendall(data)
        return len(data)

    def flush(self) -> None:
        """Write what a fast write left over (blocking, in the owner's thread)."""
        if self._rest:
            self.send(b"")

    def send_now(self, data: bytes) -> None:
        """Write `data` without waiting; the caller holds `try_hold()`.
        What the kernel does not take now is kept for `flush`."""
        try:
            try:
                sent = _socket.socket.send(self._raw, data, _socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return  # the client went; its reader notices and ends the stream
            if sent < len(data):
                self._rest = data[sent:]
        finally:
            if self._rest and self.on_rest is not None:
                self.on_rest()

    @contextlib.contextmanager
    def try_hold(self):
        """Hold the socket if no write is in progress and nothing is left
        over; yields whether it is held."""
        if not self._lock.acquire(blocking=False):
            yield False
            return
        try:
            yield not self._rest and not self._closing
        finally:
            self._lock.release()

    def __getattr__(self, name):
        return getattr(self._sock, name)


def serve_socket(ws):
    ws.sock = _SerialSocket(ws.sock)
    return ws


# Server frames are never masked, so the bytes of a message are the same for
# every socket: a batch is framed once (by wsproto) and written to each.
# A framer per call: wsproto's keeps per-message state, and under threads two
# batches may be framed at once.
def frames(messages: str | list[str]) -> bytes:
    framer = FrameProtocol(client=False, extensions=[])
    return b"".join(framer.send_data(m, fin=True) for m in ([messages] if isinstance(messages, str) else messages))


# The first byte of a final Close frame (FIN + opcode 8), as simple-websocket and wsproto write it.
_CLOSE_FRAME_START = b"\x88"


def _drop_if_stuck(ws, grace: float):
    """A client that stopped reading can hold its sender in a blocked write
    for ever; once its queue has overflowed, give it `grace` seconds
    (LIVE_STUCK_SECONDS) to drain, then cut the connection (the browser
    reconnects and replays)."""

    def cut():
        if ws.connected:
            with contextlib.suppress(OSError):
                ws.sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(grace, cut)
    timer.daemon = True
    timer.start()


def close(ws, code: int, reason: str) -> None:
    """Close with a code the client acts on, and let the closing handshake
    finish: returning at once would drop the connection under the close
    frame (measured: the client then never sees the code)."""
    ws.close(code, reason)
    ws.thread.join(timeout=2)


def _wake_when_closed(ws, subscription) -> None:
    ws.thread.join()
    subscription.wake()


class Hello:
    """What a page says when its socket opens.

    `since`: the newest event id it has (replay from there, with overlap).
    `page_since` and `boundary`: when the page was rendered, and the keyset
    position of its first page's last event. An event received before the
    render that sorts after the boundary was committed in time for the page
    query or not, but either way "load more" will fetch it in its place; the
    replay overlap must not push it to the top as if it were new.
    """

    def __init__(self, raw: str | None):
        try:
            message = json.loads(raw) if raw else {}
            message = message if isinstance(message, dict) else {}
        except ValueError:
            message = {}
        self.since = _event_id(message.get("since"))
        self.page_since = _event_id(message.get("page_since"))
        self.boundary = None
        if self.page_since and isinstance(message.get("boundary"), str) and message["boundary"]:
            try:
                self.boundary = decode_cursor(message["boundary"])
            except InvalidQuery:
                self.boundary = None

    def already_has(self, event: dict) -> bool:
        return (self.boundary is not None and event["id"] <= self.page_since
                and (event["occurred_at"], event["id"]) <= self.boundary)


def _event_id(value) -> str | None:
    return value if isinstance(value, str) and is_uuid(value) else None


def _write_directly(sock: _SerialSocket, follower: live.Follower, render_frames, render_key, batch) -> bool:
    """The hub's fast path for one socket (see `_SerialSocket`). Rendering
    runs in a copy of the socket's request context (templates build URLs),
    once per batch and filter: the frames are shared."""
    with sock.try_hold() as held:
        if held:
            follower.take(batch, lambda delivery: sock.send_now(delivery.rendered(render_key, render_frames)))
        return held


def stream(ws, follower: live.Follower, render, render_key, replay_limit: int | None, *,
           direct: bool = True) -> None:
    """Send what was missed, then new events, until the client goes.

    `render(events)` turns a batch into a message or a list of messages;
    sockets whose render shares a `render_key` share renderings (and framed
    bytes) of a batch. Used by the dashboard socket and the JSON `/ws`.
    `direct=False` keeps the hub's fast path away: for a render that queries
    the database, which should not run in the fan-out loop.
    """
    missed, truncated = follower.missed(limit=replay_limit)
    store.release()  # a long wait follows
    grace = current_app.config["LIVE_STUCK_SECONDS"]
    subscription = follower.subscription
    subscription.on_overflow = lambda: _drop_if_stuck(ws, grace)
    stopping = current_app.extensions["activityweb.stopping"]
    # Wake the wait below the moment the client goes, so the connection is
    # released now rather than at the next idle check.
    threading.Thread(target=_wake_when_closed, args=(ws, follower.subscription), daemon=True).start()
    def framed(delivery):
        return delivery.rendered(render_key, lambda batch: frames(render(batch))) if delivery else b""

    try:
        if truncated:
            ws.sock.send(frames(render_template("feed/_stale.html")))
        elif missed:
            ws.sock.send(frames(render(missed)))
        if direct and follower.hub_coalesces and ws.sock.can_send_now:
            # The hub coalesces (PostgreSQL): let its fan-out write to us directly.
            ws.sock.on_rest = subscription.wake
            subscription.direct = partial(_write_directly, ws.sock, follower,
                                          copy_current_request_context(lambda batch: frames(render(batch))), render_key)
        while ws.connected:
            if stopping.is_set():
                close(ws, CLOSE_SERVICE_RESTART, "server restarting; reconnect")
                return
            delivery = follower.next(timeout=IDLE_CHECK_SECONDS)
            ws.sock.flush()
            if delivery:
                ws.sock.send(framed(delivery))
            subscription.done_sending()
    except live.SlowConsumer:
        close(ws, CLOSE_TRY_AGAIN, "fell behind; reconnect")
    except OSError:
        pass  # the client went away mid-write


def follow(ws, flt, since: str | None, render, render_key, *, replay=None, replay_limit: int | None = None,
           already_has=None, direct: bool = True) -> None:
    """Stream the caller's tenant's events that `flt` matches, from after
    `since`, until the client goes (see `stream`). Every live socket ends here."""
    follower = live.Follower(g.principal.tenant_id, flt, since, replay=replay or store.missed_since,
                             window=current_app.config["LIVE_WINDOW"], already_has=already_has)
    try:
        stream(ws, follower, render, render_key, replay_limit, direct=direct)
    finally:
        follower.close()


@sock.route("/feed/ws", bp=bp)
def feed_socket(ws):
    serve_socket(ws)
    hello = Hello(ws.receive(timeout=HELLO_TIMEOUT))
    follow(ws, g.feed_filter, hello.since, live_message, "feed", replay_limit=REPLAY_LIMIT,
           already_has=hello.already_has)

"""Getting a reader's events to its client: one stream loop for WebSockets and SSE.

`Reader` is one client's place in the log. It subscribes, then replays what
the client missed since its position (page by page, in commit order, below
the horizon), then takes the batches the follower fans out, each event once:
an event at or before the reader's position is dropped. Too far behind (over
`REPLAY_MAX` events, or behind what retention deleted) it answers `Reset`
with a fresh position instead of loading anything.

`deliveries` is the one loop both transports run. WebSockets (`serve_socket`)
get whole frames written in one send; an idle socket is written straight from
the fan-out (`_SerialSocket.send_now`, never waiting), and what arrives while
a write is in flight goes with the socket's next write; SSE (`sse.py`) yields
text. Close codes: 1013 for a client that fell behind, 1012 when the server
stops (`activityweb.stopping`, set by `live.shutdown`): the htmx ws extension
reconnects after both.
"""
from __future__ import annotations

import _socket
import contextlib
import socket
import threading
import time
from typing import Callable, Iterator

from flask import copy_current_request_context, current_app, request
from sqlalchemy.exc import DBAPIError
from wsproto.frame_protocol import FrameProtocol

from .. import store
from ..ids import is_uuid
from .hub import Batch, Subscription
from .positions import Position

# A resume further behind than this answers `Reset` (the client reloads).
REPLAY_MAX = 10_000
REPLAY_PAGE = 500
# A waiting owner is woken when its client goes; this only bounds the wait.
IDLE_SECONDS = 15.0
CLOSE_TRY_AGAIN = 1013
CLOSE_POLICY = 1008  # the htmx ws extension does not reconnect after it
CLOSE_SERVICE_RESTART = 1012


class SlowConsumer(Exception):
    """A reader fell a whole queue behind; its client should reconnect and resume."""


class Revoked(Exception):
    """The stream's sign-in or token no longer holds: it ends, and is not resumed."""


class Reset:
    """The client's position is too old to replay: start again from `position`."""

    def __init__(self, position: Position):
        self.position = position


class Delivery:
    """Events for one client, in commit order, with the position after each
    and after all. `shared` is the fan-out's batch when the client takes all
    of it, so renderings are made once per batch and filter."""

    __slots__ = ("events", "positions", "end", "shared")

    def __init__(self, events: list[dict], positions: list[Position], end: Position, shared: Batch | None = None):
        self.events, self.positions, self.end, self.shared = events, positions, end, shared

    def __bool__(self) -> bool:
        return bool(self.events)

    def __iter__(self):
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def rendered(self, key, render):
        return self.shared.rendered(key, lambda _batch: render(self)) if self.shared is not None else render(self)


IDLE = object()  # `deliveries` found nothing to send (a timeout or a wake-up)


def resume_point(value: str | None):
    """A client's resume point: a position token, or an event id (resolved
    to that event's position), or None; anything else raises ValueError."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    position = Position.from_token(value)
    if position is not None:
        return position
    if is_uuid(value):
        return value.lower()
    raise ValueError(value)


def hub():
    return current_app.extensions["activityweb.hub"]


def follower():
    return current_app.extensions["activityweb.follower"]


class Reader:
    """One client's view of the log: after `since` (a Position, an event id, or
    None for "from now"), matching `flt`, each event once."""

    def __init__(self, tenant_id: int, flt, since=None):
        self.tenant_id, self.filter = tenant_id, flt
        xmin, xmax, open_txids = store.replay.snapshot()
        now = Position.of_snapshot(xmin, xmax, open_txids)
        self.reset: Reset | None = None
        self.position = self._start(since, now)
        follower().watch(tenant_id, xmin)
        self.subscription: Subscription = hub().subscribe(tenant_id, flt)

    def _start(self, since, now: Position) -> Position:
        if since is None:
            return now
        if isinstance(since, str):
            found = store.replay.position_of(self.tenant_id, since)
            if found is None:  # never ours, or deleted by retention
                self.reset = Reset(now)
                return now
            since = Position(*found)
        if since.key > now.key:
            return now  # a token from the future (another database): start from now
        behind = store.replay.count_after(self.tenant_id, since.key, REPLAY_MAX)
        first = store.replay.first_position(self.tenant_id)
        pruned = first is not None and first > since.key and store.last_prune(self.tenant_id) is not None
        if behind > REPLAY_MAX or pruned:
            self.reset = Reset(now)
            return now
        return since

    def replay(self) -> Iterator[Delivery]:
        """What the client missed, page by page, in constant memory."""
        position = self.position
        while True:
            final, held = store.replay.read_after(self.tenant_id, position.key, pending=position.pending,
                                                  flt=self.filter, limit=REPLAY_PAGE)
            events, positions = [], []
            for txid, event in final:
                position = position.advanced(txid, event["id"])
                events.append(event)
                positions.append(position)
            done = held or len(final) < REPLAY_PAGE
            self.position = position
            if events or done:
                yield Delivery(events, positions, position)
            if done:
                return

    def accept(self, batch: Batch) -> Delivery:
        """What of a fanned-out batch this client has not had; moves the position."""
        position = self.position
        if not position.pending and batch.first > position.key:
            self.position = batch.end
            return Delivery(batch.events, batch.positions(), batch.end, shared=batch)
        events, positions = [], []
        for txid, event in zip(batch.txids, batch.events):
            if not position.has(txid, event["id"]):
                position = position.advanced(txid, event["id"])
                events.append(event)
                positions.append(position)
        self.position = position.passed(batch.end)
        return Delivery(events, positions, self.position)

    def close(self) -> None:
        self.subscription.unsubscribe()


def deliveries(reader: Reader, *, stopping: threading.Event, idle: float = IDLE_SECONDS,
               allowed: Callable[[], bool] | None = None) -> Iterator:
    """The stream loop: a `Reset` or the replay, then each batch as it comes;
    `IDLE` when there was nothing (the caller checks its client). Ends when
    the server stops; raises SlowConsumer, and Revoked once `allowed()` (asked
    every LIVE_RECHECK_SECONDS) says the client's sign-in has ended."""
    recheck = current_app.config["LIVE_RECHECK_SECONDS"]
    idle = min(idle, recheck)
    checked = time.monotonic()
    if reader.reset is not None:
        yield reader.reset
    else:
        for delivery in reader.replay():
            if delivery:
                yield delivery
    store.release()  # a long wait follows: no database connection held
    yield CAUGHT_UP
    sub = reader.subscription
    while not stopping.is_set():
        batches = sub.take(idle)
        if sub.overflowed:
            raise SlowConsumer()
        if stopping.is_set():
            return
        if allowed is not None and time.monotonic() - checked >= recheck:
            checked = time.monotonic()
            try:
                still = allowed()
            finally:
                store.release()
            if not still:
                raise Revoked()
        if not batches:
            yield IDLE
            continue
        try:
            for batch in batches:
                delivery = reader.accept(batch)
                if delivery:
                    yield delivery
        finally:
            sub.done_sending()


CAUGHT_UP = object()  # the replay is sent: from here on, batches may be written directly


# ------------------------------------------------------------------ WebSockets


def no_compression() -> None:
    # permessage-deflate costs ~90 KB of zlib state per socket and CPU per
    # frame (measured: 125 KB vs 37 KB per idle socket); live sockets go without.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def guard(authenticate: Callable[[], object], parse: Callable[[], object] | None = None):
    """The one handshake guard, a socket blueprint's `before_request`:
    authenticate, check Origin, parse the query, all before the WebSocket
    handshake, so a refused client gets a plain HTTP error and no socket."""
    from flask import g

    from ..auth import check_origin

    def guard_handshake():
        g.principal = authenticate()
        check_origin()
        if parse is not None:
            refused = parse()
            if refused is not None:
                return refused
        no_compression()

    return guard_handshake


# Server frames are never masked, so the bytes of a message are the same for
# every socket: a batch is framed once and written to each. A framer per call:
# wsproto's keeps per-message state, and two batches may be framed at once.
def frames(messages: str | list[str]) -> bytes:
    framer = FrameProtocol(client=False, extensions=[])
    return b"".join(framer.send_data(m, fin=True) for m in ([messages] if isinstance(messages, str) else messages))


# The first byte of a final Close frame (FIN + opcode 8), as simple-websocket and wsproto write it.
_CLOSE_FRAME_START = b"\x88"


class _SerialSocket:
    """The socket under a simple-websocket connection, made safe for live writes.

    simple-websocket writes with `sock.send`, which may write only part of a
    large frame, and writes pings from its reader thread while we write from
    ours. Here every write is whole (`sendall`) and one at a time.

    `send_now` is the fan-out's write to an idle socket: it never waits. If
    the kernel takes only part of the frame, the rest is kept for the owner's
    `flush`, ahead of any other write.
    """

    def __init__(self, sock):
        self._sock = sock
        self._lock = threading.Lock()
        self._rest = b""
        self._closing = False  # a Close frame went out: no data may follow it
        self.on_rest = None  # called when a fast write left bytes for `flush`
        # Only plain TCP sockets without a timeout (gevent's are non-blocking
        # underneath): with TLS, bytes must go through the TLS layer.
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
        if self._rest:
            self.send(b"")

    def send_now(self, data: bytes) -> None:
        """Write without waiting; the caller holds the socket (`hold()`)."""
        try:
            try:
                sent = _socket.socket.send(self._raw, data, _socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return  # the client went; its reader notices
            if sent < len(data):
                self._rest = data[sent:]
        finally:
            if self._rest and self.on_rest is not None:
                self.on_rest()

    def hold(self) -> bool:
        """Hold the socket if no write is in progress and nothing is left over
        (then `release()` after writing)."""
        if not self._lock.acquire(blocking=False):
            return False
        if self._rest or self._closing:
            self._lock.release()
            return False
        return True

    def release(self) -> None:
        self._lock.release()

    @contextlib.contextmanager
    def try_hold(self):
        """`hold()` as a context manager; yields whether it is held."""
        held = self.hold()
        try:
            yield held
        finally:
            if held:
                self.release()

    def __getattr__(self, name):
        return getattr(self._sock, name)


def cut_if_stuck(sock, grace: float, still_open: Callable[[], bool] = lambda: True) -> None:
    """A client that stopped reading can hold its owner in a blocked write for
    ever; once its queue has overflowed it gets `grace` seconds to drain, then
    the connection is cut (it reconnects and resumes)."""

    def cut():
        if still_open():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(grace, cut)
    timer.daemon = True
    timer.start()


def close(ws, code: int, reason: str) -> None:
    """Close with a code the client acts on, and let the closing handshake
    finish: returning at once drops the connection under the close frame."""
    with contextlib.suppress(Exception):
        ws.close(code, reason)
        ws.thread.join(timeout=2)


def _wake_when_closed(ws, subscription: Subscription) -> None:
    ws.thread.join()
    subscription.wake()


def serve_socket(ws, open_reader: Callable[[], Reader], render: Callable[[Delivery], str | list[str]], render_key,
                 render_reset: Callable[[Reset], str], *, render_position: Callable[[Position], str] | None = None,
                 direct: bool = True, allowed: Callable[[], bool] | None = None) -> None:
    """Stream to a WebSocket until the client goes or the server stops.

    `open_reader()` makes the client's Reader (it reads the database: if the
    database is away, the socket closes with 1013 and the client retries).
    `render_position(position)`, if given, says where the client is once the
    replay is sent, so a client that gets no event before it reconnects
    still has a position to resume from.

    `render(delivery)` makes a message or a list of messages; sockets whose
    render shares a `render_key` share the renderings (and framed bytes) of
    a batch. `direct=False` keeps the fan-out from writing to this socket:
    for a render that reads the database, which the fan-out must not do.
    `allowed()` is asked now and then whether the client's sign-in or token
    still holds; once it does not, the socket closes with 1008.
    """
    try:
        reader = open_reader()
    except DBAPIError:
        close(ws, CLOSE_TRY_AGAIN, "database unavailable; reconnect")
        return
    sock = ws.sock if isinstance(ws.sock, _SerialSocket) else _SerialSocket(ws.sock)
    ws.sock = sock
    sub = reader.subscription
    grace = current_app.config["LIVE_STUCK_SECONDS"]
    sub.on_overflow = lambda: cut_if_stuck(ws.sock, grace, lambda: ws.connected)
    stopping = current_app.extensions["activityweb.stopping"]
    threading.Thread(target=_wake_when_closed, args=(ws, sub), daemon=True).start()

    def framed_with(frame):
        return lambda delivery: delivery.rendered(render_key, frame)

    framed = framed_with(lambda d: frames(render(d)))

    try:
        for item in deliveries(reader, stopping=stopping, allowed=allowed):
            if not ws.connected:
                return
            sock.flush()
            if item is IDLE:
                continue
            if item is CAUGHT_UP:
                if render_position is not None:
                    sock.send(frames(render_position(reader.position)))
                if direct and sock.can_send_now:
                    sock.on_rest = sub.wake
                    # Rendering may build URLs: it runs in a copy of this request's context.
                    in_context = copy_current_request_context(lambda d: frames(render(d)))
                    sub.direct = _direct_writer(sock, reader, render_key, in_context)
                continue
            sock.send(frames(render_reset(item)) if isinstance(item, Reset) else framed(item))
        if ws.connected:
            close(ws, CLOSE_SERVICE_RESTART, "server restarting; reconnect")
    except SlowConsumer:
        close(ws, CLOSE_TRY_AGAIN, "fell behind; reconnect")
    except Revoked:
        close(ws, CLOSE_POLICY, "signed out or token revoked")
    except DBAPIError:  # the replay could not be read: the client resumes later
        close(ws, CLOSE_TRY_AGAIN, "database unavailable; reconnect")
    except OSError:
        pass  # the client went away mid-write
    finally:
        reader.close()


def _direct_writer(sock: _SerialSocket, reader: Reader, render_key, frame):
    """The fan-out's write to this socket, the hot path of live delivery (a
    batch goes to every idle socket of its filter this way): write the batch
    now if the socket is idle and the client takes all of it (the common
    case), with the frames made once per batch and filter; else decline and
    the owner takes it from the queue."""

    def render(batch: Batch) -> bytes:
        return frame(Delivery(batch.events, batch.positions(), batch.end, shared=batch))

    def write(batch: Batch) -> bool:
        position = reader.position
        if position.pending or batch.first <= (position.txid, position.id) or not sock.hold():
            return False
        try:
            data = batch.rendered(render_key, render)
            reader.position = batch.end
            sock.send_now(data)
        finally:
            sock.release()
        return True

    return write

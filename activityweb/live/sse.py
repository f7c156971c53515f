"""Server-sent events: the stream loop of `transport.deliveries` as the text of an event stream."""
from __future__ import annotations

import time
from typing import Callable, Iterator

from flask import current_app, request

from .transport import CAUGHT_UP, IDLE, Delivery, Reader, Reset, Revoked, SlowConsumer, cut_if_stuck, deliveries


def sse_stream(reader: Reader, render: Callable[[Delivery], str], render_reset: Callable[[Reset], str],
               keepalive: float, allowed: Callable[[], bool] | None = None) -> Iterator[str]:
    """The text of an event stream: the same loop, ended cleanly when the
    server stops (EventSource then reconnects with Last-Event-ID), or when
    `allowed()` says the token was revoked (the reconnect then gets a 401)."""
    stopping = current_app.extensions["activityweb.stopping"]
    # The client's connection, as the server names it: a reader that stopped
    # reading blocks the stream's write, and once its queue overflows only
    # cutting the connection frees it (as for a socket).
    client = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if client is not None:
        grace = current_app.config["LIVE_STUCK_SECONDS"]
        reader.subscription.on_overflow = lambda: cut_if_stuck(client, grace)
    last = time.monotonic()
    try:
        yield "retry: 2000\n\n"
        for item in deliveries(reader, stopping=stopping, idle=keepalive, allowed=allowed):
            if item is CAUGHT_UP:
                # An id without data sets EventSource's Last-Event-ID and fires
                # nothing: a client that reconnects before any event resumes here.
                yield f"id: {reader.position.token}\n\n"
                last = time.monotonic()
                continue
            if item is IDLE:
                if time.monotonic() - last < keepalive * 0.9:
                    continue
                text = ": keep-alive\n\n"
            else:
                text = render_reset(item) if isinstance(item, Reset) else render(item)
            last = time.monotonic()
            yield text
    except (SlowConsumer, Revoked):
        return  # ending the response makes EventSource reconnect (and resume, or be refused)
    finally:
        reader.close()

"""Live delivery: every new event to everyone watching, each once, in commit order.

- `positions`: where an event stands in the log, and the clients' resume token
- `hub`: who is watching in this process, and the fan-out to them
- `follower`: one reader of the log per process (woken in-process, or by NOTIFY)
- `transport`: one client's reader, and the one stream loop, written to WebSockets
- `sse`: the same loop as an event stream

Both edges (web/ and api/) import it; it knows nothing of HTML or JSON.
The same path runs on SQLite (in-process wake-up) and PostgreSQL (NOTIFY).
"""
from __future__ import annotations

import threading
import weakref

import sqlalchemy as sa

from .follower import Follower
from .hub import Batch, Hub, Subscription
from .positions import Position, is_token
from .sse import sse_stream
from .transport import (
    CLOSE_SERVICE_RESTART,
    CLOSE_TRY_AGAIN,
    REPLAY_MAX,
    Delivery,
    Reader,
    Reset,
    SlowConsumer,
    deliveries,
    frames,
    guard,
    resume_point,
    serve_socket,
)

_apps: "weakref.WeakSet" = weakref.WeakSet()


def init_app(app) -> None:
    """The hub and follower of this app (one per app, so two test apps never share sockets)."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    dsn = None
    if url.startswith("postgresql"):
        dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    hub = Hub(app.config["LIVE_MAX_PENDING"])
    app.extensions["activityweb.hub"] = hub
    app.extensions["activityweb.follower"] = Follower(app, hub, dsn)
    # Set when the server is shutting down: sockets close with 1012, streams end.
    app.extensions["activityweb.stopping"] = threading.Event()
    _apps.add(app)


def committed(tenant_ids) -> None:
    """This process committed new events of these tenants: read them now."""
    from flask import current_app

    if tenant_ids:
        current_app.extensions["activityweb.follower"].wake(tenant_ids)


def position_now() -> str:
    """The position of a page rendered now, as a token: what a page read right
    after this shows; its socket resumes from there."""
    from .. import store

    return Position.of_snapshot(*store.replay.snapshot()).token


def shutdown(app=None) -> None:
    """Close every live socket (1012) and end every stream of this process's
    apps (or one app): the server is stopping or restarting."""
    for each in [app] if app is not None else list(_apps):
        each.extensions["activityweb.stopping"].set()
        each.extensions["activityweb.hub"].wake_all()


def reopen(app) -> None:
    app.extensions["activityweb.stopping"].clear()


def stop(app) -> None:
    """Stop the follower's threads (tests, at teardown)."""
    app.extensions["activityweb.follower"].stop()


__all__ = [
    "Batch", "CLOSE_SERVICE_RESTART", "CLOSE_TRY_AGAIN", "Delivery", "Follower", "Hub", "Position", "REPLAY_MAX",
    "Reader", "Reset", "SlowConsumer", "Subscription", "committed", "deliveries", "frames", "guard", "init_app",
    "is_token", "position_now", "reopen", "resume_point", "serve_socket", "shutdown", "sse_stream", "stop",
]

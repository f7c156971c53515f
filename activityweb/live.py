"""The live hub: who is watching, and getting each new event to them.

A small fixed interface, whatever carries events between processes:

- `delivered(tenant_id, rows)` after an insert committed,
- `subscribe(tenant_id, filter)` / `Subscription.unsubscribe()` for each socket or stream.

`MemoryHub` (SQLite, one process) fans out straight from `delivered`.
`PostgresHub`: a statement trigger on `activities` (migration 0002) sends
`NOTIFY activityweb` with the new ids inside the inserting transaction, and
PostgreSQL delivers it only on commit, so no one hears of an event the
database does not have. One `LISTEN` connection per process re-reads the
rows and fans out to that process's subscribers, so every worker on every
host sees every event, whoever wrote it.

This module knows nothing of HTML or JSON framing: the web and API edges
render what a subscription yields.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict, deque
from typing import Callable

import sqlalchemy as sa

log = logging.getLogger(__name__)

# The channel the trigger of migration 0002 notifies on (one per database).
CHANNEL = "activityweb"


class Batch(list):
    """Events offered to every subscriber of one filter at the same moment.

    What they render from it (a WebSocket message, say) is made once and
    shared: one rendering per distinct filter, not one per socket.
    """

    def __init__(self, events):
        super().__init__(events)
        self._rendered: dict = {}

    def rendered(self, key, render):
        # Two sockets may race to render the same batch; both get an equal
        # result, so no lock is needed.
        if key not in self._rendered:
            self._rendered[key] = render(self)
        return self._rendered[key]


class Subscription:
    """One reader's bounded queue of new events.

    The hub never blocks on a reader: when the queue is full the subscription
    is marked `overflowed` and its owner disconnects the client (which then
    reconnects and replays from the database).
    """

    def __init__(self, hub: "Hub", tenant_id: int, flt, max_pending: int):
        self.hub = hub
        self.tenant_id = tenant_id
        self.filter = flt
        self.max_pending = max_pending
        self.overflowed = False
        self.stale = False  # the hub lost events (listener reconnected): replay needed
        self.closed = False
        self._batches: deque[Batch] = deque()
        self._pending = 0
        self._cond = threading.Condition()
        # Called once, from the hub, when the queue first overflows; the
        # owner may be stuck writing to its client and need a push.
        self.on_overflow = None
        # The owner's fast path: `direct(batch)` writes the batch to the
        # client at once without waiting (True) or declines (False: queue it).
        # The hub tries it only when nothing is queued or being sent, so
        # batches still reach the client in order.
        self.direct: Callable[[Batch], bool] | None = None
        self._owner_sending = False  # the owner took batches and has not written them yet
        self._direct_sending = False
        self._woken = False  # a wake() not yet seen by get_batches: never lost

    def _offer(self, batch: Batch) -> None:
        if self.direct is not None and self._claim():
            try:
                if self.direct(batch):
                    return
            except Exception:  # never the hub's problem: the owner gets the batch instead
                log.exception("direct live write failed; queueing")
            finally:
                with self._cond:
                    self._direct_sending = False
                    if self.closed:  # unsubscribe() waits for us; otherwise wake no one (the owner sleeps on)
                        self._cond.notify_all()
        first_overflow = False
        with self._cond:
            if self.closed:
                return
            if self._pending + len(batch) > self.max_pending:
                first_overflow = not self.overflowed
                self.overflowed = True
            else:
                self._batches.append(batch)
                self._pending += len(batch)
            self._cond.notify()
        if first_overflow and self.on_overflow is not None:
            self.on_overflow()

    def _claim(self) -> bool:
        """Whether the fast path may write now: nothing queued, nothing in flight."""
        with self._cond:
            if (self._batches or self._owner_sending or self._direct_sending
                    or self.overflowed or self.stale or self.closed):
                return False
            self._direct_sending = True
            return True

    def take_stale(self) -> bool:
        """Whether the hub lost events since (the owner must replay); if so
        the owner holds the socket until `done_sending`, so nothing newer
        goes out directly ahead of the replay."""
        with self._cond:
            if not self.stale:
                return False
            self.stale = False
            self._owner_sending = True
            return True

    def done_sending(self) -> None:
        """The owner has written what it took (see `get_batches`)."""
        with self._cond:
            self._owner_sending = False

    def _mark_stale(self) -> None:
        with self._cond:
            self.stale = True
            self._cond.notify()

    def wake(self) -> None:
        """Make `get_batches` return now (the owner has something else to do), or at
        once the next time it is called if the owner is not waiting yet."""
        with self._cond:
            self._woken = True
            self._cond.notify()

    def get_batches(self, timeout: float | None = None) -> list[Batch]:
        """Wait up to `timeout` for events; returns every pending batch (maybe none)."""
        with self._cond:
            if not self._batches and not (self.overflowed or self.stale or self.closed or self._woken):
                self._cond.wait(timeout)
            self._woken = False
            batches = list(self._batches)
            self._batches.clear()
            self._pending = 0
            # Taken but not yet written: the fast path must wait its turn.
            if batches:
                self._owner_sending = True
            return batches

    def unsubscribe(self) -> None:
        with self._cond:
            self.closed = True
            # A direct write in flight finishes before the owner may close
            # the socket: a closed descriptor's number can be reused at once
            # by another client's connection.
            while self._direct_sending:
                self._cond.wait(1.0)
            self._batches.clear()
            self._pending = 0
            self._cond.notify()
        self.hub._remove(self)


class Hub:
    """Subscriptions of this process, grouped by tenant, and the fan-out to them."""

    # Whether the hub itself coalesces commits into one batch per window.
    windowed = False

    def __init__(self, max_pending: int = 2000):
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._subs: dict[int, set[Subscription]] = defaultdict(set)

    # -- subscribers
    def subscribe(self, tenant_id: int, flt) -> Subscription:
        sub = Subscription(self, tenant_id, flt, self.max_pending)
        with self._lock:
            self._subs[tenant_id].add(sub)
        self.ensure_started()
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.tenant_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.tenant_id]

    def fan_out(self, tenant_id: int, events: list[dict]) -> None:
        """Offer each subscriber of the tenant the events its filter matches.

        Filters are evaluated once per distinct filter, not once per socket:
        a thousand dashboards on the unfiltered feed cost one pass.
        """
        if not events:
            return
        with self._lock:
            subs = list(self._subs.get(tenant_id, ()))
        by_filter: dict[object, list[Subscription]] = defaultdict(list)
        for sub in subs:
            by_filter[sub.filter].append(sub)
        for flt, group in by_filter.items():
            matched = Batch(e for e in events if flt.matches(e))
            if matched:
                for sub in group:
                    sub._offer(matched)

    def wake_all(self) -> None:
        """Make every waiting subscriber look up now (the server is stopping:
        with `activityweb.stopping` set, sockets then close with 1012). Only
        the tests' server calls it for now; graceful restarts under gunicorn
        are issue 11's."""
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            sub.wake()

    def _mark_all_stale(self) -> None:
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            sub._mark_stale()

    # -- the insert side; overridden per transport
    def ensure_started(self) -> None:
        pass

    def delivered(self, tenant_id: int, rows: list[dict]) -> None:
        """Called after the insert transaction committed."""

    def stop(self) -> None:
        pass


class MemoryHub(Hub):
    """One process (the SQLite default): fan out directly after commit."""

    def delivered(self, tenant_id: int, rows: list[dict]) -> None:
        self.fan_out(tenant_id, rows)


class PostgresHub(Hub):
    """Several processes and hosts: NOTIFY in the transaction, LISTEN in each process.

    The listener is started lazily on the first subscription, so it runs in
    the worker after fork (and after gevent patched the world), never in a
    gunicorn master.
    """

    def __init__(self, dsn: str, load: Callable[[int, list[str]], list[dict]], max_pending: int = 2000,
                 window: float = 0.05):
        super().__init__(max_pending)
        self.dsn = dsn
        self.window = window
        self.windowed = window > 0
        self.load = load
        self._thread: threading.Thread | None = None
        self._pid = None
        self._stopping = threading.Event()
        self._listening = threading.Event()

    def ensure_started(self) -> None:
        import os

        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stopping.clear()
            self._thread = threading.Thread(target=self._listen_forever, name="activityweb-listen", daemon=True)
            self._thread.start()
        # A subscriber must not miss events posted right after it subscribed.
        self._listening.wait(5)

    def stop(self) -> None:
        self._stopping.set()

    def _listen_forever(self) -> None:
        import psycopg
        import psycopg.sql

        backoff = 0.2
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True) as conn:
                    conn.execute(psycopg.sql.SQL("LISTEN {}").format(psycopg.sql.Identifier(CHANNEL)))
                    backoff = 0.2
                    self._listening.set()
                    last_dispatch = 0.0
                    while not self._stopping.is_set():
                        # The timeout only lets the loop look at _stopping now and then.
                        batch = list(conn.notifies(timeout=1.0, stop_after=1))
                        if not batch:
                            continue
                        # One read and one fan-out per window: after a quiet
                        # spell the first commit goes at once; commits that come
                        # faster are gathered until the window ends.
                        wait = last_dispatch + self.window - time.monotonic()
                        if wait > 0:
                            batch += conn.notifies(timeout=wait)
                        self._dispatch(batch)
                        last_dispatch = time.monotonic()
            except Exception:  # the database went away; keep trying
                log.exception("live listener lost its connection; reconnecting")
                self._listening.clear()
                # Events committed while we were away were never heard: make
                # every subscriber replay from the database.
                self._mark_all_stale()
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _dispatch(self, notifications) -> None:
        wanted: dict[int, list[str]] = defaultdict(list)
        with self._lock:
            tenants = set(self._subs)
        for n in notifications:
            try:
                payload = json.loads(n.payload)
                tenant_id, ids = int(payload["t"]), list(payload["ids"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring malformed notification %r", n.payload[:200])
                continue
            if tenant_id in tenants:  # nobody here watches this tenant: skip the read
                wanted[tenant_id].extend(ids)
        for tenant_id, ids in wanted.items():
            try:
                rows = self.load(tenant_id, ids)
            except Exception:
                log.exception("live listener could not read new events")
                self._mark_all_stale()
                continue
            self.fan_out(tenant_id, rows)


class Delivery(list):
    """New events for one reader; renders through the shared batch when it
    is exactly one, so sockets on the same filter share one rendering."""

    def __init__(self, events: list[dict], shared: Batch | None = None):
        super().__init__(events)
        self.shared = shared

    def rendered(self, key, render):
        return self.shared.rendered(key, render) if self.shared is not None else render(self)


class SlowConsumer(Exception):
    """A subscriber fell too far behind; its client should reconnect and replay."""


class Follower:
    """One reader's view of the feed: what it missed since an event id, then
    new events as they commit, each event once.

    Replay is by receive order (ids are UUIDv7 made on receipt), not by
    `occurred_at`, with an overlap window because ids are made before commit
    and so are not commit-ordered; repeats from the overlap are dropped here.
    Batches come out in id order. `replay(tenant_id, filter, since, limit)`
    reads the database and returns (events, truncated).
    """

    SEEN_MAX = 5000

    def __init__(self, tenant_id: int, flt, since: str | None, *, replay, window: float = 0.05,
                 via: Hub | None = None, already_has=None):
        source = via or hub()
        self.subscription = source.subscribe(tenant_id, flt)
        self.replay = replay
        self.newest = since
        # A hub that already gathers commits per window needs no second
        # window here: waiting again would only add jitter to every socket.
        self.window = 0 if source.windowed else window
        self.hub_coalesces = source.windowed
        # Replayed events the reader can get elsewhere (a page's later pages).
        self.already_has = already_has or (lambda event: False)
        self._seen: dict[str, None] = {}
        self._seen_lock = threading.Lock()
        self._last_batch = 0.0

    def missed(self, limit: int | None = None) -> tuple[list[dict], bool]:
        """Events after `newest` that this reader has not had yet."""
        if not self.newest:
            return [], False
        events, truncated = self.replay(self.subscription.tenant_id, self.subscription.filter, self.newest, limit)
        return self._fresh([e for e in events if not self.already_has(e)]), truncated

    def next(self, timeout: float) -> "Delivery":
        """Wait up to `timeout` for new events. At most one batch per
        `window`: an event after a quiet spell goes at once; events that come
        faster wait for the window to end and go together. Raises SlowConsumer."""
        sub = self.subscription
        batches = sub.get_batches(timeout)
        replayed: list[dict] = []
        if sub.take_stale():
            replayed = self.missed()[0]  # already counted as had
        elif batches and self.window:
            wait = self._last_batch + self.window - time.monotonic()
            if wait > 0:
                time.sleep(wait)
                batches += sub.get_batches(0)
        if sub.overflowed:
            raise SlowConsumer()
        offered = [event for batch in batches for event in batch]
        fresh = sorted(replayed + self._fresh(offered), key=lambda e: e["id"]) if replayed else self._fresh(offered)
        if fresh:
            self._last_batch = time.monotonic()
        # The common case: exactly one shared batch, all of it new to us.
        shared = batches[0] if len(batches) == 1 and not replayed and len(fresh) == len(batches[0]) else None
        return Delivery(fresh, shared)

    def take(self, batch: Batch, write: Callable[["Delivery"], None]) -> None:
        """Hand a batch over directly (see `Subscription.direct`): `write`
        gets what is new to this reader, and only once it has returned are
        those events counted as delivered, so a failed write loses nothing."""
        with self._seen_lock:
            fresh = [e for e in sorted(batch, key=lambda e: e["id"]) if e["id"] not in self._seen]
        if fresh:
            write(Delivery(fresh, batch if len(fresh) == len(batch) else None))
            self._fresh(fresh)

    def _fresh(self, events: list[dict]) -> list[dict]:
        """The events this reader has not had yet, from now on counted as had."""
        with self._seen_lock:  # the owner and the hub's fast path both get here
            fresh = [e for e in sorted(events, key=lambda e: e["id"]) if e["id"] not in self._seen]
            for event in fresh:
                self._seen[event["id"]] = None
            while len(self._seen) > self.SEEN_MAX:
                del self._seen[next(iter(self._seen))]
            if fresh and (self.newest is None or fresh[-1]["id"] > self.newest):
                self.newest = fresh[-1]["id"]
            return fresh

    def close(self) -> None:
        self.subscription.unsubscribe()


def init_app(app, load: Callable[[int, list[str]], list[dict]]) -> None:
    """Choose the hub for this app's database. `load(tenant_id, ids)` re-reads rows."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("postgresql"):
        dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

        def load_in_app(tenant_id: int, ids: list[str]) -> list[dict]:
            with app.app_context():
                return load(tenant_id, ids)

        hub = PostgresHub(dsn, load_in_app, app.config["LIVE_MAX_PENDING"], app.config["LIVE_WINDOW"])
    else:
        hub = MemoryHub(app.config["LIVE_MAX_PENDING"])
    app.extensions["activityweb.hub"] = hub


def hub() -> Hub:
    """The current app's hub: one per app, so two apps (tests) never share sockets."""
    from flask import current_app

    return current_app.extensions["activityweb.hub"]


def delivered(tenant_id: int, rows: list[dict]) -> None:
    hub().delivered(tenant_id, rows)

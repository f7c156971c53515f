"""One follower per process: it reads the log after its position and fans out.

For each tenant someone here watches, the follower keeps a position (set
when the tenant gets its first subscriber, at the horizon then). Woken for a
tenant, it reads the tenant's rows after that position in commit order, page
by page, hands what is final (below the horizon) to the hub, and moves on.

Wake-ups come from this process's own inserts (`wake`, after commit) and,
on PostgreSQL, from other processes' through one LISTEN connection (the
trigger of migration 0002 notifies on commit). A notification only wakes:
what is delivered is always what the read finds, so a lost notification,
a listener that reconnects, or a database that was away for a while loses
nothing; the next read catches up from the position.

Rows that are committed but above the horizon (an older transaction is still
open) are held back: the follower looks again shortly (every few ms at
first, then up to `RECHECK_MAX`) until the horizon passes them. An aborted
transaction sends no notification, which is why it looks rather than waits.
The safety net: every watched tenant is read at least every `IDLE_READ`
seconds anyway, however busy other tenants keep the follower.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time

from .. import store
from .hub import Hub
from .positions import Position

log = logging.getLogger(__name__)

PAGE = 500
RECHECK_FIRST, RECHECK_MAX = 0.003, 0.04
IDLE_READ = 1.0
# A LISTEN connection quiet this long is asked a question, so a dead one is found.
LISTEN_PROBE_SECONDS = 5.0


class Follower:
    def __init__(self, app, hub: Hub, dsn: str | None = None):
        self.app = app
        self.hub = hub
        self.dsn = dsn  # PostgreSQL: other processes' commits come by NOTIFY
        self.positions: dict[int, Position] = {}
        self._cond = threading.Condition()
        self._dirty: set[int] = set()
        self._held: dict[int, tuple[float, float]] = {}  # tenant -> (when to look again, the delay it waited)
        self._full_read_at = time.monotonic() + IDLE_READ  # when every watched tenant is read next
        self._pid = None
        self._stopping = threading.Event()
        self.listening = threading.Event()
        self.reads = 0  # for tests and benchmarks
        hub.on_tenants_changed = self._tenants_changed

    # -- subscribers come and go
    def watch(self, tenant_id: int, horizon: int) -> None:
        """A subscriber of `tenant_id` is about to join; `horizon` was taken
        before it reads its own replay, so starting there misses nothing."""
        self.ensure_started()
        with self._cond:
            self.positions.setdefault(tenant_id, Position(horizon - 1))

    def _tenants_changed(self, tenant_id: int, watched: bool) -> None:
        if not watched:
            with self._cond:
                self.positions.pop(tenant_id, None)
                self._held.pop(tenant_id, None)
                self._dirty.discard(tenant_id)

    # -- wake-ups
    def wake(self, tenant_ids) -> None:
        with self._cond:
            found = {t for t in tenant_ids if t in self.positions}
            if found:
                self._dirty |= found
                self._cond.notify()

    def wake_all(self) -> None:
        with self._cond:
            self._dirty |= set(self.positions)
            self._cond.notify()

    # -- threads (greenlets under gevent), started lazily in the worker after fork
    def ensure_started(self) -> None:
        with self._cond:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._stopping.clear()
            threading.Thread(target=self._read_forever, name="activityweb-follow", daemon=True).start()
            if self.dsn:
                threading.Thread(target=self._listen_forever, name="activityweb-listen", daemon=True).start()
        if self.dsn:
            # Another process's commit right after a subscriber joins must be heard.
            self.listening.wait(5)

    def stop(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    def _next_tenants(self) -> set[int]:
        with self._cond:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now >= self._full_read_at:
                    # The safety net, however busy other tenants keep us: a tenant
                    # whose wake-up was lost waits a second, not for its next event.
                    self._full_read_at = now + IDLE_READ
                    self._dirty = set()
                    return set(self.positions)
                due = {t for t, (at, _) in self._held.items() if at <= now}
                if self._dirty or due:
                    tenants = self._dirty | due
                    self._dirty = set()
                    return tenants
                self._cond.wait(min([at for at, _ in self._held.values()] + [self._full_read_at]) - now)
            return set()

    def _read_forever(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            tenants = self._next_tenants()
            if not tenants:
                continue
            try:
                with self.app.app_context():
                    try:
                        for tenant_id in tenants:
                            self._catch_up(tenant_id)
                    finally:
                        store.release()
                backoff = 0.1
            except Exception:  # the database is away: keep the positions, try again
                log.warning("live follower could not read; retrying in %.1f s", backoff, exc_info=True)
                with self._cond:
                    self._dirty |= {t for t in tenants if t in self.positions}
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def _catch_up(self, tenant_id: int) -> None:
        # Its own connection, in autocommit: each page is one statement (see read_after).
        with store.autocommit_connection() as conn:
            self._read_pages(tenant_id, conn)

    def _read_pages(self, tenant_id: int, conn) -> None:
        while True:
            with self._cond:
                position = self.positions.get(tenant_id)
            if position is None:
                return
            final, held = store.replay.read_after(tenant_id, position.key, limit=PAGE, conn=conn)
            self.reads += 1
            end = Position(final[-1][0], final[-1][1]["id"]) if final else position
            self.hub.fan_out(tenant_id, final, end)
            with self._cond:
                if self.positions.get(tenant_id) is position:
                    self.positions[tenant_id] = end
                if held:
                    _, waited = self._held.get(tenant_id, (0.0, 0.0))
                    delay = min(RECHECK_MAX, waited * 2) or RECHECK_FIRST
                    self._held[tenant_id] = (time.monotonic() + delay, delay)
                else:
                    self._held.pop(tenant_id, None)
            if held or len(final) < PAGE:
                return

    def _listen_forever(self) -> None:
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                with store.replay.listening(self.dsn) as conn:
                    backoff = 0.2
                    self.listening.set()
                    # Whatever was committed while no one listened: read it now.
                    self.wake_all()
                    quiet_since = time.monotonic()
                    while not self._stopping.is_set():
                        tenants = set()
                        for note in conn.notifies(timeout=1.0, stop_after=1):
                            tenants.add(_tenant_of(note.payload))
                        if tenants:
                            self.wake(tenants)
                            quiet_since = time.monotonic()
                        elif time.monotonic() - quiet_since > LISTEN_PROBE_SECONDS:
                            store.replay.probe(conn)
                            quiet_since = time.monotonic()
            except Exception:
                log.warning("live listener lost its connection; reconnecting in %.1f s", backoff, exc_info=True)
                self.listening.clear()
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)


def _tenant_of(payload: str):
    try:
        return int(json.loads(payload)["t"])
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring malformed notification %r", payload[:200])
        return None

"""Who is watching: subscriptions of this process, and the fan-out to them.

The follower (`follower.py`) reads each new stretch of the log once and
hands it to `Hub.fan_out`, which offers every subscriber of the tenant the
events its filter matches, evaluated once per distinct filter. What a
subscriber makes of a batch (a WebSocket message, an SSE event) is rendered
once per batch and filter and shared (`Batch.rendered`). The hub knows no
HTML and no framing.

Each subscription has a bounded queue. The hub never blocks on a reader: a
queue that overflows marks its subscription `overflowed`, and its owner cuts
the client, which reconnects and resumes from its position.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from typing import Callable

from .positions import Position

log = logging.getLogger(__name__)


class Batch:
    """A stretch of one tenant's log matching one filter, in commit order,
    offered to every subscriber of that filter at once; `end` is where the
    read ended (everything up to it has been read, matched or not)."""

    __slots__ = ("events", "txids", "end", "first", "_positions", "_rendered")

    def __init__(self, events: list[dict], txids: list[int], end: Position):
        self.events, self.txids, self.end = events, txids, end
        self.first = (txids[0], events[0]["id"])
        self._positions: list[Position] | None = None
        self._rendered: dict = {}

    def __len__(self) -> int:
        return len(self.events)

    def rendered(self, key, render):
        # Two owners may race to render the same batch; both get an equal result.
        if key not in self._rendered:
            self._rendered[key] = render(self)
        return self._rendered[key]

    def positions(self) -> list[Position]:
        """The position after each event (made once per batch, shared by every reader)."""
        if self._positions is None:
            self._positions = [Position(t, e["id"]) for t, e in zip(self.txids, self.events)]
        return self._positions


class Subscription:
    """One reader: its tenant, filter and position, and a bounded queue of batches.

    `direct(batch) -> bool` is the owner's way to take a batch at once, from
    the fan-out, without waiting (a socket with room in its kernel buffer);
    the hub tries it only when nothing is queued or being written, so
    batches reach the client in order. Otherwise batches queue for the owner.
    """

    def __init__(self, hub: "Hub", tenant_id: int, flt, max_pending: int):
        self.hub = hub
        self.tenant_id = tenant_id
        self.filter = flt
        self.max_pending = max_pending
        self.overflowed = False
        self.closed = False
        self._batches: deque[Batch] = deque()
        self._pending = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.on_overflow: Callable[[], None] | None = None
        self.direct: Callable[[Batch], bool] | None = None
        self._owner_sending = False
        self._direct_sending = False
        self._woken = False

    def offer(self, batch: Batch) -> None:
        direct = self.direct
        if direct is not None:
            with self._lock:  # the Condition's own lock, without its wrapper's cost
                claimed = not (self._batches or self._owner_sending or self._direct_sending or self.overflowed
                               or self.closed)
                self._direct_sending = claimed
            if claimed:
                try:
                    written = direct(batch)
                except Exception:  # never the hub's problem: the owner gets the batch instead
                    log.exception("direct live write failed; queueing")
                    written = False
                with self._lock:
                    self._direct_sending = False
                    if self.closed:  # unsubscribe() waits for us
                        self._cond.notify_all()
                if written:
                    return
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

    def wake(self) -> None:
        """Make `take` return now, or at once the next time it is called."""
        with self._cond:
            self._woken = True
            self._cond.notify()

    def take(self, timeout: float | None = None) -> list[Batch]:
        """Wait up to `timeout` for batches; returns every queued one (maybe
        none). Until `done_sending`, nothing goes to the client directly."""
        with self._cond:
            if not self._batches and not (self.overflowed or self.closed or self._woken):
                self._cond.wait(timeout)
            self._woken = False
            batches = list(self._batches)
            self._batches.clear()
            self._pending = 0
            if batches:
                self._owner_sending = True
            return batches

    def done_sending(self) -> None:
        with self._cond:
            self._owner_sending = False

    def unsubscribe(self) -> None:
        with self._cond:
            self.closed = True
            # A direct write in flight finishes before the owner may close the
            # socket: a closed descriptor's number can be reused at once.
            while self._direct_sending:
                self._cond.wait(1.0)
            self._batches.clear()
            self._pending = 0
            self._cond.notify()
        self.hub._remove(self)


class Hub:
    """Subscriptions of this process, grouped by tenant."""

    def __init__(self, max_pending: int = 2000):
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._subs: dict[int, set[Subscription]] = defaultdict(set)
        # Per tenant, its subscriptions grouped by filter, made when the fan-out
        # needs it after a change: hashing each subscription's filter on every
        # fan-out cost more than matching did.
        self._groups: dict[int, list[tuple[object, list[Subscription]]]] = {}
        # Told when a tenant gains its first subscriber or loses its last.
        self.on_tenants_changed: Callable[[int, bool], None] | None = None

    def subscribe(self, tenant_id: int, flt) -> Subscription:
        sub = Subscription(self, tenant_id, flt, self.max_pending)
        with self._lock:
            first = not self._subs.get(tenant_id)
            self._subs[tenant_id].add(sub)
            self._groups.pop(tenant_id, None)
        if first and self.on_tenants_changed is not None:
            self.on_tenants_changed(tenant_id, True)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.tenant_id)
            if subs is None or sub not in subs:
                return
            subs.discard(sub)
            self._groups.pop(sub.tenant_id, None)
            last = not subs
            if last:
                del self._subs[sub.tenant_id]
        if last and self.on_tenants_changed is not None:
            self.on_tenants_changed(sub.tenant_id, False)

    def tenants(self) -> set[int]:
        with self._lock:
            return set(self._subs)

    def count(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    def fan_out(self, tenant_id: int, rows: list[tuple[int, dict]], end: Position) -> None:
        """Offer the tenant's subscribers the rows (txid, event) their filters
        match, read up to `end`; once per distinct filter."""
        if not rows:
            return
        with self._lock:
            groups = self._groups.get(tenant_id)
            if groups is None:
                subs = self._subs.get(tenant_id)
                if not subs:
                    return
                by_filter: dict[object, list[Subscription]] = defaultdict(list)
                for sub in subs:
                    by_filter[sub.filter].append(sub)
                groups = self._groups[tenant_id] = list(by_filter.items())
        for flt, group in groups:
            matched = [(t, e) for t, e in rows if flt.matches(e)]
            if not matched:
                continue
            batch = Batch([e for _, e in matched], [t for t, _ in matched], end)
            for sub in group:
                sub.offer(batch)

    def wake_all(self) -> None:
        """Make every waiting owner look up now (the server is stopping)."""
        with self._lock:
            subs = [s for group in self._subs.values() for s in group]
        for sub in subs:
            sub.wake()

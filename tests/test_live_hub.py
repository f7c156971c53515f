"""The live hub on its own: subscriptions, filters, bounded queues, replay order."""
import threading
import time
from datetime import datetime, timezone

import pytest
from werkzeug.datastructures import MultiDict

from activityweb import live, store
from activityweb.ids import uuid7
from activityweb.models import ACTIVITY_FIELDS
from activityweb.filters import parse_filter
from conftest import event


def act(**fields):
    base = {**dict.fromkeys(ACTIVITY_FIELDS), "id": uuid7(), "type": "test.happened", "title": "t",
            "source": "api", "priority": "normal", "tags": [], "occurred_at": datetime.now(timezone.utc)}
    base.update(fields)
    return base


def taken(sub, timeout=None) -> list[dict]:
    """Wait up to `timeout` for a subscription's events; all of them, as one list."""
    return [e for batch in sub.get_batches(timeout) for e in batch]


def subscribers(hub) -> int:
    return sum(len(subs) for subs in hub._subs.values())


def flt(query=""):
    return parse_filter(MultiDict([tuple(kv.split("=", 1)) for kv in query.split("&") if kv]))


def test_fan_out_honours_tenant_and_filter():
    hub = live.MemoryHub()
    everything, deploys, other_tenant = hub.subscribe(1, flt()), hub.subscribe(1, flt("type=deploy.*")), hub.subscribe(2, flt())
    a, b = act(type="deploy.succeeded"), act(type="lead.replied")
    hub.delivered(1, [a, b])
    assert [e["id"] for e in taken(everything, 0)] == [a["id"], b["id"]]
    assert [e["id"] for e in taken(deploys, 0)] == [a["id"]]
    assert taken(other_tenant, 0) == []


def test_filters_are_evaluated_once_per_distinct_filter(monkeypatch):
    hub = live.MemoryHub()
    subs = [hub.subscribe(1, flt("status=failed")) for _ in range(50)]
    calls = []
    original = type(subs[0].filter).matches
    monkeypatch.setattr(type(subs[0].filter), "matches", lambda self, a: calls.append(1) or original(self, a))
    hub.delivered(1, [act(status="failed"), act(status="success")])
    assert len(calls) == 2  # two events, one distinct filter
    assert all(len(taken(s, 0)) == 1 for s in subs)


def test_a_full_queue_marks_the_subscriber_and_never_blocks_the_hub():
    hub = live.MemoryHub(max_pending=3)
    slow, fast = hub.subscribe(1, flt()), hub.subscribe(1, flt())
    started = time.perf_counter()
    for _ in range(10):
        hub.delivered(1, [act()])
        taken(fast, 0)
    assert time.perf_counter() - started < 1
    assert slow.overflowed and not fast.overflowed
    hub.delivered(1, [act()])  # no room: the slow one is not offered it


def test_a_follower_that_fell_behind_raises_slow_consumer():
    hub = live.MemoryHub(max_pending=3)
    follower = live.Follower(1, flt(), None, replay=None, window=0, via=hub)
    hub.delivered(1, [act() for _ in range(5)])
    with pytest.raises(live.SlowConsumer):
        follower.next(0)


def test_get_waits_and_wakes():
    hub = live.MemoryHub()
    sub = hub.subscribe(1, flt())
    threading.Timer(0.1, lambda: hub.delivered(1, [act()])).start()
    started = time.perf_counter()
    assert len(taken(sub, 2)) == 1
    assert time.perf_counter() - started < 1
    threading.Timer(0.1, sub.wake).start()
    assert taken(sub, 2) == []


def test_unsubscribe_stops_delivery():
    hub = live.MemoryHub()
    sub = hub.subscribe(1, flt())
    sub.unsubscribe()
    hub.delivered(1, [act()])
    assert subscribers(hub) == 0 and taken(sub, 0) == []


def test_follower_replays_then_follows_each_event_once():
    hub = live.MemoryHub()
    old = [act(), act(), act()]
    replayed = []

    def replay(tenant_id, f, since, limit):
        replayed.append(since)
        return [e for e in old if e["id"] > since], False

    follower = live.Follower(1, flt(), old[0]["id"], replay=replay, window=0, via=hub)
    try:
        missed, truncated = follower.missed()
        assert [e["id"] for e in missed] == [old[1]["id"], old[2]["id"]] and not truncated
        new = act()
        hub.delivered(1, [old[2], new])  # the overlap repeats old[2]
        assert [e["id"] for e in follower.next(1)] == [new["id"]]
        assert follower.newest == new["id"]
    finally:
        follower.close()


def test_missed_since_is_in_receive_order_with_overlap(app, auth_headers, client):
    """Replay orders by receipt (id), not occurred_at, and reaches back over
    the overlap window so an event committed late is not lost."""
    late = client.post("/api/v1/activities", json=event(title="late producer clock", occurred_at="2026-01-01T00:00:00Z"),
                       headers=auth_headers).get_json()
    marker = client.post("/api/v1/activities", json=event(title="marker"), headers=auth_headers).get_json()
    after = client.post("/api/v1/activities", json=[event(title=f"after {i}") for i in range(3)], headers=auth_headers).get_json()
    with app.app_context():
        events, truncated = store.missed_since(1, flt(), marker["id"])
        ids = [e["id"] for e in events]
        assert ids == sorted(ids)
        assert {i["id"] for i in after["items"]} <= set(ids)
        assert late["id"] in ids  # inside the overlap window
        events, truncated = store.missed_since(1, flt(), marker["id"], limit=2)
        assert len(events) == 2 and truncated
        assert store.missed_since(1, flt(), "not-an-id") == ([], False)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_postgres_hub_hears_commits_from_any_connection(backend, tmp_path, request):
    """LISTEN in this process hears an insert made by another process's
    connection (the trigger of migration 0002), and only after commit."""
    import psycopg

    from conftest import make_app, teardown_app

    app = make_app(backend, tmp_path, request)
    try:
        with app.app_context():
            from activityweb import store

            tenant = store.get_or_create_tenant("acme")
            hub = app.extensions["activityweb.hub"]
            assert isinstance(hub, live.PostgresHub)
            sub = hub.subscribe(tenant.id, flt("type=deploy.*"))
            dsn = hub.dsn
        with psycopg.connect(dsn) as conn:
            for title, kind in (("match", "deploy.succeeded"), ("no match", "lead.replied")):
                conn.execute(
                    "INSERT INTO activities (id, tenant_id, type, source, source_id, title, priority, tags, data,"
                    " occurred_at, received_at, expires_at)"
                    " VALUES (%s, %s, %s, 'api', %s, %s, 'normal', '[]', '{}', now(), now(), now() + interval '1 year')",
                    (uuid7(), tenant.id, kind, title, title))
            assert taken(sub, 0.5) == []  # not committed yet: nothing heard
            conn.commit()
        got = taken(sub, 5)
        assert [e["title"] for e in got] == ["match"]
    finally:
        teardown_app(app)


def test_a_fast_write_never_blocks_and_keeps_what_the_kernel_did_not_take():
    """The fan-out's direct write (web/sockets.py): a full socket takes part
    of a frame; the rest goes first on the owner's next write, whole and in
    order, and until then the fast path declines."""
    import socket
    import threading

    from activityweb.web.sockets import _SerialSocket

    ours, theirs = socket.socketpair()
    woken = []
    sock = _SerialSocket(ours)
    sock.on_rest = lambda: woken.append(True)
    assert sock.can_send_now
    frame = bytes(range(256)) * 16_384  # 4 MB: more than a socketpair buffers
    with sock.try_hold() as held:
        assert held
        sock.send_now(frame)  # returns at once, whatever the kernel took
    assert woken == [True]
    with sock.try_hold() as held:
        assert not held  # bytes are left over: nothing may overtake them
    received = bytearray()

    def read():
        while len(received) < len(frame) + 5:
            received.extend(theirs.recv(1 << 16))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sock.flush()
    sock.send(b"after")
    reader.join(timeout=10)
    assert bytes(received) == frame + b"after"
    with sock.try_hold() as held:
        assert held
    ours.close()
    theirs.close()


def test_unsubscribe_waits_for_a_direct_write_in_flight():
    """The owner closes its socket after unsubscribing; a fan-out still
    writing to it then could write into a reused descriptor."""
    hub = live.MemoryHub()
    sub = hub.subscribe(1, flt())
    writing, release, order = threading.Event(), threading.Event(), []

    def direct(batch):
        writing.set()
        release.wait(5)
        order.append("written")
        return True

    sub.direct = direct
    fan_out = threading.Thread(target=hub.fan_out, args=(1, [act()]))
    fan_out.start()
    assert writing.wait(5)
    closer = threading.Thread(target=lambda: (sub.unsubscribe(), order.append("unsubscribed")))
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # still waiting for the write
    release.set()
    closer.join(5)
    fan_out.join(5)
    assert order == ["written", "unsubscribed"]


def test_after_the_hub_lost_events_the_follower_replays_them():
    """A listener that reconnects marks every subscriber stale; the next
    delivery brings what was committed meanwhile (with anything new), once."""
    hub = live.MemoryHub()
    first, lost, new = act(), act(), act()
    stored = [first, lost]

    def replay(tenant_id, f, since, limit):
        return [e for e in stored if e["id"] > since], False

    follower = live.Follower(1, flt(), first["id"], replay=replay, window=0, via=hub)
    try:
        hub._mark_all_stale()
        stored.append(new)
        hub.delivered(1, [new])
        assert [e["id"] for e in follower.next(1)] == [lost["id"], new["id"]]
        assert follower.newest == new["id"]
        assert list(follower.next(0)) == []
    finally:
        follower.close()


def test_a_wake_before_the_owner_waits_is_not_lost():
    """The fast path wakes the owner to flush a frame's rest; if the owner
    was not waiting at that moment, its next wait must return at once."""
    hub = live.MemoryHub()
    sub = hub.subscribe(1, flt())
    sub.wake()
    started = time.perf_counter()
    assert taken(sub, 5) == []
    assert time.perf_counter() - started < 1
    try:
        taken(sub, 0.05)  # the wake was used up: this one waits its time out
    finally:
        sub.unsubscribe()


def test_nothing_is_written_directly_after_a_close_frame():
    import socket

    from activityweb.web.sockets import _SerialSocket

    ours, theirs = socket.socketpair()
    sock = _SerialSocket(ours)
    sock.send(b"\x88\x02\x03\xe8")  # Close, 1000
    with sock.try_hold() as held:
        assert not held
    ours.close()
    theirs.close()

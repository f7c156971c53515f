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
    return [e for batch in sub.take(timeout) for e in batch.events]


def subscribers(hub) -> int:
    return hub.count()


def flt(query=""):
    return parse_filter(MultiDict([tuple(kv.split("=", 1)) for kv in query.split("&") if kv]))


def rows(*events, txid=10):
    return [(txid + i, e) for i, e in enumerate(events)]


def fan(hub, tenant_id, events, txid=10):
    rs = rows(*events, txid=txid)
    hub.fan_out(tenant_id, rs, live.Position(rs[-1][0], rs[-1][1]["id"]))


# ---------------------------------------------------------------- positions


def test_a_position_round_trips_through_its_token_and_refuses_anything_else():
    p = live.Position.of_snapshot(100, 105, [101, 103])
    assert live.Position.from_token(p.token) == p and live.Position.from_token(p.token).pending == p.pending
    assert live.Position.from_token(live.Position(7, uuid7()).token).pending == {}
    for bad in (None, "", "2026-01-01T00:00:00Z", uuid7(), "12-zz", "1-" + "0" * 32 + "~5-" + "0" * 32, "x" * 5000):
        assert live.Position.from_token(bad) is None  # a pending part after the position is refused too


def test_a_snapshot_position_has_what_the_snapshot_saw_and_not_the_open_transactions():
    p = live.Position.of_snapshot(100, 105, [101, 103])
    assert p.has(99, uuid7()) and p.has(102, uuid7()) and p.has(104, uuid7())
    assert not p.has(101, uuid7()) and not p.has(103, uuid7()) and not p.has(105, live.positions.NIL)
    a = uuid7()
    q = p.advanced(101, a)  # delivered in commit order: one event of 101
    assert q.has(101, a) and not q.has(101, uuid7()) and not q.has(103, uuid7())
    r = q.passed(live.Position(104))  # everything below 105 read: nothing is pending any more
    assert r.pending == {} and r.key == p.key
    assert p.advanced(106, a) == live.Position(106, a) and p.advanced(106, a).pending == {}


# ---------------------------------------------------------------------- hub


def test_fan_out_honours_tenant_and_filter():
    hub = live.Hub()
    everything, deploys, other_tenant = hub.subscribe(1, flt()), hub.subscribe(1, flt("type=deploy.*")), hub.subscribe(2, flt())
    a, b = act(type="deploy.succeeded"), act(type="lead.replied")
    fan(hub, 1, [a, b])
    assert [e["id"] for e in taken(everything, 0)] == [a["id"], b["id"]]
    assert [e["id"] for e in taken(deploys, 0)] == [a["id"]]
    assert taken(other_tenant, 0) == []


def test_filters_are_evaluated_once_per_distinct_filter(monkeypatch):
    hub = live.Hub()
    subs = [hub.subscribe(1, flt("status=failed")) for _ in range(50)]
    calls = []
    original = type(subs[0].filter).matches
    monkeypatch.setattr(type(subs[0].filter), "matches", lambda self, a: calls.append(1) or original(self, a))
    fan(hub, 1, [act(status="failed"), act(status="success")])
    assert len(calls) == 2  # two events, one distinct filter
    batches = [s.take(0) for s in subs]
    assert all(len(b) == 1 and b[0] is batches[0][0] for b in batches)  # one shared batch


def test_a_full_queue_marks_the_subscriber_and_never_blocks_the_hub():
    hub = live.Hub(max_pending=3)
    slow, fast = hub.subscribe(1, flt()), hub.subscribe(1, flt())
    started = time.perf_counter()
    for n in range(10):
        fan(hub, 1, [act()], txid=10 + n)
        taken(fast, 0)
    assert time.perf_counter() - started < 1
    assert slow.overflowed and not fast.overflowed


def test_take_waits_and_wakes():
    hub = live.Hub()
    sub = hub.subscribe(1, flt())
    threading.Timer(0.1, lambda: fan(hub, 1, [act()])).start()
    started = time.perf_counter()
    assert len(taken(sub, 2)) == 1
    assert time.perf_counter() - started < 1
    threading.Timer(0.1, sub.wake).start()
    assert taken(sub, 2) == []


def test_unsubscribe_stops_delivery():
    hub = live.Hub()
    sub = hub.subscribe(1, flt())
    sub.unsubscribe()
    fan(hub, 1, [act()])
    assert subscribers(hub) == 0 and taken(sub, 0) == []


def test_unsubscribe_waits_for_a_direct_write_in_flight():
    """The owner closes its socket after unsubscribing; a fan-out still
    writing to it then could write into a reused descriptor."""
    hub = live.Hub()
    sub = hub.subscribe(1, flt())
    writing, release, order = threading.Event(), threading.Event(), []

    def direct(batch):
        writing.set()
        release.wait(5)
        order.append("written")
        return True

    sub.direct = direct
    fan_out = threading.Thread(target=fan, args=(hub, 1, [act()]))
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


# --------------------------------------------------------------- the log


def test_the_log_is_in_commit_order_not_occurred_at(app, auth_headers, client):
    """Replay reads in commit order: a producer whose clock lags (an
    occurred_at an hour old) is still after the events committed before it."""
    from datetime import timedelta

    first = client.post("/api/v1/activities", json=event(title="first"), headers=auth_headers).get_json()
    old = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    late = client.post("/api/v1/activities", json=event(title="late clock", occurred_at=old), headers=auth_headers).get_json()
    after = client.post("/api/v1/activities", json=[event(title=f"after {i}") for i in range(3)], headers=auth_headers).get_json()
    with app.app_context():
        tenant = store.find_tenant("acme").id
        start = store.replay.position_of(tenant, first["id"])
        found, held = store.replay.read_after(tenant, start)
        assert [e["id"] for _, e in found] == [late["id"]] + [i["id"] for i in after["items"]] and not held
        txids = [txid for txid, _ in found]
        assert txids == sorted(txids) and txids[1] == txids[2] == txids[3]  # one batch, one transaction
        page, _ = store.replay.read_after(tenant, start, limit=2)
        assert len(page) == 2
        assert store.replay.count_after(tenant, start, cap=2) == 3  # counts stop at cap + 1
        assert store.replay.read_after(tenant, store.replay.position_of(tenant, after["items"][-1]["id"]))[0] == []


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_row_behind_an_open_transaction_is_held_back_until_it_ends(backend, app, auth_headers, client):
    """Below the horizon the log is final: a transaction still open (it has
    an xid) holds back later commits, which are visible but not final yet."""
    import psycopg

    with app.app_context():
        tenant = store.get_or_create_tenant("acme").id
        start = live.Position.of_snapshot(*store.replay.snapshot())
        dsn = app.extensions["activityweb.follower"].dsn
    with psycopg.connect(dsn) as open_tx:
        open_tx.execute("SELECT pg_current_xact_id()")  # takes an xid, as a writer does
        later = client.post("/api/v1/activities", json=event(title="later"), headers=auth_headers).get_json()
        with app.app_context():
            found, held = store.replay.read_after(tenant, start.key, pending=start.pending)
            assert found == [] and held  # committed, visible, but not final yet
        open_tx.rollback()  # aborted: it sends nothing, the horizon passes anyway
    assert [e["id"] for _, e in read_once_final(app, tenant, start)] == [later["id"]]


def read_once_final(app, tenant, start, seconds=10.0):
    """The rows after `start` once none is held back (other tests' transactions
    in this database may come and go meanwhile)."""
    deadline = time.monotonic() + seconds
    while True:
        with app.app_context():
            found, held = store.replay.read_after(tenant, start.key, pending=start.pending)
            store.release()
        if not held or time.monotonic() > deadline:
            return found
        time.sleep(0.01)


def test_the_follower_reads_each_event_once_to_every_subscriber(app, auth_headers, client):
    """The follower in the app: woken after commit, it reads from its position
    and fans out; the same path on both databases."""
    with app.app_context():
        tenant = store.get_or_create_tenant("acme").id
        reader = live.Reader(tenant, flt(), None)
        store.release()
    try:
        posted = client.post("/api/v1/activities", json=[event(title=f"e{i}") for i in range(3)],
                             headers=auth_headers).get_json()["items"]
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            for batch in reader.subscription.take(0.5):
                got += reader.accept(batch).events
        assert [e["id"] for e in got] == [p["id"] for p in posted]
        # The reader's position now has them all: offered again, they are dropped.
        batch = live.Batch(got, [reader.position.txid] * 3, reader.position)
        assert not reader.accept(batch)
    finally:
        reader.close()


def test_a_fast_write_never_blocks_and_keeps_what_the_kernel_did_not_take():
    """The fan-out's direct write (web/sockets.py): a full socket takes part
    of a frame; the rest goes first on the owner's next write, whole and in
    order, and until then the fast path declines."""
    import socket
    import threading

    from activityweb.live.transport import _SerialSocket

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


def test_a_wake_before_the_owner_waits_is_not_lost():
    """The fast path wakes the owner to flush a frame's rest; if the owner
    was not waiting at that moment, its next wait must return at once."""
    hub = live.Hub()
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

    from activityweb.live.transport import _SerialSocket

    ours, theirs = socket.socketpair()
    sock = _SerialSocket(ours)
    sock.send(b"\x88\x02\x03\xe8")  # Close, 1000
    with sock.try_hold() as held:
        assert not held
    ours.close()
    theirs.close()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_another_databases_open_transaction_holds_nothing_back(backend, app, auth_headers, client):
    """The horizon is this database's: a long transaction in another database
    of the same server (a bulk load, a CREATE DATABASE) delays nothing here."""
    import psycopg

    from conftest import BASE_PG_URL

    with app.app_context():
        tenant = store.get_or_create_tenant("acme").id
        start = live.Position.of_snapshot(*store.replay.snapshot())
        store.release()
    with psycopg.connect(BASE_PG_URL) as elsewhere:
        elsewhere.execute("SELECT pg_current_xact_id()")  # an xid, held open in the `test` database
        later = client.post("/api/v1/activities", json=event(title="later"), headers=auth_headers).get_json()
        assert [e["id"] for _, e in read_once_final(app, tenant, start)] == [later["id"]]
        elsewhere.rollback()


def test_xids_widen_across_an_epoch():
    from activityweb.store.replay import _widen

    assert _widen(5, (3 << 32) | 10) == (3 << 32) | 5
    assert _widen(0xFFFFFFF0, (3 << 32) | 10) == (2 << 32) | 0xFFFFFFF0  # just before the wrap
    assert _widen(20, (3 << 32) | 0xFFFFFFF0) == (4 << 32) | 20  # just after it

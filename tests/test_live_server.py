"""Live delivery through a real server: the dashboard socket, /ws and SSE.

Flask's test client cannot open a WebSocket, so these run the app in a
werkzeug thread and talk to it with independent clients (`websockets`,
`requests`), on SQLite (in-process hub) and PostgreSQL (LISTEN/NOTIFY).
"""
import contextlib
import json
import threading
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from activityweb import live
from conftest import SSEReader, event

pytestmark = pytest.mark.server


def post(server, *events, headers=None):
    response = requests.post(server.url + "/api/v1/activities", json=list(events), headers=headers or {}, timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()["items"]


class feed_socket:
    """A dashboard socket: connect with the page's Origin, then say "since"."""

    def __init__(self, server, query="", since=None):
        self.ws = connect(f"{server.ws_url}/feed/ws{query}", origin=server.url, open_timeout=5)
        self.since = since

    def __enter__(self):
        ws = self.ws.__enter__()
        ws.send(json.dumps({"since": self.since}))
        return ws

    def __exit__(self, *exc):
        return self.ws.__exit__(*exc)


def receive_all(ws, seconds=1.0):
    """Every message that arrives within `seconds` of the last one."""
    messages = []
    while True:
        try:
            messages.append(ws.recv(timeout=seconds))
        except TimeoutError:
            return messages


def wait_for(ws, text, seconds=5.0):
    deadline = time.monotonic() + seconds
    received = []
    while time.monotonic() < deadline:
        try:
            received.append(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            break
        if text in received[-1]:
            return received
    raise AssertionError(f"{text!r} not received; got {received!r}")


@pytest.fixture
def server(local_app, serve):
    return serve(local_app)


def test_feed_socket_sends_matching_events_as_oob_partials(server):
    with feed_socket(server, "?type=deploy.*") as ws:
        time.sleep(0.2)
        post(server, event(title="Deployed api", type="deploy.succeeded"), event(title="A lead", type="lead.replied"))
        messages = wait_for(ws, "Deployed api")
        messages += receive_all(ws, 0.5)
    text = "".join(messages)
    assert 'hx-swap-oob="afterbegin:#feed-items"' in messages[-1] or 'hx-swap-oob="afterbegin:#feed-items"' in text
    assert 'id="activity-' in text and "A lead" not in text


def test_feed_socket_renders_text_inert(server):
    with feed_socket(server) as ws:
        time.sleep(0.2)
        post(server, event(title='<script>alert(1)</script>"><img src=x onerror=alert(2)>'))
        text = "".join(wait_for(ws, "alert(1)"))
    assert "<script>" not in text and "<img src=x" not in text and "&lt;script&gt;" in text


def test_feed_socket_replays_what_a_reconnecting_page_missed(server):
    with feed_socket(server) as ws:
        time.sleep(0.2)
        first = post(server, event(title="seen"))[0]
        wait_for(ws, "seen")
    missed = post(server, event(title="missed one"), event(title="missed two"))
    with feed_socket(server, since=first["id"]) as ws:
        text = "".join(receive_all(ws, 1.0))
        after = post(server, event(title="after reconnect"))
        text += "".join(wait_for(ws, "after reconnect"))
    for item in missed + after:
        assert text.count(f'id="activity-{item["id"]}"') == 1


def test_feed_socket_refuses_a_foreign_origin(server):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/feed/ws", origin="http://evil.example", open_timeout=5)
    assert refused.value.response.status_code == 403


def raw_json_socket(server, secret):
    """A /ws client on a bare TCP socket with a small receive window, that
    reads only when told: the way to make a client fall behind for real."""
    import base64
    import os
    import socket as sockets

    host, port = server.url.removeprefix("http://").split(":")
    raw = sockets.socket()
    raw.setsockopt(sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096)  # before connect: a small window
    raw.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    raw.sendall((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {secret}\r\n"
                 "\r\n").encode())
    assert b" 101 " in raw.recv(4096).split(b"\r\n")[0]
    return raw


def test_a_slow_consumer_is_closed_with_try_again(backend, tmp_path, request, serve):
    """A client that reads too slowly is told to reconnect (1013) once it has
    fallen a queue's length behind. On PostgreSQL the hub writes straight to
    an idle socket, so falling behind means the kernel's buffers are full:
    this client reads nothing while about 15 MB of events come, then drains."""
    from activityweb import auth, store
    from conftest import make_app, teardown_app

    app = make_app(backend, tmp_path, request, LIVE_MAX_PENDING=5, LIVE_STUCK_SECONDS=30.0)
    try:
        with app.app_context():
            _, secret = auth.create_token(store.get_or_create_tenant("acme"), "t", ["ingest", "read"])
        server = serve(app)
        slow = raw_json_socket(server, secret)
        time.sleep(0.3)
        big = "x" * 50_000
        for n in range(30):
            post(server, *[event(title=f"burst {n}.{i}", data={"blob": big}) for i in range(10)],
                 headers={"Authorization": f"Bearer {secret}"})
        received = bytearray()
        slow.settimeout(5)
        try:
            while chunk := slow.recv(1 << 20):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        slow.close()
        # The close frame: opcode 8, a 24-byte payload, code 1013, then the reason.
        assert b"\x88\x18" + (1013).to_bytes(2, "big") + b"fell behind; reconnect" in received
    finally:
        teardown_app(app)


def test_server_shutdown_closes_sockets_with_service_restart(server):
    with feed_socket(server) as ws:
        time.sleep(0.2)
        server.close_sockets()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1012


# ------------------------------------------------------------------ /ws JSON


@pytest.fixture
def token(local_app):
    from activityweb import auth, store

    with local_app.app_context():
        _, secret = auth.create_token(store.get_or_create_tenant("acme"), "stream", ["ingest", "read"])
    return {"Authorization": f"Bearer {secret}"}


def activities(messages):
    """The activity_created messages among /ws messages (it also says its position)."""
    return (m for m in map(json.loads, messages) if m["type"] == "activity_created")


def json_socket(server, token, query=""):
    return connect(f"{server.ws_url}/ws{query}", additional_headers=token, open_timeout=5)


def test_json_socket_filters_and_frames(server, token):
    with json_socket(server, token, "?type=deploy.*&priority=high") as ws:
        time.sleep(0.2)
        post(server, event(title="match", type="deploy.failed", priority="high"),
             event(title="wrong priority", type="deploy.failed"), event(title="wrong type", priority="high"),
             headers=token)
        frames = [json.loads(m) for m in receive_all(ws, 1.0)]
    assert [f["type"] for f in frames] == ["position", "activity_created"]  # where it starts, then the event
    frames = frames[1:]
    assert frames[0]["activity"]["title"] == "match" and frames[0]["activity"]["tenant"] == "acme"


def test_json_socket_resumes_from_since_without_loss(server, token):
    with json_socket(server, token) as ws:
        time.sleep(0.2)
        first = post(server, event(title="first"), headers=token)[0]
        message = next(activities([ws.recv(timeout=5), ws.recv(timeout=5)]))
        assert message["activity"]["id"] == first["id"]
    missed = post(server, *[event(title=f"while away {i}") for i in range(5)], headers=token)
    with json_socket(server, token, f"?since={message['position']}") as ws:
        ids = [m["activity"]["id"] for m in activities(receive_all(ws, 1.0))]
    assert ids == [m["id"] for m in missed]  # in commit order, each once, nothing already had
    with json_socket(server, token, f"?since={first['id']}") as ws:  # an event id resumes after that event
        ids = [m["activity"]["id"] for m in activities(receive_all(ws, 1.0))]
    assert ids == [m["id"] for m in missed]


def test_json_socket_needs_a_read_token(server, local_app):
    from activityweb import auth, store

    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/ws", additional_headers={"Authorization": "Bearer nope"}, open_timeout=5)
    assert refused.value.response.status_code == 401
    with local_app.app_context():
        _, ingest_only = auth.create_token(store.get_or_create_tenant("acme"), "w", ["ingest"])
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/ws", additional_headers={"Authorization": f"Bearer {ingest_only}"}, open_timeout=5)
    assert refused.value.response.status_code == 403


def test_json_socket_is_tenant_scoped(server, token, local_app):
    from activityweb import auth, store

    with local_app.app_context():
        _, other = auth.create_token(store.get_or_create_tenant("globex"), "w", ["ingest"])
    with json_socket(server, token) as ws:
        time.sleep(0.2)
        post(server, event(title="globex secret"), headers={"Authorization": f"Bearer {other}"})
        post(server, event(title="acme news"), headers=token)
        titles = [m["activity"]["title"] for m in activities(receive_all(ws, 1.0))]
    assert titles == ["acme news"]


# ------------------------------------------------------------------------ SSE


def test_sse_stream_filters_and_ids(server, token):
    reader = SSEReader(server, token, "?source=github")
    try:
        assert reader.status == 200 and reader.headers["content-type"].startswith("text/event-stream")
        time.sleep(0.2)
        items = post(server, event(title="push", source="github"), event(title="other"), headers=token)
        events = reader.wait(1)
        time.sleep(0.5)
    finally:
        reader.close()
    assert len(reader.events) == 1
    assert events[0]["event"] == "activity_created" and live.is_token(events[0]["id"])  # a position
    data = json.loads(events[0]["data"])
    assert data["id"] == items[0]["id"] and data["title"] == "push"


def test_sse_resumes_from_last_event_id(server, token):
    reader = SSEReader(server, token)
    try:
        time.sleep(0.2)
        post(server, event(title="one"), headers=token)
        last_event_id = reader.wait(1)[0]["id"]
    finally:
        reader.close()
    missed = post(server, event(title="two"), event(title="three"), headers=token)
    reader = SSEReader(server, token, last_event_id=last_event_id)
    try:
        reader.wait(2, seconds=3)
        time.sleep(0.3)
    finally:
        reader.close()
    got = [json.loads(e["data"])["id"] for e in reader.events]
    assert got == [m["id"] for m in missed]  # exactly what was missed: nothing repeated


def test_sse_refuses_bad_resume_point_and_tokens(server, token):
    response = requests.get(f"{server.url}/api/v1/activities/stream", headers={**token, "Last-Event-ID": "nope"}, timeout=5)
    assert response.status_code == 400 and response.json()["error"]["details"][0]["field"] == "Last-Event-ID"
    response = requests.get(f"{server.url}/api/v1/activities/stream", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert response.status_code == 401


@contextlib.contextmanager
def small_queues(backend, tmp_path, request, serve):
    """A served app whose live queues hold 100 events and whose stuck clients
    get 1 s of grace; yields (app, server, token secret, its headers).

    The bound sits between what a reading client lags by (a few events on a
    loaded two-core machine) and what a stuck one piles up (all but the ~4 MB
    the kernel buffers hold: over 200 of 300 heavy events)."""
    from activityweb import auth, store
    from conftest import make_app, teardown_app

    app = make_app(backend, tmp_path, request, LIVE_MAX_PENDING=100, LIVE_STUCK_SECONDS=1.0)
    try:
        with app.app_context():
            _, secret = auth.create_token(store.get_or_create_tenant("acme"), "t", ["ingest", "read"])
        yield app, serve(app), secret, {"Authorization": f"Bearer {secret}"}
    finally:
        teardown_app(app)


def assert_cut(stuck) -> None:
    """The server cut this connection: reading now drains what the kernel held,
    then finds the end of the stream (a timeout here means it is still open)."""
    stuck.settimeout(5)
    try:
        while stuck.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    stuck.close()


def test_a_client_that_stops_reading_does_not_delay_the_others(backend, tmp_path, request, serve):
    """One socket never reads, so its TCP window fills and its sender blocks;
    another keeps getting every event promptly, and the stuck one is cut off
    after its grace. (The JSON /ws carries whole events, data included, so a
    few megabytes fill the buffers quickly.)"""
    with small_queues(backend, tmp_path, request, serve) as (app, server, secret, token):
        stuck = raw_json_socket(server, secret)
        with json_socket(server, token) as reader:
            titles = set()

            def read():
                while len(titles) < 300:
                    titles.update(m["activity"]["title"] for m in activities([reader.recv(timeout=15)]))

            reading = threading.Thread(target=read, daemon=True)
            reading.start()
            time.sleep(0.3)
            big = "x" * 50_000
            started = time.monotonic()
            for n in range(30):  # about 15 MB: far more than the kernel buffers between us
                post(server, *[event(title=f"heavy {n}.{i}", data={"blob": big}) for i in range(10)], headers=token)
            reading.join(timeout=15)
            assert len(titles) == 300 and time.monotonic() - started < 12
        assert_cut(stuck)


def test_an_event_stream_that_stops_reading_is_cut_after_its_grace(backend, tmp_path, request, serve):
    """SSE too: a client that stops reading blocks its stream's write; once
    its queue overflows it has LIVE_STUCK_SECONDS to drain, then the server
    cuts the connection (EventSource reconnects and resumes), instead of
    holding the stream, and its place in the server, for ever."""
    import socket as sockets

    with small_queues(backend, tmp_path, request, serve) as (app, server, secret, token):
        host, port = server.url.removeprefix("http://").split(":")
        stuck = sockets.socket()
        stuck.setsockopt(sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096)  # before connect: a small window
        stuck.connect((host, int(port)))
        stuck.sendall((f"GET /api/v1/activities/stream HTTP/1.1\r\nHost: {host}:{port}\r\n"
                       f"Authorization: Bearer {secret}\r\nAccept: text/event-stream\r\n\r\n").encode())
        assert b" 200 " in stuck.recv(4096).split(b"\r\n")[0]
        hub = app.extensions["activityweb.hub"]
        deadline = time.monotonic() + 5
        while hub.count() < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hub.count() == 1
        big = "x" * 50_000
        for n in range(30):  # about 15 MB: far more than the kernel buffers between us
            post(server, *[event(title=f"heavy {n}.{i}", data={"blob": big}) for i in range(10)], headers=token)
        # Still not reading: the server lets the stream go by itself, its subscription with it.
        deadline = time.monotonic() + 10
        while hub.count() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hub.count() == 0, "the stuck stream is still held"
        assert_cut(stuck)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_an_ingest_commit_notifies_other_processes_once_and_a_repeat_not_at_all(app, client, make_token):
    """Other processes' followers wake by NOTIFY from the insert's trigger (migration 0002)."""
    from activityweb import store

    headers = make_token()
    with store.replay.listening(app.extensions["activityweb.follower"].dsn) as listener:
        stored = client.post("/api/v1/activities", json=[event(title="one", source_id="one"), event(title="two")],
                             headers=headers)
        assert stored.status_code == 201
        notes = [json.loads(n.payload) for n in listener.notifies(timeout=0.5)]
        with app.app_context():
            tenant = store.get_or_create_tenant("acme").id
        assert [(note["t"], sorted(note["ids"])) for note in notes] \
            == [(tenant, sorted(item["id"] for item in stored.get_json()["items"]))]
        repeat = client.post("/api/v1/activities", json=event(title="one", source_id="one"), headers=headers)
        assert repeat.status_code == 200  # a repeat stores nothing, so wakes nobody
        assert list(listener.notifies(timeout=0.3)) == []

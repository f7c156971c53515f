"""Live delivery under faults, through a real gunicorn and real clients, on both databases.

Each test runs the Procfile's server (gunicorn.conf.py, gevent; 2 workers
on PostgreSQL, 1 on SQLite, which serialises writers in one process) and
counts, per client, every event it got: none may be missing and none may
come twice, whatever happened in between (a reconnect, a database away, a
transaction held open, a restart).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import psutil
import pytest
import requests
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from activityweb import live, store
from bench.common import gunicorn
from conftest import SSEReader, event

pytestmark = pytest.mark.server

PRODUCERS = 8


def server_env(app, url: str | None = None) -> dict:
    database_url = (url or app.config["SQLALCHEMY_DATABASE_URI"]).replace("+psycopg", "")
    return dict(os.environ, DATABASE_URL=database_url, ACTIVITYWEB_LOCAL_MODE="1", SECRET_KEY="test",
                LOG_LEVEL="warning")


def workers_for(backend: str) -> int:
    return 2 if backend == "postgresql" else 1


@pytest.fixture
def token(local_app):
    from activityweb import auth

    with local_app.app_context():
        _, secret = auth.create_token(store.get_or_create_tenant("default"), "live", ["ingest", "read"])
    return {"Authorization": f"Bearer {secret}"}


def post_concurrently(base: str, token: dict, count: int, prefix: str, *, late_producer: bool = True,
                      retry_for: float = 0.0) -> list[str]:
    """`count` events from PRODUCERS concurrent producers, one POST each; one
    producer's clock is an hour behind. Returns the ids, in no order. With
    `retry_for`, a POST that fails is sent again (the same source_id, so a
    retry whose first try was stored is answered with the stored event)."""
    old = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    run = uuid.uuid4().hex[:8]

    def produce(p: int) -> list[str]:
        ids = []
        with requests.Session() as session:
            for n in range(p, count, PRODUCERS):
                body = event(title=f"{prefix} {n}", type="fault.test", source_id=f"{run}-{prefix}-{n}")
                if late_producer and p == 0:
                    body["occurred_at"] = old
                deadline = time.monotonic() + retry_for
                while True:
                    try:
                        answer = session.post(f"{base}/api/v1/activities", json=body, headers=token, timeout=10)
                        if answer.status_code in (200, 201):
                            break
                        failure = answer.text
                    except requests.RequestException as exc:
                        failure = repr(exc)
                    assert time.monotonic() < deadline, failure
                    time.sleep(0.1)
                ids.append(answer.json()["id"])
        return ids

    with ThreadPoolExecutor(PRODUCERS) as pool:
        return [i for ids in pool.map(produce, range(PRODUCERS)) for i in ids]


class JsonClient:
    """A /ws client that keeps every event id it got and its last position,
    and on a close with 1012/1013 (or when told) reconnects with `since=`."""

    def __init__(self, ws_base: str, token: dict):
        self.ws_base, self.token = ws_base, token
        self.ids: list[str] = []
        self.position: str | None = None
        self.closes: list[int | None] = []
        self.resets = 0
        self.errors: list[str] = []
        self.connected = False  # the server said its position: its reader is live

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            url = f"{self.ws_base}/ws" + (f"?since={self.position}" if self.position else "")
            try:
                async with connect(url, additional_headers=self.token, open_timeout=30) as ws:
                    while not stop.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), 0.2)
                        except asyncio.TimeoutError:
                            continue
                        message = json.loads(raw)
                        if message["type"] == "reset":
                            self.resets += 1
                        elif message["type"] == "position":
                            self.connected = True  # the server's reader is live from here
                        elif message["type"] == "activity_created":
                            self.ids.append(message["activity"]["id"])
                        self.position = message["position"]
            except ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
            except (OSError, asyncio.TimeoutError) as exc:  # the server is between workers: try again
                self.errors.append(repr(exc))
                await asyncio.sleep(0.2)


def run_clients(clients, body) -> None:
    """Run `clients` (JsonClient) on an event loop in a thread of its own while `body()` runs."""
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    tasks = []

    def serve():
        asyncio.set_event_loop(loop)
        tasks.extend(loop.create_task(c.run(stop)) for c in clients)
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        body()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


def wait_until(condition, seconds: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def assert_exactly(got: list[str], expected: list[str], who: str = "") -> None:
    missing = set(expected) - set(got)
    repeats = len(got) - len(set(got))
    assert not missing and repeats == 0 and set(got) == set(expected), \
        f"{who}: {len(missing)} missing, {repeats} repeated, {len(set(got) - set(expected))} unexpected"


class FeedClient:
    """The dashboard as app.js drives it: the page's data-since, then the
    position each message starts with, sent on every (re)connect."""

    POSITION = re.compile(r"^<!--(?:position|reset):([0-9a-f~-]+)-->")

    def __init__(self, base: str):
        self.base = base
        page = requests.get(base + "/", timeout=10).text
        self.position = re.search(r'id="feed-live"[^>]*data-since="([^"]+)"', page, re.S).group(1)
        self.ids: list[str] = []

    def read_for(self, seconds: float, until=None) -> None:
        async def read():
            async with connect(self.base.replace("http://", "ws://") + "/feed/ws", origin=self.base,
                               open_timeout=10) as ws:
                await ws.send(json.dumps({"since": self.position}))
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline and not (until and until()):
                    try:
                        message = await asyncio.wait_for(ws.recv(), 0.2)
                    except asyncio.TimeoutError:
                        continue
                    self.position = self.POSITION.match(message).group(1)
                    self.ids += re.findall(r'<li id="activity-([0-9a-f-]{36})"', message)

        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, read()).result()


def test_three_paths_resume_exactly_after_missed_events(backend, local_app, token):
    """/ws?since=, SSE Last-Event-ID and the dashboard: 8 concurrent
    producers (one an hour behind) post while the clients are away; each
    client gets exactly what it missed, then goes on live."""
    with gunicorn("wsgi:app", server_env(local_app), workers=workers_for(backend)) as (base, _):
        ws_base = base.replace("http://", "ws://")
        feed = FeedClient(base)

        class Server:
            url = base

        # Connected: a first round, live.
        json_client = JsonClient(ws_base, token)
        sse = SSEReader(Server, token)
        first: list[str] = []
        run_clients([json_client], lambda: (
            wait_until(lambda: json_client.connected, what="/ws live"), first.extend(post_concurrently(base, token, 24, "live")),
            wait_until(lambda: len(json_client.ids) >= 24, what="the first round on /ws")))
        sse_ids = [json.loads(e["data"])["id"] for e in sse.wait(24, seconds=15)]
        last_event_id = sse.events[-1]["id"]
        sse.close()
        feed.read_for(15, until=lambda: len(feed.ids) >= 24)
        # Away: the second round.
        missed = post_concurrently(base, token, 40, "missed")
        # Back: each resumes from its position; a third round comes live.
        third: list[str] = []
        sse = SSEReader(Server, token, last_event_id=last_event_id)
        run_clients([json_client], lambda: (
            wait_until(lambda: len(json_client.ids) >= 64, what="the replay on /ws"),
            third.extend(post_concurrently(base, token, 16, "after")),
            wait_until(lambda: len(json_client.ids) >= 80, what="the third round on /ws")))
        sse_ids += [json.loads(e["data"])["id"] for e in sse.wait(56, seconds=15)]
        time.sleep(0.3)  # anything repeated would come now
        sse_ids += [json.loads(e["data"])["id"] for e in sse.events[56:]]
        sse.close()
        feed.read_for(15, until=lambda: len(feed.ids) >= 80)
    everything = first + missed + third
    assert_exactly(json_client.ids, everything, "/ws")
    assert_exactly(sse_ids, everything, "SSE")
    assert_exactly(feed.ids, everything, "the dashboard")
    assert json_client.resets == 0


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_socket_open_through_a_database_outage_gets_everything_after_it(backend, local_app, pg_proxy, token):
    """PostgreSQL unreachable for 10 s (every connection reset through the
    proxy): a socket that stayed open gets each event committed after, once."""
    proxy, url = pg_proxy
    with gunicorn("wsgi:app", server_env(local_app, url), workers=2) as (base, _):
        client = JsonClient(base.replace("http://", "ws://"), token)
        after: list[str] = []

        def outage():
            wait_until(lambda: client.connected, what="/ws live")
            before = post_concurrently(base, token, 8, "before", late_producer=False)
            wait_until(lambda: len(client.ids) >= 8, what="events before the outage")
            proxy.cut()
            time.sleep(10)  # the outage the scenario describes
            proxy.restore()
            deadline = time.monotonic() + 30
            while len(after) < 10 and time.monotonic() < deadline:  # the pool finds its connections dead first
                answer = requests.post(f"{base}/api/v1/activities", json=event(title=f"after {len(after)}"),
                                       headers=token, timeout=10)
                if answer.status_code == 201:
                    after.append(answer.json()["id"])
                else:  # the pool finds its connections dead: "try again later", never a 500
                    assert answer.status_code == 503 and answer.headers.get("Retry-After"), answer.text
                    time.sleep(0.2)
            wait_until(lambda: set(after) <= set(client.ids), seconds=20, what="events after the outage")
            client.before = before

        run_clients([client], outage)
    assert client.closes == []  # it stayed open
    assert_exactly(client.ids, client.before + after)


def test_a_transaction_held_open_delays_later_events_but_loses_none(backend, local_app, token):
    """A writer holds its transaction open for 2 s (it has an xid) with an
    event inside; events committed meanwhile wait behind it, then all come,
    in commit order, each once."""
    with gunicorn("wsgi:app", server_env(local_app), workers=workers_for(backend)) as (base, _):
        client = JsonClient(base.replace("http://", "ws://"), token)
        held_id, later = [], []

        def scenario():
            wait_until(lambda: client.connected, what="/ws live")
            with hold_a_write(local_app) as held:
                held_id.append(held)
                started = time.monotonic()
                posting = ThreadPoolExecutor(1).submit(post_concurrently, base, token, 8, "later", late_producer=False)
                if backend == "postgresql":  # SQLite's writers queue behind the lock instead
                    later.extend(posting.result(10))
                    time.sleep(max(0.0, 2.0 - (time.monotonic() - started)))
                    assert client.ids == []  # held back: not final yet
                else:
                    time.sleep(2.0)
            later.extend([] if later else posting.result(10))
            wait_until(lambda: len(client.ids) >= 9, seconds=30,
                       what=f"the held and later events ({len(client.ids)} of 9)")

        run_clients([client], scenario)
    assert_exactly(client.ids, held_id + later)
    assert client.ids[0] == held_id[0]  # its transaction is older: it comes first


class hold_a_write:
    """A transaction that inserts an event and stays open (2 s in the test)."""

    def __init__(self, app):
        self.app = app

    def __enter__(self) -> str:
        from activityweb.ids import uuid7

        self.id = uuid7()
        url = self.app.config["SQLALCHEMY_DATABASE_URI"]
        values = (self.id, "held", "held")
        if url.startswith("postgresql"):
            import psycopg

            self.conn = psycopg.connect(url.replace("+psycopg", ""))
            tenant = self.conn.execute("SELECT id FROM tenants WHERE slug = 'default'").fetchone()[0]
            self.conn.execute(
                "INSERT INTO activities (id, tenant_id, type, source, source_id, title, priority, tags, data,"
                " occurred_at, received_at, expires_at) VALUES (%s, %s, 'fault.test', 'api', %s, %s, 'normal',"
                " '[]', '{}', now(), now(), now() + interval '1 year')", (values[0], tenant, *values[1:]))
        else:
            import sqlite3

            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
            self.conn.execute("BEGIN IMMEDIATE")
            txid = self.conn.execute("UPDATE live_clock SET value = value + 1 RETURNING value").fetchone()[0]
            tenant = self.conn.execute("SELECT id FROM tenants WHERE slug = 'default'").fetchone()[0]
            self.conn.execute(
                "INSERT INTO activities (id, tenant_id, type, source, source_id, title, priority, tags, data,"
                " occurred_at, received_at, expires_at, txid) VALUES (?, ?, 'fault.test', 'api', ?, ?, 'normal',"
                " '[]', '{}', datetime('now'), datetime('now'), datetime('now', '+1 year'), ?)",
                (values[0], tenant, *values[1:], txid))
        return self.id

    def __exit__(self, *exc) -> None:
        self.conn.commit()
        self.conn.close()


def test_a_restart_closes_every_socket_with_1012_and_they_resume(backend, local_app, token):
    """gunicorn HUP under 100 sockets: each is closed with 1012 (service
    restart), reconnects to a new worker from its position, and misses nothing
    of what was posted before, during and after."""
    with gunicorn("wsgi:app", server_env(local_app), workers=workers_for(backend)) as (base, master):
        clients = [JsonClient(base.replace("http://", "ws://"), token) for _ in range(100)]
        posted: list[str] = []

        def scenario():
            wait_until(lambda: all(c.connected for c in clients), seconds=60, what="100 sockets live")
            posted.extend(post_concurrently(base, token, 16, "before", late_producer=False))
            old_workers = set(p.pid for p in psutil.Process(master.pid).children())
            os.kill(master.pid, signal.SIGHUP)
            wait_until(lambda: all(c.closes for c in clients), seconds=20, what="every socket closed")
            for round_ in range(2):  # during and after the restart
                posted.extend(post_concurrently(base, token, 8, f"around {round_}", late_producer=False,
                                                retry_for=30))
            wait_until(lambda: old_workers.isdisjoint(p.pid for p in psutil.Process(master.pid).children()),
                       seconds=20, what="the old workers gone")
            wait_until(lambda: all(len(c.ids) >= len(posted) for c in clients), seconds=30,
                       what=f"every event: {sorted(len(c.ids) for c in clients)[:5]} of {len(posted)}, "
                            f"closes {sorted(str(c.closes) for c in clients)[:3]} {clients[0].errors[-3:]}")

        run_clients(clients, scenario)
    for client in clients:
        assert client.closes[0] == 1012
        assert_exactly(client.ids, posted)


def test_a_resume_too_far_behind_answers_reset_and_loads_nothing(backend, local_app, token):
    """A position 50,000 events back: `reset` (/ws message, SSE event) with a
    fresh position, and the worker's memory stays flat across resumes."""
    with local_app.app_context():
        tenant = store.get_or_create_tenant("default").id
        stale = live.position_now()
        now = datetime.now(timezone.utc)
        store.bulk_load(tenant, ({"type": "bulk.loaded", "title": f"bulk {n}", "source": "api",
                                  "source_id": f"bulk-{n}", "priority": "normal", "tags": [], "data": {},
                                  "occurred_at": now, **dict.fromkeys(("summary", "actor_id", "actor_name",
                                  "entity_type", "entity_id", "entity_name", "status", "duration_ms", "project",
                                  "environment", "request_id", "conversation_id", "session_id", "sequence",
                                  "correlation_id"))} for n in range(50_000)))
        store.release()
    with gunicorn("wsgi:app", server_env(local_app), workers=1) as (base, master):
        worker = psutil.Process(master.pid).children()[0]

        async def resume() -> dict:
            async with connect(f"{base.replace('http://', 'ws://')}/ws?since={stale}", additional_headers=token,
                               open_timeout=10) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 10))

        def resume_once() -> dict:
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, resume()).result()

        first = resume_once()
        rss_before = worker.memory_info().rss
        answers = [resume_once() for _ in range(5)]
        rss_after = worker.memory_info().rss

        class Server:
            url = base

        sse = SSEReader(Server, token, last_event_id=stale)
        sse_events = sse.wait(1, seconds=10)
        sse.close()
    assert first["type"] == "reset" and all(a["type"] == "reset" for a in answers)
    assert live.Position.from_token(first["position"]).key > live.Position.from_token(stale).key
    assert sse_events[0]["event"] == "reset" and live.is_token(sse_events[0]["id"])
    # 50,000 events loaded would be well over 100 MB of Python objects.
    assert rss_after - rss_before < 20 * 2**20, f"worker grew by {(rss_after - rss_before) / 2**20:.1f} MB"

"""The fault tests' TCP proxy (tests/tcp_proxy.py), against real PostgreSQL,
a gevent gunicorn and a plain echo server: it passes bytes both ways, a cut
ends current and new connections on both sides, a hold passes nothing until
restored, and it leaves no thread or descriptor behind."""
from __future__ import annotations

import os
import socket
import threading
import time

import psycopg
import pytest
import requests
import sqlalchemy as sa

from conftest import make_app, teardown_app
from tcp_proxy import TcpProxy


def wait_for(condition, seconds: float = 10.0, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
    return value


def outcome_of(fn, *args, seconds: float = 10.0):
    """What `fn(*args)` returns or raises, failing the test if it hangs (a
    proxy that passes nothing would leave a client waiting for ever)."""
    result = {}

    def run():
        try:
            result["value"] = fn(*args)
        except Exception as exc:
            result["value"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert "value" in result, f"{getattr(fn, '__name__', fn)} still waiting after {seconds} s"
    return result["value"]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


class Leaks:
    """Threads and descriptors open now, to compare with later."""

    def __init__(self):
        self.threads = set(threading.enumerate())
        self.fds = open_fds()

    def check(self) -> None:
        wait_for(lambda: set(threading.enumerate()) <= self.threads, what="the proxy's threads to end")
        # A descriptor opened and closed meanwhile may come back with another
        # number only if something else still holds one: compare the sets.
        assert open_fds() == self.fds, f"descriptors left open: {sorted(open_fds() - self.fds)}"


@pytest.fixture
def no_leaks():
    leaks = Leaks()
    yield
    leaks.check()


class EchoServer:
    """Echoes every byte back; closes its side after the client's FIN."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.open += 1
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _echo(self, conn):
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        with self.lock:
            self.open -= 1

    def close(self):
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def echo(no_leaks):
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo):
    proxy = TcpProxy("127.0.0.1", echo.port)
    yield proxy
    proxy.close()


def connect(proxy) -> socket.socket:
    return socket.create_connection(("127.0.0.1", proxy.port), timeout=10)


def receive(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def is_ended(sock: socket.socket) -> bool:
    """The peer reset or closed the connection."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def connection_is_refused(proxy) -> bool:
    """The kernel accepts a connection and the proxy resets it at once: the
    reset reaches the client during connect() or just after."""
    try:
        sock = connect(proxy)
    except ConnectionResetError:
        return True
    with sock:
        return is_ended(sock)


# ------------------------------------------------------------ echo server


def test_bytes_pass_both_ways_with_back_pressure(proxy):
    payload = os.urandom(3 * 1024 * 1024)  # many times the proxy's buffer per direction
    with connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        assert receive(sock, len(payload)) == payload
        sender.join()


def test_connections_are_independent(proxy, echo):
    sockets = [connect(proxy) for _ in range(10)]
    for n, sock in enumerate(sockets):
        sock.sendall(f"hello {n}".encode())
    assert [receive(sock, len(f"hello {n}")) for n, sock in enumerate(sockets)] == \
        [f"hello {n}".encode() for n in range(10)]
    assert echo.accepted == 10
    for sock in sockets:
        sock.close()
    wait_for(lambda: proxy.stats()["active"] == 0, what="every connection to end")


def test_a_half_close_passes_through_and_ends_the_connection(proxy, echo):
    with connect(proxy) as sock:
        sock.sendall(b"last words")
        sock.shutdown(socket.SHUT_WR)
        assert receive(sock, 100) == b"last words"  # everything, then the server's FIN
    wait_for(lambda: echo.open == 0 and proxy.stats()["active"] == 0, what="both sides to close")


def test_cut_ends_current_connections_on_both_sides_and_refuses_new_ones(proxy, echo):
    sockets = [connect(proxy) for _ in range(3)]
    for sock in sockets:
        sock.sendall(b"ping")
        assert receive(sock, 4) == b"ping"
    assert proxy.cut() == 3
    assert all(is_ended(sock) for sock in sockets)
    wait_for(lambda: echo.open == 0, what="the server side of every connection to close")
    for sock in sockets:
        sock.close()

    assert connection_is_refused(proxy)
    assert echo.accepted == 3, "a connection made during the cut reached the server"

    proxy.restore()
    with connect(proxy) as after:
        after.sendall(b"back")
        assert receive(after, 4) == b"back"
    assert echo.accepted == 4


def test_hold_passes_nothing_until_restored(proxy, echo):
    with connect(proxy) as current:
        current.sendall(b"before")
        assert receive(current, 6) == b"before"
        proxy.hold()
        forwarded = proxy.stats()["forwarded"]
        current.sendall(b"held")
        with connect(proxy) as new:
            new.sendall(b"new")
            wait_for(lambda: proxy.stats()["accepted"] == 2, what="the proxy to accept the new connection")
            # The proxy's sockets are out of its selector while held: nothing
            # was read from either connection, and the new one was not passed on.
            assert proxy.stats()["forwarded"] == forwarded
            assert echo.accepted == 1
            proxy.restore()
            assert receive(current, 4) == b"held"
            assert receive(new, 3) == b"new"
            assert echo.accepted == 2


def test_a_target_that_refuses_ends_the_client_connection(no_leaks):
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]  # bound, never listening: connections are refused
        with TcpProxy("127.0.0.1", port) as proxy:
            try:
                sock = connect(proxy)
            except ConnectionResetError:  # on a busy machine the proxy's reset can come before connect() returns
                return
            with sock:
                assert is_ended(sock)


def test_close_ends_every_connection_and_the_proxy(echo):
    proxy = TcpProxy("127.0.0.1", echo.port)
    passing = connect(proxy)
    passing.sendall(b"x")
    assert receive(passing, 1) == b"x"
    proxy.hold()
    parked = connect(proxy)
    wait_for(lambda: proxy.stats()["accepted"] == 2, what="the parked connection")
    proxy.close()
    proxy.close()  # closing twice is fine
    assert is_ended(passing) and is_ended(parked)
    passing.close()
    parked.close()
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)
    with pytest.raises(RuntimeError):
        proxy.cut()


# -------------------------------------------------------------- PostgreSQL


def test_psycopg_through_the_proxy_fails_on_a_cut_and_works_after_restore(pg_url):
    leaks = Leaks()
    direct = sa.engine.make_url(pg_url)
    proxy = TcpProxy(direct.host, direct.port or 5432)
    through = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)

    conn = psycopg.connect(through, autocommit=True, connect_timeout=5)
    backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert proxy.stats()["active"] == 1
    assert proxy.cut() == 1
    assert isinstance(outcome_of(conn.execute, "SELECT 1"), psycopg.OperationalError)
    conn.close()
    with psycopg.connect(pg_url, autocommit=True) as admin:  # the server's side went too
        wait_for(lambda: not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]).fetchone(),
                 what="the cut connection's backend to end")

    assert isinstance(outcome_of(psycopg.connect, through), psycopg.OperationalError)

    proxy.restore()
    with psycopg.connect(through, connect_timeout=5) as again:
        assert again.execute("SELECT current_database()").fetchone() == (direct.database,)

    proxy.close()
    leaks.check()


def test_psycopg_connecting_during_a_hold_waits_then_connects(pg_url):
    direct = sa.engine.make_url(pg_url)
    with TcpProxy(direct.host, direct.port or 5432) as proxy:
        through = direct.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        proxy.hold()
        outcome = {}

        def connect_and_ask():
            try:
                with psycopg.connect(through, connect_timeout=10) as conn:
                    outcome["value"] = conn.execute("SELECT 41 + 1").fetchone()[0]
            except Exception as exc:
                outcome["value"] = exc

        thread = threading.Thread(target=connect_and_ask)
        thread.start()
        wait_for(lambda: proxy.stats()["accepted"] == 1, what="the proxy to accept the connection")
        assert proxy.stats()["forwarded"] == 0 and "value" not in outcome  # connected, and waiting
        proxy.restore()
        thread.join(15)
        assert outcome.get("value") == 42


def reaches_database(readyz: dict) -> bool:
    """What a /readyz body says of the database itself. Its migration check
    is left aside: another test may have marked the session's test database
    behind, and that is not what a cut changes."""
    return "database not ready" not in readyz["status"]


def test_pg_proxy_gives_an_app_whose_database_goes_through_it(pg_proxy, tmp_path, request):
    proxy, url = pg_proxy
    app = make_app("postgresql", tmp_path, request, SQLALCHEMY_DATABASE_URI=url)
    try:
        client = app.test_client()
        assert reaches_database(client.get("/readyz").get_json())
        assert proxy.stats()["active"] >= 1, "the app's connection does not go through the proxy"
        proxy.cut()
        during = outcome_of(client.get, "/readyz")
        assert during.status_code == 503 and not reaches_database(during.get_json())
        proxy.restore()
        wait_for(lambda: reaches_database(client.get("/readyz").get_json()), what="/readyz to reach the database again")
    finally:
        teardown_app(app)


@pytest.mark.server
def test_a_gevent_gunicorn_sees_the_cut_and_the_restore(pg_proxy):
    from bench.common import gunicorn

    proxy, url = pg_proxy
    env = dict(os.environ, DATABASE_URL=url.replace("+psycopg", ""), SECRET_KEY="test", LOG_LEVEL="warning")
    env.pop("ACTIVITYWEB_LOCAL_MODE", None)

    def ready():
        return requests.get(base + "/readyz", headers={"Connection": "close"}, timeout=5).json()

    with gunicorn("wsgi:app", env, workers=2) as (base, _):
        assert reaches_database(ready())
        assert proxy.stats()["active"] >= 1
        proxy.cut()
        wait_for(lambda: not reaches_database(ready()), what="/readyz to lose the database")
        assert requests.get(base + "/readyz", timeout=5).status_code == 503
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        proxy.restore()
        # Both workers recover: several answers in a row reach the database.
        wait_for(lambda: all(reaches_database(ready()) for _ in range(6)), what="every worker to reach the database")

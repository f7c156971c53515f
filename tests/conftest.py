"""Fixtures around `create_app`, on real SQLite and real PostgreSQL.

Every test that takes `app` runs on both databases. PostgreSQL tests get a
database of their own for the session (so parallel runs and developers'
data are never touched); in CI a missing PostgreSQL fails them, elsewhere
it skips them.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING, NamedTuple

import pytest
import sqlalchemy as sa

from activityweb.app import create_app
from activityweb.extensions import db

if TYPE_CHECKING:
    from tcp_proxy import TcpProxy

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BASE_PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
TEST_KEY_PREFIX = "activityweb-tests"
TABLES = ("activities", "activity_keys", "api_tokens", "integration_secrets", "memberships", "users", "tenants")


def _unavailable(what: str, why: str):
    if IN_CI:
        pytest.fail(f"{what} is required in CI and is unavailable: {why}")
    pytest.skip(f"{what} unavailable: {why}")


@pytest.fixture(scope="session")
def pg_url():
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    import psycopg

    base = sa.engine.make_url(BASE_PG_URL)
    name = f"aw_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin_dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL", str(exc).strip())
    url = base.set(database=name).render_as_string(hide_password=False)
    yield url
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PgProxy(NamedTuple):
    proxy: "TcpProxy"
    url: str


@pytest.fixture
def pg_proxy(pg_migrated):
    """A TcpProxy (tests/tcp_proxy.py) in front of the test PostgreSQL server,
    and the SQLAlchemy URL of the test database through it: build an app on
    `url` (`make_app(..., SQLALCHEMY_DATABASE_URI=url)`, or DATABASE_URL for a
    gunicorn), then `proxy.cut()` / `proxy.restore()` to take the database away."""
    from tcp_proxy import TcpProxy

    direct = sa.engine.make_url(pg_migrated)
    proxy = TcpProxy(direct.host or "127.0.0.1", direct.port or 5432)
    url = direct.set(drivername="postgresql+psycopg", host="127.0.0.1", port=proxy.port)
    yield PgProxy(proxy, url.render_as_string(hide_password=False))
    proxy.close()


def migrate(app) -> None:
    from flask_migrate import upgrade

    with app.app_context():
        upgrade()


@pytest.fixture(scope="session")
def pg_migrated(pg_url):
    app = create_app({"SQLALCHEMY_DATABASE_URI": pg_url.replace("postgresql://", "postgresql+psycopg://", 1)})
    migrate(app)
    with app.app_context():
        db.engine.dispose()
    return pg_url


def config_for(backend: str, tmp_path, request) -> dict:
    # Rate-limit counts go under a prefix of the tests' own (a Redis server
    # may hold others'); the limiter keeps the first app's prefix.
    config = {"TESTING": True, "LOCAL_MODE": False, "SECRET_KEY": "test-secret", "RATELIMIT_KEY_PREFIX": TEST_KEY_PREFIX}
    if backend == "sqlite":
        config["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        url = request.getfixturevalue("pg_migrated")
        config["SQLALCHEMY_DATABASE_URI"] = url.replace("postgresql://", "postgresql+psycopg://", 1)
    return config


def make_app(backend: str, tmp_path, request, **overrides):
    config = config_for(backend, tmp_path, request)
    config.update(overrides)
    app = create_app(config)
    if backend == "sqlite":
        migrate(app)
    else:
        with app.app_context():
            db.session.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
            db.session.commit()
    return app


def teardown_app(app) -> None:
    from activityweb import live

    live.stop(app)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


@pytest.fixture
def app(backend, tmp_path, request):
    app = make_app(backend, tmp_path, request)
    yield app
    teardown_app(app)


@pytest.fixture
def sqlite_app(tmp_path, request):
    app = make_app("sqlite", tmp_path, request)
    yield app
    teardown_app(app)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def make_token(app):
    """`make_token("acme", "ingest,read")` -> Authorization headers for a new token."""
    from activityweb import auth, store

    def make(tenant: str = "acme", scopes: str = "ingest,read") -> dict:
        with app.app_context():
            target = store.get_or_create_tenant(tenant)
            _, secret = auth.create_token(target, "test", scopes.split(","))
        return {"Authorization": f"Bearer {secret}"}

    return make


@pytest.fixture
def auth_headers(make_token):
    return make_token("acme", "ingest,read")


def event(**fields) -> dict:
    """A valid event with sensible defaults; override any field."""
    body = {"type": "test.happened", "title": "Something happened"}
    body.update(fields)
    return body


# ------------------------------------------------------------ real servers


@pytest.fixture
def local_app(backend, tmp_path, request):
    """The app in local mode (the dashboard's no-login demo), on both databases."""
    app = make_app(backend, tmp_path, request, LOCAL_MODE=True)
    yield app
    teardown_app(app)


@pytest.fixture
def sqlite_local_app(tmp_path, request):
    app = make_app("sqlite", tmp_path, request, LOCAL_MODE=True)
    yield app
    teardown_app(app)


class ThreadServer:
    """The test's own app served by werkzeug in a thread: WebSockets work,
    and the test can reach into the same app (its hub, its database)."""

    def __init__(self, app, port: int = 0):
        self.app = app
        self._start(port)

    def _start(self, port: int):
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", port, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.ws_url = self.url.replace("http://", "ws://")
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def restart(self, while_down=None):
        """Stop serving (sockets close as on a deploy), run `while_down`, serve again on the same port."""
        port = self.server.server_port
        self.stop()
        self.server.server_close()
        if while_down:
            while_down()
        self.reopen()
        self._start(port)

    def close_sockets(self):
        """Make every live socket close with 1012, as on a server restart."""
        from activityweb import live

        live.shutdown(self.app)

    def reopen(self):
        from activityweb import live

        live.reopen(self.app)

    def stop(self):
        self.close_sockets()
        self.server.shutdown()


@pytest.fixture
def serve():
    """`serve(app)` -> a running ThreadServer, stopped after the test."""
    servers = []

    def start(app):
        server = ThreadServer(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# ------------------------------------------------------------------ browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium driven by Playwright (no browser download)."""
    if not os.path.exists(CHROMIUM):
        _unavailable("chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page that fails the test on any dialog (a script that ran)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    dialogs, errors = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(5000)
    yield page
    context.close()
    assert not dialogs, f"a script ran in the page: {dialogs}"
    assert not errors, f"page errors: {errors}"


# ------------------------------------------------------------------- people


PASSWORD = "correct horse battery"


@pytest.fixture
def make_user(app):
    """`make_user("a@x.io", "acme", "viewer")` -> the user's email (password PASSWORD)."""
    from activityweb import auth, store

    def make(email: str = "ada@example.com", tenant: str = "acme", role: str = "viewer") -> str:
        with app.app_context():
            auth.create_user(email, PASSWORD, store.get_or_create_tenant(tenant), role)
        return email

    return make


def csrf_from(html: str) -> str:
    import re

    return re.search(r'name="csrf[-_]token" (?:value|content)="([^"]+)"', html).group(1)


def sign_in(client, email: str, password: str = PASSWORD):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


# -------------------------------------------------------------- SSE client


class SSEReader:
    """A minimal EventSource over a plain socket (HTTP/1.0, so no chunking),
    which the test can hang up on at once."""

    def __init__(self, server, token, query="", last_event_id=None):
        host, port = server.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        lines = [f"GET /api/v1/activities/stream{query} HTTP/1.0", f"Host: {host}:{port}", "Accept: text/event-stream"]
        lines += [f"{k}: {v}" for k, v in token.items()]
        if last_event_id:
            lines.append(f"Last-Event-ID: {last_event_id}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.file = self.sock.makefile("rb")
        self.status = int(self.file.readline().split()[1])
        self.headers = {}
        while (line := self.file.readline().decode().strip()):
            key, _, value = line.partition(":")
            self.headers[key.strip().lower()] = value.strip()
        self.events, self.comments = [], 0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        current = {}
        try:
            for raw in self.file:
                line = raw.decode().rstrip("\r\n")
                if line == "":
                    if "data" in current:
                        self.events.append(current)
                    current = {}
                elif line.startswith(":"):
                    self.comments += 1
                else:
                    key, _, value = line.partition(": ")
                    current[key] = value
        except OSError:
            pass

    def wait(self, count, seconds=5.0):
        deadline = time.monotonic() + seconds
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.events

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@contextlib.contextmanager
def unmigrated_app(backend: str, tmp_path, request, name: str):
    """An app on an empty database of its own (PostgreSQL: `<session db>_<name>`,
    dropped afterwards), for tests that migrate step by step."""
    config = config_for("sqlite", tmp_path, request)
    admin = database = None
    if backend == "postgresql":
        import psycopg

        url = sa.engine.make_url(request.getfixturevalue("pg_url"))
        database = f"{url.database}_{name}"
        admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}"')
            conn.execute(f'CREATE DATABASE "{database}"')
        config["SQLALCHEMY_DATABASE_URI"] = url.set(drivername="postgresql+psycopg", database=database
                                                    ).render_as_string(hide_password=False)
    try:
        yield create_app(config)
    finally:
        if admin:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

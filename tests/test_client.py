"""The producers' client (clients/python, the activityweb_client package) against a real server that is down, then up."""
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from activityweb import store
from activityweb.filters import ActivityFilter
from activityweb_client import Client

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "python" / "activityweb_client" / "__init__.py"

pytestmark = pytest.mark.server


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """The test's app served by werkzeug in a thread, on a port chosen
    beforehand so producers can be pointed at it while it is still down."""

    def __init__(self, app, port: int):
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = None

    def start(self) -> "Server":
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def server(app):
    server = Server(app, free_port())
    yield server
    server.stop()


@pytest.fixture
def token(make_token) -> str:
    return make_token("acme", "ingest,read")["Authorization"].removeprefix("Bearer ")


@pytest.fixture
def clients():
    made = []

    def make(url, token, spool_dir, **options) -> Client:
        made.append(Client(url, token, spool_dir=spool_dir, max_backoff=0.2, **options))
        return made[-1]

    yield make
    for client in made:
        client.close(timeout=1)


def stored(app, **filters) -> list[dict]:
    with app.app_context():
        return store.list_activities(1, ActivityFilter(**{k: (v,) for k, v in filters.items()}), limit=200).items


def test_it_imports_without_flask_or_the_app(tmp_path):
    """A producer carries this one file; nothing of the server may come with it."""
    script = f"""
import importlib.abc, importlib.util, sys
class NoServer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("flask", "werkzeug", "sqlalchemy", "pydantic", "activityweb"):
            raise ImportError(name + " must not be imported")
sys.meta_path.insert(0, NoServer())
spec = importlib.util.spec_from_file_location("activityweb_client", {str(CLIENT)!r})
client = importlib.util.module_from_spec(spec)
spec.loader.exec_module(client)
client.configure("http://127.0.0.1:9", spool_dir={str(tmp_path)!r}, max_backoff=0.1)
client.track("project.created", "Project 'billing-api' created", project="billing-api")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    # At exit, with nothing listening, the event went to the spool.
    assert json.loads((tmp_path / "client.jsonl").read_text())["type"] == "project.created"


def test_the_server_down_neither_raises_nor_blocks_the_caller(server, token, tmp_path, clients):
    client = clients(server.url, token, tmp_path)
    began = time.perf_counter()
    for i in range(2000):
        client.track("deployment", f"Deploy {i}", project="billing-api", environment="production")
    client.track("odd.values", "Odd values", data={"when": datetime.now(timezone.utc), "set": {1}, "obj": object()})
    client.track(None, None)  # invalid: the server will refuse it, the caller never hears
    elapsed = time.perf_counter() - began
    assert elapsed < 1.0, f"2,002 calls took {elapsed:.2f}s"
    assert client.dropped == 0
    client.track("metric.recorded", "Not JSON", data={"ratio": float("nan")})
    assert client.dropped == 1  # refused at once: no JSON store could take it


def test_events_sent_while_down_arrive_once_it_is_up(app, server, token, tmp_path, clients):
    client = clients(server.url, token, tmp_path)
    client.track("project.created", "Project 'billing-api' created", project="billing-api")
    client.track("database.created", "Database billing_api_db created", project="billing-api",
                 data={"tables": ["users", "posts", "comments"]})
    time.sleep(0.5)  # it has tried, failed and is backing off
    assert not client.flush(timeout=0.1)
    server.start()
    client.track("endpoints.added", "Added 2 endpoints to billing-api", project="billing-api")
    assert client.flush(timeout=10)
    assert sorted(e["type"] for e in stored(app)) == ["database.created", "endpoints.added", "project.created"]
    assert stored(app, type="database.created")[0]["data"] == {"tables": ["users", "posts", "comments"]}


def test_close_spools_what_it_could_not_send_and_the_next_client_delivers_it(app, server, token, tmp_path, clients):
    down = clients(server.url, token, tmp_path)
    for i in range(5):
        down.track("github.push", f"Pushed {i + 1} commits to acme/billing-api:main", project="billing-api")
    began = time.monotonic()
    down.close(timeout=2)
    assert time.monotonic() - began < 2.5
    lines = (tmp_path / "client.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["source_id"] for line in lines)

    server.start()
    up = clients(server.url, token, tmp_path)
    up.track("deployment", "Deployed billing-api to production", project="billing-api")
    assert up.flush(timeout=10)
    deadline = time.monotonic() + 5
    while len(stored(app)) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(stored(app, type="github.push")) == 5
    assert (tmp_path / "client.jsonl").read_text() == ""
    # A spool delivered twice (a crash before it was cleared) is stored once.
    (tmp_path / "client.jsonl").write_text("\n".join(lines) + "\n")
    again = clients(server.url, token, tmp_path)
    again.track("deployment", "Deployed web-console to staging", project="web-console")
    assert again.flush(timeout=10)
    time.sleep(0.3)
    assert len(stored(app)) == 7


def test_a_refused_event_does_not_hold_back_the_others(app, server, token, tmp_path, clients):
    server.start()
    client = clients(server.url, token, tmp_path)
    client.track("project.created", "Project 'web-console' created")
    client.track("Not A Type", "refused: the type is not a dotted lower-case verb")
    client.track("database.created", "Database web_console_db created", tags=["database"])
    assert client.flush(timeout=10)
    assert sorted(e["type"] for e in stored(app)) == ["database.created", "project.created"]


def test_each_event_has_a_source_id_and_the_time_it_was_tracked(app, server, token, tmp_path, clients):
    client = clients(server.url, token, tmp_path)
    client.track("deployment", "Deployed", source_id="deploy-42")
    client.track("deployment", "Deployed again")
    time.sleep(0.3)
    server.start()
    assert client.flush(timeout=10)
    events = {e["source_id"]: e for e in stored(app)}
    assert "deploy-42" in events and len(events) == 2
    # occurred_at is when track() ran, not when the batch finally got through.
    assert all(e["received_at"] > e["occurred_at"] for e in events.values())

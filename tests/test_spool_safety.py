"""The client's and the hook's spool on disk: no symlink followed, no
directory others can write to, no secret written, and a server that says
"later" (503, 429) keeps the event rather than dropping it."""
from __future__ import annotations

import http.server
import json
import os
import re
import threading

import pytest

import activityweb_client as client
from activityweb.integrations import redact
from test_hook import run_hook, spooled
from test_tcp_proxy import wait_for

SECRET = "sk-ant-api03" + "Q" * 30


def test_the_client_masks_with_the_servers_patterns():
    assert client.REDACT_PATTERNS == redact.DEFAULT_PATTERNS
    assert client.REDACT_SECRET_KEY == redact.SECRET_KEY.pattern
    assert client.REDACT_MASK == redact.MASK


def test_secrets_are_masked_before_they_are_spooled(tmp_path):
    spool = client.Spool(tmp_path / "spool" / "client.jsonl")
    spool.append([{"type": "x.y", "title": f"ran with {SECRET}", "data": {"password": "hunter2", "env": {
        "PGPASSWORD": "PGPASSWORD='p@ss word'"}}, "source_id": "abc123"}])
    text = (tmp_path / "spool" / "client.jsonl").read_text()
    assert SECRET not in text and "hunter2" not in text and "p@ss word" not in text
    [item] = [item for item, _ in spool.read()]
    assert item["title"] == "ran with [REDACTED]" and item["data"]["password"] == "[REDACTED]"
    assert item["source_id"] == "abc123"


def test_a_symlink_planted_for_the_rewrite_is_not_followed(tmp_path):
    directory = tmp_path / "spool"
    spool = client.Spool(directory / "client.jsonl")
    spool.append([{"n": 1}, {"n": 2}])
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (directory / "client.tmp").symlink_to(victim)
    first = spool.read(max_items=1)
    spool.discard(first[0][1])
    assert victim.read_text() == "precious"
    assert [item for item, _ in spool.read()] == [{"n": 2}]


def test_a_symlink_planted_as_the_spool_is_not_followed(tmp_path):
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (directory / "client.jsonl").symlink_to(victim)
    with pytest.raises(OSError):
        client.Spool(directory / "client.jsonl").append([{"n": 1}])
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_a_spool_directory_others_can_write_to_is_refused(tmp_path, mode):
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, mode)
    with pytest.raises(client.UnsafeSpool, match="writable by others"):
        client.Spool(directory / "client.jsonl").append([{"n": 1}])
    assert not (directory / "client.jsonl").exists()


class Refusing(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the status the server sets: "try again later"."""

    status = 503

    def do_POST(self):
        self.server.posts += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.server.status)
        self.send_header("Retry-After", "2")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def later():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    httpd.posts = 0
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("status", [503, 429])
def test_the_hook_spools_on_try_again_later_and_masks_what_it_spools(later, tmp_path, status):
    later.status = status
    url = f"http://127.0.0.1:{later.server_address[1]}"
    payload = {"hook_event_name": "UserPromptSubmit", "session_id": "s-later", "prompt": f"use {SECRET} please"}
    result, _ = run_hook(payload, url=url, token="aw_x", spool=tmp_path / "spool")
    assert result.returncode == 0
    [kept] = spooled(tmp_path / "spool")
    assert kept["prompt"] == "use [REDACTED] please" and re.fullmatch(r"[0-9a-f]{32}", kept["activityweb_event_id"])


@pytest.mark.parametrize("status", [503, 429])
def test_the_client_keeps_events_while_the_server_says_later(later, tmp_path, status):
    later.status = status
    sender = client.Client(f"http://127.0.0.1:{later.server_address[1]}", "aw_x", spool_dir=tmp_path / "spool")
    sender.track("x.y", "kept", data={"api_key": "abcd"})
    wait_for(lambda: later.posts >= 2, what="the client to try, be told later, and try again")
    assert sender._outstanding == 1  # still held, not dropped
    sender.close(timeout=2)
    lines = (tmp_path / "spool" / "client.jsonl").read_text().splitlines()
    assert [json.loads(line)["title"] for line in lines] == ["kept"]
    assert sender.dropped == 0 and "abcd" not in lines[0]

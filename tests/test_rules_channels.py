"""Slack and email channels with real receivers: a readable message that links back to the filtered feed."""
from __future__ import annotations

import email
import email.policy
import socket
import threading
from datetime import timedelta

import pytest

from activityweb import store
from activityweb.rules.channels import new_secret
from activityweb.rules.conditions import parse_rule
from activityweb.rules.worker import Worker
from activityweb.store import outbox
from activityweb.store import rules as store_rules
from conftest import event, make_app, teardown_app
from receiver import Receiver
from test_rules import post, utc_now


class SmtpReceiver:
    """Just enough SMTP to accept a message: records the DATA it was given."""

    def __init__(self):
        self.messages: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as stream:
                stream.write(b"220 test ESMTP\r\n")
                stream.flush()
                data = None
                for raw in stream:
                    line = raw.decode().rstrip("\r\n")
                    if data is not None:
                        if line == ".":
                            self.messages.append("\n".join(data))
                            data = None
                            stream.write(b"250 queued\r\n")
                        else:
                            data.append(line)
                        stream.flush()
                        continue
                    verb = line.split(" ")[0].upper()
                    if verb == "DATA":
                        data = []
                        stream.write(b"354 go on\r\n")
                    elif verb == "QUIT":
                        stream.write(b"221 bye\r\n")
                        stream.flush()
                        break
                    else:
                        stream.write(b"250 ok\r\n")
                    stream.flush()

    def close(self):
        self.listener.close()


@pytest.fixture
def channel_app(backend, tmp_path, request):
    smtp = SmtpReceiver()
    app = make_app(backend, tmp_path, request, RULES_EGRESS_ALLOW=["127.0.0.1"], SMTP_HOST="127.0.0.1",
                   SMTP_PORT=smtp.port, SMTP_FROM="alerts@example.com", PUBLIC_URL="https://aw.example.com")
    app.smtp = smtp
    yield app
    teardown_app(app)
    smtp.close()


def test_slack_gets_a_readable_message_linking_to_the_filtered_feed(channel_app):
    receiver = Receiver()
    try:
        with channel_app.app_context():
            tenant = store.get_or_create_tenant("acme").id
            channel = store_rules.create_channel(tenant, "ops", "slack", receiver.url, None).id
            store_rules.save_rule(tenant, parse_rule({"name": "Deploys failing", "condition": "every",
                                                      "filter": "type=deployment.failed&project=billing-api",
                                                      "channel_id": channel}))
        post(channel_app, event(type="deployment.failed", project="billing-api", title="billing-api <prod> failed"))
        Worker(channel_app).deliver_due()
        [message] = receiver.payloads()
    finally:
        receiver.stop()
    assert message["text"] == "Deploys failing fired: a matching event"
    blocks = [b.get("text", {}).get("text", "") for b in message["blocks"]] + \
             [e["text"] for b in message["blocks"] for e in b.get("elements", [])]
    assert "• billing-api &lt;prod&gt; failed" in blocks  # Slack's escaping: no mention or link injection
    assert any("<https://aw.example.com/?type=deployment.failed&project=billing-api|Open the feed>" in b for b in blocks)


def test_email_is_offered_with_an_smtp_server_and_delivers(channel_app):
    with channel_app.app_context():
        tenant = store.get_or_create_tenant("acme").id
        channel = store_rules.create_channel(tenant, "mail", "email", "oncall@example.com", None).id
        store_rules.save_rule(tenant, parse_rule({"name": "Quiet agent", "condition": "heartbeat",
                                                  "window_seconds": 60, "filter": "source=claude_code",
                                                  "channel_id": channel}))
    worker = Worker(channel_app)
    later = utc_now() + timedelta(seconds=61)
    assert worker.run_schedules(later) == 1
    assert worker.deliver_due(later) == 1
    [raw] = channel_app.smtp.messages
    mail = email.message_from_string(raw, policy=email.policy.default)
    assert mail["Subject"].startswith("Quiet agent fired: no matching event for 1 minute")
    assert mail["To"] == "oncall@example.com"
    assert "https://aw.example.com/?source=claude_code" in mail.get_content()
    with channel_app.app_context():
        [sent] = outbox.recent_firings(tenant)
        assert sent["status"] == "delivered"


def test_a_worker_that_dies_mid_send_leaves_the_message_to_the_next(channel_app):
    receiver = Receiver()
    try:
        with channel_app.app_context():
            tenant = store.get_or_create_tenant("acme").id
            channel = store_rules.create_channel(tenant, "hook", "webhook", receiver.url, new_secret()).id
            store_rules.save_rule(tenant, parse_rule({"name": "all", "condition": "every", "channel_id": channel}))
        post(channel_app, event())
        with channel_app.app_context():
            [claimed] = outbox.claim_due()  # this worker "dies" before sending
            assert outbox.claim_due() == []  # locked: no one else sends it meanwhile
            assert outbox.claim_due(utc_now() + timedelta(seconds=outbox.LOCK_SECONDS + 1))[0].id == claimed.id
    finally:
        receiver.stop()


def test_flask_rules_worker_delivers_as_its_own_process(tmp_path, request):
    """The worker as operators run it: `flask rules worker`, a process of its own on PostgreSQL."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    app = make_app("postgresql", tmp_path, request)
    receiver = Receiver()
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    env = dict(os.environ, DATABASE_URL=url.replace("postgresql+psycopg://", "postgresql://"), FLASK_APP="wsgi",
               SECRET_KEY="test", ACTIVITYWEB_RULES_EGRESS_ALLOW="127.0.0.1")
    env.pop("ACTIVITYWEB_LOCAL_MODE", None)
    worker = subprocess.Popen([sys.executable, "-m", "flask", "rules", "worker", "--poll", "0.1"],
                              cwd=Path(__file__).resolve().parent.parent, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with app.app_context():
            tenant = store.get_or_create_tenant("acme").id
            channel = store_rules.create_channel(tenant, "hook", "webhook", receiver.url, new_secret()).id
            store_rules.save_rule(tenant, parse_rule({"name": "all", "condition": "every", "channel_id": channel}))
        receiver.answers.append((503, {"Retry-After": "1"}))
        post(app, event(title="from another process"))
        first, second = receiver.wait(2, seconds=20)
        assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
        assert second["at"] - first["at"] >= 0.9
    finally:
        worker.terminate()
        worker.wait(10)
        receiver.stop()
        teardown_app(app)

"""Rules fire exactly when their condition holds, and the worker delivers every firing.

Real parts: SQLite and PostgreSQL, a real HTTP receiver started by the test,
the worker running for real (retries, Retry-After, a receiver that is down).
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks.webhooks import Webhook

from activityweb import store
from activityweb.rules.conditions import parse_rule
from activityweb.rules.worker import Worker
from activityweb.store import firing, outbox
from activityweb.store import rules as store_rules
from activityweb import auth
from conftest import PASSWORD, event, make_app, sign_in, teardown_app
from receiver import Receiver


@pytest.fixture
def rules_app(backend, tmp_path, request):
    app = make_app(backend, tmp_path, request, RULES_EGRESS_ALLOW=["127.0.0.1"], RULES_RETRY_BASE=0.2,
                   RULES_RETRY_CAP=1.0)
    yield app
    teardown_app(app)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def tenant(rules_app):
    with rules_app.app_context():
        return store.get_or_create_tenant("acme").id


def utc_now():
    return datetime.now(timezone.utc)


def post(app, *events):
    with app.app_context():
        return store.add_activities(store.find_tenant("acme").id, [_complete(e) for e in events])


def _complete(body: dict) -> dict:
    import json

    from activityweb.schemas import parse_events

    return parse_events(json.dumps(body).encode(), 1)[0][0]


def add_channel(app, tenant_id, url, kind="webhook"):
    from activityweb.rules.channels import new_secret

    with app.app_context():
        return store_rules.create_channel(tenant_id, f"{kind}-1", kind, url, new_secret() if kind == "webhook" else None).id


def add_rule(app, tenant_id, **fields):
    body = {"name": "r", "condition": "every", **fields}
    with app.app_context():
        return store_rules.save_rule(tenant_id, parse_rule(body)).id


def firings(app, tenant_id, rule_id=None):
    with app.app_context():
        return outbox.recent_firings(tenant_id, rule_id=rule_id, limit=1000)


def test_every_match_fires_and_the_cool_down_holds(rules_app, tenant):
    every = add_rule(rules_app, tenant, name="each deploy", filter="type=deployment.*")
    cooled = add_rule(rules_app, tenant, name="one per incident", filter="type=deployment.*", cooldown_seconds=600)
    post(rules_app, event(type="deployment.succeeded"), event(type="deployment.failed"), event(type="other.thing"))
    post(rules_app, event(type="deployment.failed"))
    assert len(firings(rules_app, tenant, every)) == 3
    assert len(firings(rules_app, tenant, cooled)) == 1  # the rest fell in its cool-down
    assert all(m["status"] == "logged" for m in firings(rules_app, tenant))  # no channel: recorded only
    # Settled firings are forgotten after RULES_KEEP_DAYS.
    Worker(rules_app).run_schedules(utc_now() + timedelta(days=29))
    assert len(firings(rules_app, tenant)) == 4
    Worker(rules_app).run_schedules(utc_now() + timedelta(days=31))
    assert firings(rules_app, tenant) == []


def test_count_in_a_sliding_window_counts_only_inside_the_window(rules_app, tenant):
    rule = add_rule(rules_app, tenant, condition="count", threshold=3, window_seconds=600, filter="status=failed")
    now = utc_now()
    post(rules_app, event(status="failed", occurred_at=(now - timedelta(seconds=610)).isoformat()),
         event(status="failed", occurred_at=(now - timedelta(seconds=605)).isoformat()))
    post(rules_app, event(status="failed", occurred_at=(now - timedelta(seconds=590)).isoformat()))
    post(rules_app, event(status="success"))
    # Two inside the window (the others fell out just before its edge), with this one.
    post(rules_app, event(status="failed"))
    assert firings(rules_app, tenant, rule) == []
    post(rules_app, event(status="failed"))
    [fired] = firings(rules_app, tenant, rule)
    assert fired["reason"].startswith("3 matching events in 10 minutes")
    assert len(fired["payload"]["data"]["events"]) == 3  # the window's matches, not only the last batch's


def test_failure_rate_needs_enough_events_and_a_rate_over_the_bound(rules_app, tenant):
    rule = add_rule(rules_app, tenant, condition="failure_rate", threshold=4, window_seconds=3600, percent=50,
                    filter="type=deployment.*")
    post(rules_app, event(type="deployment.failed", status="failed"), event(type="deployment.failed", status="failed"))
    assert firings(rules_app, tenant, rule) == []  # 100 %, but of 2 events
    post(rules_app, event(type="deployment.done", status="success"), event(type="deployment.done", status="success"))
    assert firings(rules_app, tenant, rule) == []  # 50 % is not over 50 %
    post(rules_app, event(type="deployment.failed", status="failed"))
    [fired] = firings(rules_app, tenant, rule)
    assert fired["reason"].startswith("60% of 5 events failed")


def test_cost_over_a_budget_sums_the_metric(rules_app, tenant):
    rule = add_rule(rules_app, tenant, condition="cost", budget=1.0, window_seconds=86400, filter="source=claude_code")
    post(rules_app, event(source="claude_code", data={"cost_usd": 0.6}), event(source="api", data={"cost_usd": 5}),
         event(source="claude_code", data={"cost_usd": "lots"}))
    assert firings(rules_app, tenant, rule) == []
    post(rules_app, event(source="claude_code", data={"cost_usd": 0.5}))
    [fired] = firings(rules_app, tenant, rule)
    assert "cost_usd 1.10 USD" in fired["reason"]


def test_a_heartbeat_fires_once_per_silence(rules_app, tenant):
    rule = add_rule(rules_app, tenant, condition="heartbeat", window_seconds=60, filter="type=deployment.*")
    worker = Worker(rules_app)
    start = utc_now()
    assert worker.run_schedules(start + timedelta(seconds=30)) == 0
    assert worker.run_schedules(start + timedelta(seconds=61)) == 1
    assert worker.run_schedules(start + timedelta(seconds=90)) == 0  # the same silence
    post(rules_app, event(type="deployment.done", occurred_at=(start + timedelta(seconds=100)).isoformat()))
    assert worker.run_schedules(start + timedelta(seconds=130)) == 0  # heard from 30 s ago
    assert worker.run_schedules(start + timedelta(seconds=161)) == 1  # a new silence
    assert len(firings(rules_app, tenant, rule)) == 2


def test_a_digest_sends_the_period_grouped_as_the_feed_groups(rules_app, tenant):
    rule = add_rule(rules_app, tenant, condition="digest", window_seconds=3600, filter="type=project.*")
    post(rules_app, *[event(type="project.endpoint.added", actor_id="alice", actor_name="Alice",
                            entity_type="service", entity_id="billing-api", entity_name="billing-api") for _ in range(5)],
         event(type="project.created", title="Created search", actor_name="Bob"))
    worker = Worker(rules_app)
    now = utc_now()
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    assert worker.run_schedules(now) == 0  # the hour is not over
    assert worker.run_schedules(next_hour + timedelta(seconds=1)) == 1
    assert worker.run_schedules(next_hour + timedelta(seconds=2)) == 0  # that hour is sent
    [digest] = firings(rules_app, tenant, rule)
    phrases = [g["phrase"] for g in digest["payload"]["data"]["groups"]]
    assert sorted(phrases) == ["Alice added 5 endpoints to billing-api", "Created search"]


def test_webhooks_are_signed_and_verify_with_standardwebhooks(rules_app, tenant, receiver):
    channel = add_channel(rules_app, tenant, receiver.url)
    add_rule(rules_app, tenant, filter="type=deployment.failed", channel_id=channel)
    post(rules_app, event(type="deployment.failed", title="billing-api failed"))
    worker = Worker(rules_app)
    assert worker.deliver_due() == 1
    [request] = receiver.wait(1)
    with rules_app.app_context():
        secret = store_rules.get_channel(tenant, channel).secret
    payload = Webhook(secret).verify(request["body"], request["headers"])
    assert payload["type"] == "rule.fired" and payload["data"]["events"][0]["title"] == "billing-api failed"
    [message] = firings(rules_app, tenant)
    assert request["headers"]["webhook-id"] == message["id"] and message["status"] == "delivered"
    with pytest.raises(Exception):
        Webhook(secret).verify(request["body"].replace(b"billing", b"BILLING"), request["headers"])


def test_retry_after_is_honoured(rules_app, tenant, receiver):
    channel = add_channel(rules_app, tenant, receiver.url)
    add_rule(rules_app, tenant, channel_id=channel)
    receiver.answers.append((503, {"Retry-After": "2"}))
    worker = Worker(rules_app, poll_seconds=0.05).start()
    try:
        post(rules_app, event())
        first, second = receiver.wait(2, seconds=10)
    finally:
        worker.stop()
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert 1.9 <= second["at"] - first["at"] <= 3.5


def test_a_receiver_down_for_30_seconds_gets_every_firing_once(backend, tmp_path, request, receiver):
    # Backoff doubles from 0.2 s up to 4 s: about ten tries in the outage, well inside the 20 allowed.
    rules_app = make_app(backend, tmp_path, request, RULES_EGRESS_ALLOW=["127.0.0.1"], RULES_RETRY_BASE=0.2,
                         RULES_RETRY_CAP=4.0)
    with rules_app.app_context():
        tenant = store.get_or_create_tenant("acme").id
    channel = add_channel(rules_app, tenant, receiver.url)
    add_rule(rules_app, tenant, channel_id=channel)
    receiver.stop()
    worker = Worker(rules_app, poll_seconds=0.05).start()
    try:
        post(rules_app, event(title="one"), event(title="two"))
        post(rules_app, event(title="three"))
        time.sleep(float(__import__("os").environ.get("OUTAGE_SECONDS", "30")))  # the outage itself is the test's subject, not a wait for a condition
        with rules_app.app_context():
            pending = outbox.recent_firings(tenant)
            assert all(m["status"] == "pending" and m["attempts"] >= 3 for m in pending), pending
        receiver.start()
        receiver.wait(3, seconds=15)
        time.sleep(0.5)  # nothing more may arrive
    finally:
        worker.stop()
        teardown_app(rules_app)
    ids = [r["headers"]["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 3
    assert sorted(p["data"]["events"][0]["title"] for p in receiver.payloads()) == ["one", "three", "two"]


def test_a_channel_that_keeps_failing_is_paused_and_resumes(backend, tmp_path, request, receiver):
    app = make_app(backend, tmp_path, request, RULES_EGRESS_ALLOW=["127.0.0.1"], RULES_RETRY_BASE=0.01,
                   RULES_RETRY_CAP=0.01, RULES_PAUSE_AFTER=3, RULES_PAUSE_AFTER_SECONDS=0)
    try:
        with app.app_context():
            tenant = store.get_or_create_tenant("acme").id
        channel = add_channel(app, tenant, receiver.url)
        add_rule(app, tenant, channel_id=channel)
        receiver.answers.extend([(500, {})] * 3)
        post(app, event())
        worker = Worker(app)
        for _ in range(6):
            worker.deliver_due(utc_now() + timedelta(seconds=1))
        assert len(receiver.requests) == 3  # paused after the third failure: no fourth try
        with app.app_context():
            paused = store_rules.get_channel(tenant, channel)
            assert paused.paused_at is not None and "3 deliveries in a row failed" in paused.pause_reason
            assert [a["ok"] for a in outbox.delivery_log(tenant, channel)] == [False] * 3
            auth.create_user("admin@example.com", PASSWORD, store.tenant_by_id(tenant), "admin")
        client = app.test_client()
        sign_in(client, "admin@example.com")
        html = client.get(f"/settings/rules/channels/{channel}").get_data(as_text=True)
        assert 'id="channel-paused"' in html and "3 deliveries in a row failed" in html
        assert "1 firing waits here; nothing is dropped." in " ".join(html.split())
        assert "paused" in client.get("/settings/rules").get_data(as_text=True)
        with app.app_context():
            store_rules.resume_channel(tenant, channel)
        assert worker.deliver_due() == 1
        assert firings(app, tenant)[0]["status"] == "delivered"
    finally:
        teardown_app(app)


def test_rule_evaluation_never_fails_ingest(rules_app, tenant, monkeypatch):
    add_rule(rules_app, tenant, condition="count", threshold=5, window_seconds=60)
    add_rule(rules_app, tenant, name="r2", condition="count", threshold=5, window_seconds=60)

    def broken(*args):
        raise RuntimeError("the rules are broken")

    monkeypatch.setattr(firing, "_count_and_fire", broken)
    [stored] = post(rules_app, event(title="still stored"))
    assert not stored.duplicate and stored.activity["title"] == "still stored"


def test_two_workers_share_the_outbox_without_sending_twice(rules_app, tenant, receiver):
    channel = add_channel(rules_app, tenant, receiver.url)
    add_rule(rules_app, tenant, channel_id=channel)
    post(rules_app, *[event(title=f"e{i}") for i in range(30)])
    workers = [Worker(rules_app, poll_seconds=0.02).start() for _ in range(2)]
    try:
        receiver.wait(30, seconds=20)
        time.sleep(0.5)  # nothing more may arrive
    finally:
        for worker in workers:
            worker.stop()
    ids = [r["headers"]["webhook-id"] for r in receiver.requests]
    assert len(ids) == len(set(ids)) == 30

"""Faults are normal: with the database away every request that needs it is a
503 the client may retry (never a 500), the health checks say so, and
nothing acknowledged is lost.

The database is taken away with a real TCP proxy in front of the real
PostgreSQL server (tests/tcp_proxy.py); nothing is mocked.
"""
from __future__ import annotations

import collections
import itertools
import os
import threading
import time

import pytest
import requests
from activityweb_client import Client
from werkzeug.datastructures import MultiDict

from activityweb.filters import parse_filter
from bench.common import gunicorn
from conftest import event, make_app, sign_in, teardown_app
from test_hook import run_hook, spooled
from test_tcp_proxy import wait_for


def unavailable(response) -> bool:
    return response.status_code == 503 and int(response.headers.get("Retry-After", "0")) > 0


@pytest.fixture
def proxied_app(pg_proxy, tmp_path, request):
    proxy, url = pg_proxy
    app = make_app("postgresql", tmp_path, request, SQLALCHEMY_DATABASE_URI=url)
    yield proxy, app
    teardown_app(app)


def test_database_away_is_a_503_with_retry_after_on_every_kind_of_request(proxied_app):
    proxy, app = proxied_app
    from activityweb import auth, store

    with app.app_context():
        _, secret = auth.create_token(store.get_or_create_tenant("acme"), "t", ["ingest", "read", "admin"])
        auth.create_user("ops@example.com", "correct horse battery", store.get_or_create_tenant("acme"), "admin")
    headers = {"Authorization": f"Bearer {secret}"}
    client = app.test_client()
    browser = app.test_client()
    sign_in(browser, "ops@example.com")
    assert client.post("/api/v1/activities", json=event(), headers=headers).status_code == 201
    csrf = browser.get("/").get_data(as_text=True).split('name="csrf-token" content="')[1].split('"')[0]

    proxy.cut()
    answers = {
        "single": client.post("/api/v1/activities", json=event(source_id="s1"), headers=headers),
        "batch": client.post("/api/v1/activities", json=[event(source_id="b1"), event(source_id="b2")],
                             headers=headers),
        "hook": client.post("/api/v1/integrations/claude-code", headers=headers, json={
            "hook_event_name": "UserPromptSubmit", "session_id": "s", "prompt": "hi"}),
        "list": client.get("/api/v1/activities", headers=headers),
        "read-all": client.post("/api/v1/activities/read-all", headers=headers),
    }
    for name, response in answers.items():
        assert unavailable(response), (name, response.status_code, response.get_data(as_text=True)[:200])
        assert response.get_json()["error"]["code"] == "unavailable", name
    page = browser.get("/")
    assert unavailable(page) and "The database is unavailable" in page.get_data(as_text=True)
    marked = browser.post("/read-all", data={"csrf_token": csrf})
    assert unavailable(marked)
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 503

    proxy.restore()
    wait_for(lambda: client.post("/api/v1/activities", json=event(source_id="s1"), headers=headers).status_code == 201,
             what="ingest to come back")
    assert client.get("/readyz").status_code == 200
    assert browser.get("/").status_code == 200


def test_a_cut_under_a_tenant_with_rules_is_a_503_and_its_rules_fire_after(proxied_app):
    """A tenant with rules writes through psycopg pipelines (BEGIN with the
    INSERT; counts, totals and firings together): a connection cut under them
    must still answer 503, not 500, and the next connection must work."""
    proxy, app = proxied_app
    from activityweb import auth, store
    from activityweb.rules.conditions import parse_rule
    from activityweb.store import outbox
    from activityweb.store import rules as store_rules

    with app.app_context():
        tenant = store.get_or_create_tenant("acme").id
        _, secret = auth.create_token(store.get_or_create_tenant("acme"), "t", ["ingest"])
        store_rules.save_rule(tenant, parse_rule({"name": "each", "condition": "every", "filter": "type=deploy.*"}))
        store_rules.save_rule(tenant, parse_rule({"name": "many", "condition": "count", "threshold": 2,
                                                  "window_seconds": 600, "filter": "type=deploy.*"}))
    headers = {"Authorization": f"Bearer {secret}"}
    client = app.test_client()
    # The rules are read (and cached) with the first batch, so the cut falls on the pipelines themselves.
    assert client.post("/api/v1/activities", json=event(type="deploy.ok", source_id="before"),
                       headers=headers).status_code == 201
    proxy.cut()
    for body in (event(type="deploy.ok", source_id="s1"), [event(type="deploy.ok", source_id=f"b{i}") for i in range(3)]):
        response = client.post("/api/v1/activities", json=body, headers=headers)
        assert unavailable(response), (response.status_code, response.get_data(as_text=True)[:300])
    proxy.restore()
    wait_for(lambda: client.post("/api/v1/activities", json=event(type="deploy.ok", source_id="s1"),
                                 headers=headers).status_code == 201, what="ingest to come back")
    with app.app_context():
        reasons = sorted(f["reason"] for f in outbox.recent_firings(tenant))
    assert reasons[0].startswith("2 matching events") and reasons[1:] == ["a matching event"] * 2


# --------------------------------------------- a 10 s cut on a real gunicorn

CUT_SECONDS = 10.0


def count_by_source_id(app, tenant_id: int) -> dict[str, int]:
    from activityweb import store
    from activityweb.filters import ActivityFilter

    with app.app_context():
        return collections.Counter(a["source_id"] for a in store.stream_activities(tenant_id, ActivityFilter()))


@pytest.mark.server
def test_a_ten_second_database_cut_under_load_loses_nothing_and_answers_503(pg_proxy, tmp_path, request):
    proxy, url = pg_proxy
    app = make_app("postgresql", tmp_path, request)  # direct, for setup and the final count
    try:
        from activityweb import auth, store

        with app.app_context():
            tenant = store.get_or_create_tenant("acme")
            tenant_id = tenant.id
            _, secret = auth.create_token(tenant, "t", ["ingest", "read"])
        env = dict(os.environ, DATABASE_URL=url.replace("+psycopg", ""), SECRET_KEY="k" * 40, LOG_LEVEL="warning")
        env.pop("ACTIVITYWEB_LOCAL_MODE", None)
        headers = {"Authorization": f"Bearer {secret}", "Connection": "close"}
        with gunicorn("wsgi:app", env, workers=2) as (base, _):
            acknowledged: set[str] = set()
            statuses: collections.Counter = collections.Counter()
            wrong: list[tuple[int, str]] = []
            cutting, stop = threading.Event(), threading.Event()
            numbers = itertools.count()

            def post_forever(batch: bool):
                with requests.Session() as session:
                    while not stop.is_set():
                        ids = [f"{'b' if batch else 's'}-{next(numbers)}" for _ in range(3 if batch else 1)]
                        body = [event(source_id=i) for i in ids] if batch else event(source_id=ids[0])
                        try:
                            response = session.post(base + "/api/v1/activities", json=body, headers=headers,
                                                    timeout=10)
                        except requests.RequestException as exc:
                            wrong.append((0, str(exc)[:100]))
                            continue
                        statuses[response.status_code] += 1
                        if response.status_code in (200, 201):
                            acknowledged.update(ids)
                        elif not (response.status_code == 503 and int(response.headers.get("Retry-After", 0)) > 0
                                  and response.json()["error"]["code"] == "unavailable"):
                            wrong.append((response.status_code, response.text[:200]))

            posters = [threading.Thread(target=post_forever, args=(batch,)) for batch in (False, True, False, True)]
            for thread in posters:
                thread.start()
            wait_for(lambda: statuses[201] >= 20, what="posts to flow before the cut")

            tracker = Client(base, secret, spool_dir=tmp_path / "client-spool", max_backoff=0.5)
            hook_spool = tmp_path / "hook-spool"
            proxy.cut()
            cut_at = time.monotonic()
            cutting.set()
            wait_for(lambda: statuses[503] >= 10, what="posts to be answered 503 during the cut")
            assert requests.get(base + "/healthz", timeout=5).status_code == 200
            assert requests.get(base + "/readyz", timeout=5).status_code == 503
            for n in range(5):
                tracker.track("cut.tracked", f"tracked during the cut {n}", source_id=f"client-{n}")
                result, _ = run_hook({"hook_event_name": "Notification", "session_id": "cut", "message": f"hook {n}"},
                                     url=base, token=secret, spool=hook_spool)
                assert result.returncode == 0
            wait_for(lambda: tracker._outstanding == 5 and time.monotonic() - cut_at >= CUT_SECONDS - 1,
                     seconds=CUT_SECONDS + 5, what="the client to hold its events")
            tracker.close(timeout=1)  # still cut: what it holds goes to its spool
            assert len(spooled(hook_spool)) == 5
            assert len((tmp_path / "client-spool" / "client.jsonl").read_text().splitlines()) == 5
            during = dict(statuses)
            while time.monotonic() - cut_at < CUT_SECONDS:
                time.sleep(0.05)  # the cut lasts its ten seconds; posts go on meanwhile

            proxy.restore()
            restored_at = time.monotonic()
            created_before = statuses[201]
            wait_for(lambda: statuses[201] > created_before, what="ingest to come back")
            back_after = time.monotonic() - restored_at
            after = Client(base, secret, spool_dir=tmp_path / "client-spool", max_backoff=0.5)
            after.track("cut.tracked", "after the cut", source_id="client-after")
            assert after.flush(10)
            after.close()
            result, _ = run_hook({"hook_event_name": "Notification", "session_id": "cut", "message": "hook after"},
                                 url=base, token=secret, spool=hook_spool)
            assert result.returncode == 0 and spooled(hook_spool) == []
            stop.set()
            for thread in posters:
                thread.join(15)
        print(f"answers: {dict(statuses)} (during the cut: {during}); ingest back {back_after * 1000:.0f} ms "
              "after the restore")
        assert not wrong, f"answers other than 2xx and 503+Retry-After: {wrong[:5]}"
        assert during.get(503, 0) > 0
        stored_ids = count_by_source_id(app, tenant_id)
        assert not acknowledged - set(stored_ids), "acknowledged events missing"
        assert all(stored_ids[i] == 1 for i in acknowledged)
        client_ids = [f"client-{n}" for n in range(5)] + ["client-after"]
        assert [stored_ids[i] for i in client_ids] == [1] * 6, "the client's events, each once"
        with app.app_context():
            hooks = store.list_activities(tenant_id, parse_filter(MultiDict({"session_id": "cut"})), limit=50).items
        assert sorted(a["title"] for a in hooks) == sorted([f"hook {n}" for n in range(5)] + ["hook after"])
    finally:
        teardown_app(app)


@pytest.mark.server
def test_sigkill_of_a_worker_under_load_loses_no_acknowledged_event(pg_migrated, tmp_path, request):
    import psutil

    app = make_app("postgresql", tmp_path, request)
    try:
        from activityweb import auth, store

        with app.app_context():
            tenant = store.get_or_create_tenant("acme")
            tenant_id = tenant.id
            _, secret = auth.create_token(tenant, "t", ["ingest"])
        env = dict(os.environ, DATABASE_URL=pg_migrated, SECRET_KEY="k" * 40, LOG_LEVEL="warning")
        env.pop("ACTIVITYWEB_LOCAL_MODE", None)
        headers = {"Authorization": f"Bearer {secret}"}
        with gunicorn("wsgi:app", env, workers=2) as (base, master):
            acknowledged: set[str] = set()
            failures = collections.Counter()
            stop = threading.Event()
            numbers = itertools.count()

            def post_forever(batch: bool):
                while not stop.is_set():
                    ids = [f"k-{next(numbers)}" for _ in range(5 if batch else 1)]
                    body = [event(source_id=i) for i in ids] if batch else event(source_id=ids[0])
                    try:
                        # A connection each: the kernel spreads them over both workers.
                        response = requests.post(base + "/api/v1/activities", json=body,
                                                 headers={**headers, "Connection": "close"}, timeout=10)
                    except requests.RequestException:
                        failures["connection"] += 1  # in flight on the killed worker: not acknowledged
                        continue
                    if response.status_code in (200, 201):
                        acknowledged.update(ids)
                    else:
                        failures[response.status_code] += 1

            posters = [threading.Thread(target=post_forever, args=(n % 2 == 1,)) for n in range(6)]
            for thread in posters:
                thread.start()
            workers = psutil.Process(master.pid).children()
            assert len(workers) == 2
            for victim in workers:
                before = len(acknowledged)
                wait_for(lambda: len(acknowledged) >= before + 200, seconds=30, what="load before the kill")
                victim.kill()  # SIGKILL: no cleanup, no graceful shutdown
                victim.wait(10)
                wait_for(lambda: len(psutil.Process(master.pid).children()) == 2, seconds=30,
                         what="gunicorn to replace the killed worker")
            after_kill = len(acknowledged)
            wait_for(lambda: len(acknowledged) >= after_kill + 200, seconds=30, what="load after the kills")
            stop.set()
            for thread in posters:
                thread.join(15)
        stored_ids = count_by_source_id(app, tenant_id)
        print(f"acknowledged {len(acknowledged)}, stored {len(stored_ids)}, failed requests {dict(failures)}")
        assert not acknowledged - set(stored_ids), f"{len(acknowledged - set(stored_ids))} acknowledged events lost"
        assert set(failures) <= {"connection", 502, 503}, failures
    finally:
        teardown_app(app)

"""Faults are normal: with the database away every request that needs it is a
503 the client may retry (never a 500), the health checks say so, and
nothing acknowledged is lost.

The database is taken away with a real TCP proxy in front of the real
PostgreSQL server (tests/tcp_proxy.py); nothing is mocked.
"""
from __future__ import annotations

import pytest

from conftest import event, make_app, sign_in, teardown_app
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

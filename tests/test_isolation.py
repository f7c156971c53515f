"""Tenant isolation: each tenant's credentials, on every read path, see none
of the other tenant's events, and the other's ids answer 404.

Both tenants use the same source ids, conversation ids, tags and words, so a
missing tenant condition anywhere would show.
"""
import json
import re
import time

import pytest
import requests
from websockets.sync.client import connect

from conftest import PASSWORD, SSEReader, csrf_from, event

pytestmark = pytest.mark.server

SHARED = dict(source_id="same-key", conversation_id="conv-1", session_id="conv-1", correlation_id="corr-1",
              actor_id="u-1", entity_type="project", entity_id="p-1", project="billing", environment="production",
              tags=["shared"], type="deploy.succeeded")


@pytest.fixture
def world(app, serve, make_token, make_user):
    server = serve(app)
    tenants = {}
    for slug in ("acme", "globex"):
        token = make_token(slug, "ingest,read")
        email = make_user(f"reader@{slug}.example", slug, "viewer")
        session = requests.Session()
        login = session.get(server.url + "/login").text
        assert session.post(server.url + "/login", data={"email": email, "password": PASSWORD,
                                                         "csrf_token": csrf_from(login)}).status_code == 200
        items = requests.post(server.url + "/api/v1/activities", headers=token, timeout=10, json=[
            event(title=f"{slug} secret plan", summary=f"{slug} only", **SHARED),
            *[event(title=f"{slug} filler {i}", tags=["shared"]) for i in range(60)],
        ]).json()["items"]
        tenants[slug] = {"token": token, "session": session, "ids": {i["id"] for i in items},
                         "secret_id": items[0]["id"]}
    return server, tenants


def other(slug):
    return "globex" if slug == "acme" else "acme"


QUERIES = ["", "q=secret", "q=plan", "tag=shared", "conversation_id=conv-1", "session_id=conv-1",
           "correlation_id=corr-1", "actor=u-1", "entity_type=project&entity_id=p-1", "project=billing",
           "environment=production", "type=deploy.*", "source=api"]


@pytest.mark.parametrize("slug", ["acme", "globex"])
def test_api_list_and_get(world, slug):
    server, tenants = world
    mine, theirs = tenants[slug], tenants[other(slug)]
    for query in QUERIES:
        url, seen = f"{server.url}/api/v1/activities?limit=200&{query}", set()
        while url:
            body = requests.get(url, headers=mine["token"], timeout=10).json()
            seen |= {i["id"] for i in body["items"]}
            assert all(i["tenant"] == slug for i in body["items"])
            url = body["next_cursor"] and f"{server.url}/api/v1/activities?limit=50&{query}&cursor={body['next_cursor']}"
        assert not seen & theirs["ids"], query
        assert seen <= mine["ids"]
    for their_id in list(theirs["ids"])[:5] + [theirs["secret_id"]]:
        assert requests.get(f"{server.url}/api/v1/activities/{their_id}", headers=mine["token"], timeout=10).status_code == 404


@pytest.mark.parametrize("slug", ["acme", "globex"])
def test_dashboard_pages_partials_and_detail(world, slug):
    server, tenants = world
    mine, theirs = tenants[slug], tenants[other(slug)]
    browser = mine["session"]
    for query in QUERIES:
        for headers in ({}, {"HX-Request": "true"}):
            html = browser.get(f"{server.url}/?{query}", headers=headers, timeout=10).text
            ids = set(re.findall(r'data-id="([0-9a-f-]{36})"', html))
            assert not ids & theirs["ids"], query
            assert f"{other(slug)} secret" not in html
    # A cursor made in the other tenant pages through nothing of theirs.
    their_cursor = re.search(r'cursor=([^"&]+)', theirs["session"].get(server.url + "/", timeout=10).text).group(1)
    html = browser.get(f"{server.url}/?cursor={their_cursor}", headers={"HX-Request": "true"}, timeout=10).text
    assert not set(re.findall(r'data-id="([0-9a-f-]{36})"', html)) & theirs["ids"]
    assert browser.get(f"{server.url}/activities/{theirs['secret_id']}", timeout=10).status_code == 404
    assert browser.get(f"{server.url}/activities/{mine['secret_id']}", timeout=10).status_code == 200


def _cookie(session):
    return "; ".join(f"{k}={v}" for k, v in session.cookies.items())


@pytest.mark.parametrize("slug", ["acme", "globex"])
def test_feed_socket_replay_and_live(world, slug):
    server, tenants = world
    mine, theirs = tenants[slug], tenants[other(slug)]
    # Replay from the other tenant's newest id must bring only our events.
    with connect(f"{server.ws_url}/feed/ws", origin=server.url, additional_headers={"Cookie": _cookie(mine["session"])},
                 open_timeout=5) as ws:
        ws.send(json.dumps({"since": max(theirs["ids"])}))
        time.sleep(0.3)
        requests.post(server.url + "/api/v1/activities", headers=theirs["token"], json=event(title="their live news"),
                      timeout=10)
        mine_live = requests.post(server.url + "/api/v1/activities", headers=mine["token"],
                                  json=event(title="our live news"), timeout=10).json()
        text = ""
        deadline = time.monotonic() + 5
        while mine_live["id"] not in text and time.monotonic() < deadline:
            try:
                text += ws.recv(timeout=1)
            except TimeoutError:
                pass
    assert mine_live["id"] in text
    assert "their live news" not in text and not set(re.findall(r"activity-([0-9a-f-]{36})", text)) & theirs["ids"]


@pytest.mark.parametrize("slug", ["acme", "globex"])
def test_json_socket_and_sse(world, slug):
    server, tenants = world
    mine, theirs = tenants[slug], tenants[other(slug)]
    with connect(f"{server.ws_url}/ws?since={max(theirs['ids'])}", additional_headers=mine["token"], open_timeout=5) as ws:
        time.sleep(0.3)
        requests.post(server.url + "/api/v1/activities", headers=theirs["token"], json=event(title="their ws news"),
                      timeout=10)
        frames = []
        while True:
            try:
                frames.append(json.loads(ws.recv(timeout=1.0)))
            except TimeoutError:
                break
    # Their event id is no position in our log: a reset, and nothing of theirs.
    assert frames[0]["type"] == "reset" and frames[1]["type"] == "position"
    assert all(f["activity"]["tenant"] == slug for f in frames[2:])

    reader = SSEReader(server, mine["token"], last_event_id=max(theirs["ids"]))
    try:
        time.sleep(0.5)
        requests.post(server.url + "/api/v1/activities", headers=theirs["token"], json=event(title="their sse news"),
                      timeout=10)
        time.sleep(0.8)
    finally:
        reader.close()
    assert reader.events and reader.events[0]["event"] == "reset"  # (the position line has no data: no event)
    received = [json.loads(e["data"]) for e in reader.events[1:]]
    assert all(a["tenant"] == slug for a in received)


@pytest.mark.parametrize("slug", ["acme", "globex"])
def test_conversations_api_page_and_socket(world, slug):
    server, tenants = world
    mine, theirs = tenants[slug], tenants[other(slug)]
    listing = requests.get(f"{server.url}/api/v1/conversations", headers=mine["token"], timeout=10).json()["items"]
    assert [c["id"] for c in listing] == ["conv-1"]
    body = requests.get(f"{server.url}/api/v1/conversations/conv-1", headers=mine["token"], timeout=10).json()
    ids = {s["event"]["id"] for s in body["steps"]}
    assert ids and ids <= mine["ids"] and not ids & theirs["ids"]
    assert all(s["event"]["tenant"] == slug for s in body["steps"])
    page = mine["session"].get(f"{server.url}/conversations/conv-1", timeout=10).text
    assert f"{slug} secret plan" in page and f"{other(slug)} secret plan" not in page
    assert f"{other(slug)} secret" not in mine["session"].get(f"{server.url}/conversations", timeout=10).text
    with connect(f"{server.ws_url}/conversations/conv-1/ws", origin=server.url,
                 additional_headers={"Cookie": _cookie(mine["session"])}, open_timeout=5) as ws:
        ws.send(json.dumps({"since": None}))
        time.sleep(0.3)
        requests.post(server.url + "/api/v1/activities", headers=theirs["token"], timeout=10,
                      json=event(title="their conversation step", conversation_id="conv-1"))
        text = ""
        while True:
            try:
                text += ws.recv(timeout=1.0)
            except TimeoutError:
                break
    assert "their conversation step" not in text


@pytest.mark.parametrize("slug", ["acme", "globex"])
def test_read_state_cannot_touch_the_other_tenant(world, slug):
    server, tenants = world
    mine, theirs = tenants[slug], tenants[other(slug)]
    url = f"{server.url}/api/v1/activities"
    assert requests.patch(f"{url}/{theirs['secret_id']}/read", headers=mine["token"], timeout=10).status_code == 404
    their_unread = requests.get(f"{url}?read=false&limit=200", headers=theirs["token"], timeout=10).json()["items"]
    assert requests.post(f"{url}/read-all", headers=mine["token"], timeout=10).status_code == 200
    assert requests.get(f"{url}?read=false&limit=200", headers=mine["token"], timeout=10).json()["items"] == []
    still = requests.get(f"{url}?read=false&limit=200", headers=theirs["token"], timeout=10).json()["items"]
    assert len(still) == len(their_unread) > 0


@pytest.mark.parametrize("slug", ["acme", "globex"])
def test_stats_count_only_the_own_tenant(world, slug):
    server, tenants = world
    mine, theirs = tenants[slug], tenants[other(slug)]
    requests.post(server.url + "/api/v1/activities", headers=theirs["token"], timeout=10,
                  json=[event(title=f"their extra {i}", type="their.only", actor_id="their-actor") for i in range(7)])
    stats = requests.get(f"{server.url}/api/v1/activities/stats", headers=mine["token"], timeout=10).json()
    assert stats["total"] == len(mine["ids"])
    assert "their.only" not in json.dumps(stats) and "their-actor" not in json.dumps(stats)
    page = mine["session"].get(f"{server.url}/stats?type=their.only", timeout=10).text
    assert "their-actor" not in page


@pytest.mark.parametrize("slug", ["acme", "globex"])
def test_exports_hold_only_the_own_tenant(world, slug):
    server, tenants = world
    mine, theirs = tenants[slug], tenants[other(slug)]
    for fmt in ("ndjson", "csv"):
        api = requests.get(f"{server.url}/api/v1/activities/export?format={fmt}", headers=mine["token"], timeout=20).text
        page = mine["session"].get(f"{server.url}/export?format={fmt}", timeout=20).text
        for body in (api, page):
            found = set(re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", body))
            assert found == mine["ids"], fmt
            assert f"{other(slug)} secret" not in body


def test_a_retry_is_answered_with_the_retrying_tenants_own_event(client, make_token):
    """Two tenants use the same (source, source_id); each one's retry is a
    duplicate answered with its own event, never the other tenant's (the
    lookup that answers a duplicate is scoped by tenant)."""
    acme, globex = make_token("acme", "ingest"), make_token("globex", "ingest")
    body = {"type": "deploy.done", "title": "Deployed", "source": "ci", "source_id": "run-1"}
    # Globex first, then Acme: a lookup without the tenant would find both, and answer with the later row.
    first = {name: client.post("/api/v1/activities", json=body, headers=headers).get_json()
             for name, headers in (("globex", globex), ("acme", acme))}
    assert first["acme"]["id"] != first["globex"]["id"]
    for name, headers in (("acme", acme), ("globex", globex)):
        retry = client.post("/api/v1/activities", json=body, headers=headers)
        assert retry.status_code == 200 and retry.get_json()["duplicate"] is True
        assert retry.get_json()["id"] == first[name]["id"] and retry.get_json()["tenant"] == name
        batch = client.post("/api/v1/activities", json=[body], headers=headers).get_json()
        assert batch["items"][0]["id"] == first[name]["id"], name

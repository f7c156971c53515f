"""GET /api/v1/activities: filters, search, keyset pages, tenant isolation."""
import threading

import pytest

from conftest import event

NOW = "2026-11-20T12:00:00Z"


def post(client, headers, *events):
    response = client.post("/api/v1/activities", json=list(events), headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["items"]


def titles(client, headers, query=""):
    response = client.get(f"/api/v1/activities?limit=200&{query}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return sorted(i["title"] for i in response.get_json()["items"])


@pytest.fixture
def corpus(client, auth_headers):
    post(client, auth_headers,
         event(title="Bash: npm test", type="claude.tool.completed", source="claude_code", status="success",
               actor_id="claude", actor_name="Claude", entity_type="tool", entity_id="Bash", entity_name="Bash",
               conversation_id="c1", session_id="s1", sequence=2, correlation_id="toolu_1",
               occurred_at="2026-11-20T10:00:00Z", tags=["ci"], duration_ms=1200),
         event(title="Edit src/app.py", type="claude.tool.failed", source="claude_code", status="failed",
               priority="high", actor_id="claude", actor_name="Claude", entity_type="tool", entity_id="Edit",
               conversation_id="c1", session_id="s1", sequence=3, occurred_at="2026-11-20T10:01:00Z"),
         event(title="Prompt: make the dashboard faster", type="claude.prompt.submitted", source="claude_code",
               actor_id="u-alice", actor_name="Alice Martin", conversation_id="c2", session_id="s2",
               occurred_at="2026-11-19T09:00:00Z"),
         event(title="Deploy of billing-api to production failed", type="deployment.failed", status="failed",
               priority="critical", project="billing-api", environment="production", actor_id="u-bob",
               actor_name="Bob Okafor", entity_type="project", entity_id="billing-api", request_id="req-9",
               correlation_id="req-9", tags=["deploy", "production"], occurred_at="2026-11-18T16:30:00Z"),
         event(title="High-intent lead: Priya at Initech", type="lead.high_intent", source="hubspot",
               priority="high", entity_type="lead", entity_id="lead-7", entity_name="Priya Raman (Initech)",
               summary="Opened the pricing email 5 times", tags=["lead"], occurred_at="2026-11-17T08:00:00Z"),
         event(title="Pushed 3 commits to acme/web", type="github.push", source="github", project="web-console",
               environment="staging", actor_id="alice", actor_name="Alice Martin", tags=["git"],
               occurred_at="2026-11-16T14:00:00Z"),
         )


FILTER_CASES = [
    ("type=github.push", ["Pushed 3 commits to acme/web"]),
    ("type=claude.tool.*", ["Bash: npm test", "Edit src/app.py"]),
    ("type=claude.*", ["Bash: npm test", "Edit src/app.py", "Prompt: make the dashboard faster"]),
    ("type=claude.tool.*&type=lead.high_intent", ["Bash: npm test", "Edit src/app.py", "High-intent lead: Priya at Initech"]),
    ("type=claude", []),  # no wildcard: exact
    ("type=*", None),  # everything
    ("source=hubspot", ["High-intent lead: Priya at Initech"]),
    ("source=github&source=hubspot", ["High-intent lead: Priya at Initech", "Pushed 3 commits to acme/web"]),
    ("actor=u-alice", ["Prompt: make the dashboard faster"]),
    ("entity_type=tool", ["Bash: npm test", "Edit src/app.py"]),
    ("entity_type=tool&entity_id=Edit", ["Edit src/app.py"]),
    ("entity_id=lead-7", ["High-intent lead: Priya at Initech"]),
    ("status=failed", ["Deploy of billing-api to production failed", "Edit src/app.py"]),
    ("priority=high", ["Edit src/app.py", "High-intent lead: Priya at Initech"]),
    ("priority=high&priority=critical", ["Deploy of billing-api to production failed", "Edit src/app.py",
                                         "High-intent lead: Priya at Initech"]),
    ("tag=deploy", ["Deploy of billing-api to production failed"]),
    ("tag=lead&tag=git", ["High-intent lead: Priya at Initech", "Pushed 3 commits to acme/web"]),
    ("project=billing-api", ["Deploy of billing-api to production failed"]),
    ("environment=staging", ["Pushed 3 commits to acme/web"]),
    ("conversation_id=c1", ["Bash: npm test", "Edit src/app.py"]),
    ("session_id=s2", ["Prompt: make the dashboard faster"]),
    ("correlation_id=req-9", ["Deploy of billing-api to production failed"]),
    ("since=2026-11-19T09:00:00Z", ["Bash: npm test", "Edit src/app.py", "Prompt: make the dashboard faster"]),
    ("until=2026-11-17T08:00:00Z", ["Pushed 3 commits to acme/web"]),
    ("since=2026-11-17&until=2026-11-19", ["Deploy of billing-api to production failed",
                                           "High-intent lead: Priya at Initech"]),
    ("q=npm", ["Bash: npm test"]),
    ("q=NPM+tes", ["Bash: npm test"]),  # case-insensitive, last word as prefix
    ("q=app.py", ["Edit src/app.py"]),  # punctuation splits words the same on both databases
    ("q=pricing", ["High-intent lead: Priya at Initech"]),  # summary
    ("q=alice", ["Prompt: make the dashboard faster", "Pushed 3 commits to acme/web"]),  # actor name
    ("q=initech", ["High-intent lead: Priya at Initech"]),
    ("q=deploy+production", ["Deploy of billing-api to production failed"]),
    ("q=deploy+staging", []),
    ("q=%27%3B+drop+table", []),  # only words reach the query
    ("status=failed&priority=critical&project=billing-api", ["Deploy of billing-api to production failed"]),
    ("type=&status=", None),  # empty values are ignored (an untouched form)
]


@pytest.mark.parametrize("query, expected", FILTER_CASES)
def test_filters(client, auth_headers, corpus, query, expected):
    every = titles(client, auth_headers)
    assert titles(client, auth_headers, query) == (every if expected is None else sorted(expected))


def test_filters_agree_with_live_matching(app, client, auth_headers, corpus):
    """The live path matches events in Python; it must agree with SQL on every filter above."""
    from werkzeug.datastructures import MultiDict

    from activityweb import store
    from activityweb.filters import parse_filter

    queries = [q for q, _ in FILTER_CASES]
    with app.app_context():
        everything = store.list_activities(1, parse_filter(MultiDict()), limit=200).items
        for query in queries:
            flt = parse_filter(MultiDict([tuple(kv.split("=", 1)) for kv in query.replace("+", " ").split("&")]))
            from_sql = {a["id"] for a in store.list_activities(1, flt, limit=200).items}
            in_python = {a["id"] for a in everything if flt.matches(a)}
            assert from_sql == in_python, query


def test_order_is_occurred_at_then_id_descending(client, auth_headers):
    post(client, auth_headers, *[event(title=f"same {i}", occurred_at=NOW) for i in range(5)],
         event(title="older", occurred_at="2026-11-19T00:00:00Z"), event(title="newer", occurred_at="2026-11-21T00:00:00Z"))
    items = client.get("/api/v1/activities", headers=auth_headers).get_json()["items"]
    assert items[0]["title"] == "newer" and items[-1]["title"] == "older"
    tied = [i["id"] for i in items[1:-1]]
    assert tied == sorted(tied, reverse=True)


def walk(client, headers, query="", limit=7):
    seen, cursor, pages = [], None, 0
    while True:
        url = f"/api/v1/activities?limit={limit}&{query}" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=headers).get_json()
        seen.extend(body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            return seen, pages


def test_keyset_pages_cover_everything_once(client, auth_headers):
    post(client, auth_headers, *[event(title=f"e{i}", occurred_at=f"2026-11-{10 + i % 5}T10:00:00Z") for i in range(50)])
    seen, pages = walk(client, auth_headers)
    assert len(seen) == 50 and len({i["id"] for i in seen}) == 50
    assert pages == 8
    keys = [(i["occurred_at"], i["id"]) for i in seen]
    assert keys == sorted(keys, reverse=True)


def test_keyset_pages_while_events_arrive(app, client, auth_headers):
    """New events (now, and with old occurred_at) arrive while a reader pages:
    no duplicate, and nothing older than the first page is skipped."""
    post(client, auth_headers, *[event(title=f"old {i}", occurred_at=f"2026-11-{1 + i % 20:02d}T10:00:00Z") for i in range(120)])
    stop = threading.Event()

    def writer():
        n = 0
        with app.test_client() as c:
            while not stop.is_set() and n < 200:
                c.post("/api/v1/activities", json=[event(title=f"new {n}"), event(title=f"late {n}",
                       occurred_at="2026-11-10T10:00:00Z")], headers=auth_headers)
                n += 1

    thread = threading.Thread(target=writer)
    first = client.get("/api/v1/activities?limit=10", headers=auth_headers).get_json()
    first_oldest = (first["items"][-1]["occurred_at"], first["items"][-1]["id"])
    thread.start()
    try:
        seen = list(first["items"])
        cursor = first["next_cursor"]
        while cursor:
            body = client.get(f"/api/v1/activities?limit=10&cursor={cursor}", headers=auth_headers).get_json()
            seen.extend(body["items"])
            cursor = body["next_cursor"]
    finally:
        stop.set()
        thread.join()
    ids = [i["id"] for i in seen]
    assert len(ids) == len(set(ids)), "a page repeated an event"
    titles_seen = {i["title"] for i in seen}
    assert {f"old {i}" for i in range(120)} <= titles_seen, "an event older than the first page was skipped"
    keys = [(i["occurred_at"], i["id"]) for i in seen]
    assert keys == sorted(keys, reverse=True)
    assert all(k < first_oldest for k in keys[10:])


def test_tenant_isolation_on_list_and_get(client, make_token):
    acme, globex = make_token("acme"), make_token("globex")
    a = post(client, acme, event(title="acme secret", source_id="shared-key", tags=["x"]))[0]
    g = post(client, globex, event(title="globex secret", source_id="shared-key", tags=["x"]))[0]
    assert a["id"] != g["id"]  # the idempotency key is per tenant
    assert titles(client, acme) == ["acme secret"]
    assert titles(client, globex) == ["globex secret"]
    for query in ("q=secret", "tag=x", "type=test.happened"):
        assert titles(client, acme, query) == ["acme secret"]
    assert client.get(f"/api/v1/activities/{g['id']}", headers=acme).status_code == 404
    assert client.get(f"/api/v1/activities/{a['id']}", headers=globex).status_code == 404
    assert client.get(f"/api/v1/activities/{a['id']}", headers=acme).status_code == 200
    # A cursor made in one tenant reveals nothing in another.
    post(client, acme, *[event(title=f"acme {i}") for i in range(5)])
    cursor = client.get("/api/v1/activities?limit=2", headers=acme).get_json()["next_cursor"]
    leaked = client.get(f"/api/v1/activities?cursor={cursor}", headers=globex).get_json()["items"]
    assert all(i["tenant"] == "globex" for i in leaked)

"""Conversation timelines: the pairing and nesting, the API and the pages."""
import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from activityweb.timeline import build
from claude_session import AGENT, HOOK, SESSION, TASK, recorded_session
from conftest import event

T = datetime(2026, 11, 20, 10, 0, tzinfo=timezone.utc)


def ev(n: int, **fields) -> dict:
    base = {"id": f"e{n}", "type": "chat.message", "title": f"event {n}", "status": None, "correlation_id": None,
            "actor_id": None, "entity_type": None, "entity_id": None, "duration_ms": None,
            "occurred_at": T + timedelta(seconds=n)}
    return {**base, **fields}


def shape(steps) -> list:
    return [(s.event["id"], s.result["id"] if s.result else None, shape(s.steps)) for s in steps]


# ------------------------------------------------------------ the timeline


def test_a_start_pairs_with_its_outcome_and_takes_the_time_between():
    steps = build([ev(1, status="started", correlation_id="c"), ev(2), ev(4, status="success", correlation_id="c")])
    assert shape(steps) == [("e1", "e4", []), ("e2", None, [])]
    assert steps[0].duration_ms == 3000 and not steps[0].running


def test_a_results_own_duration_wins_and_failures_are_marked():
    steps = build([ev(1, status="started", correlation_id="c"),
                   ev(2, status="failed", correlation_id="c", duration_ms=1234)])
    assert steps[0].duration_ms == 1234 and steps[0].failed and steps[0].status == "failed"


def test_events_in_between_with_the_same_id_nest_and_unfinished_steps_are_running():
    steps = build([ev(1, status="started", correlation_id="c"), ev(2, status="waiting", correlation_id="c")])
    assert shape(steps) == [("e1", None, [("e2", None, [])])]
    assert steps[0].running and steps[0].duration_ms is None


def test_a_result_without_its_start_stands_alone():
    steps = build([ev(1, status="success", correlation_id="c", duration_ms=5)])
    assert shape(steps) == [("e1", None, [])] and steps[0].duration_ms == 5


def test_subagents_nest_under_the_call_that_spawned_them_and_hold_what_they_did():
    tool = dict(entity_type="tool", entity_id="Task")
    sub = dict(entity_type="subagent", correlation_id="agent-1")
    steps = build([
        ev(1, status="started", correlation_id="t1", **tool),
        ev(2, status="started", correlation_id="t2", **tool),
        ev(3, status="started", **sub),
        ev(4, status="started", correlation_id="g", actor_id="agent-1", entity_type="tool", entity_id="Grep"),
        ev(5, status="success", correlation_id="g", actor_id="agent-1"),
        ev(6, status="success", **sub),
        ev(7, status="started", entity_type="subagent", correlation_id="agent-2"),
        ev(8, status="success", correlation_id="t1"),
        ev(9, status="success", correlation_id="t2"),
    ])
    # Parallel calls start their subagents in the order they were made.
    assert shape(steps) == [("e1", "e8", [("e3", "e6", [("e4", "e5", [])])]),
                            ("e2", "e9", [("e7", None, [])])]
    assert [s.kind for s in steps[0].steps] == ["subagent"]


# ---------------------------------------------------------------- the API


@pytest.fixture
def headers(make_token):
    return make_token("acme", "ingest,read")


@pytest.fixture
def session(client, headers):
    for body in recorded_session():
        response = client.post(HOOK, data=json.dumps(body), content_type="application/json", headers=headers)
        assert response.status_code == 201, response.get_data(as_text=True)
    return SESSION


def test_a_claude_code_session_as_a_timeline(client, headers, session):
    body = client.get(f"/api/v1/conversations/{session}", headers=headers).get_json()
    assert body["id"] == SESSION and body["event_count"] == 13 and body["failures"] == 1
    assert body["first_prompt"].startswith("Add pagination") and body["project"] == "billing-api"
    assert body["span_ms"] == 25_000 and body["truncated"] is False
    steps = body["steps"]
    assert [s["kind"] for s in steps] == ["session", "prompt", "tool", "tool", "tool", "reply"]
    bash, edit, task = steps[2:5]
    assert (bash["event"]["title"], bash["result"]["type"], bash["duration_ms"], bash["failed"]) == \
        ("Bash: npm test", "claude.tool.failed", 4250, True)
    assert (edit["result"]["type"], edit["duration_ms"], edit["failed"]) == ("claude.tool.completed", 31, False)
    assert task["event"]["correlation_id"] == TASK and task["duration_ms"] == 8500
    [subagent] = task["steps"]
    assert subagent["kind"] == "subagent" and subagent["duration_ms"] == 7500
    assert subagent["result"]["type"] == "claude.subagent.stopped"
    [grep] = subagent["steps"]
    assert grep["event"]["actor_id"] == AGENT and grep["duration_ms"] == 200
    assert steps[-1]["event"]["summary"].startswith("Pagination is in place")


def test_recent_conversations_newest_first_with_their_facts(client, headers, session):
    client.post("/api/v1/activities", headers=headers, json=[
        event(title="Hello", conversation_id="chat-1", sequence=1, entity_type="prompt", summary="Hello there",
              occurred_at="2026-11-21T09:00:00Z"),
        event(title="Reply", conversation_id="chat-1", sequence=2, status="failed", occurred_at="2026-11-21T09:00:03Z"),
        event(title="No conversation", occurred_at="2026-11-22T09:00:00Z"),
    ])
    items = client.get("/api/v1/conversations", headers=headers).get_json()["items"]
    assert [c["id"] for c in items] == ["chat-1", SESSION]
    assert items[0] == {"id": "chat-1", "first_prompt": "Hello there", "event_count": 2,
                        "started_at": "2026-11-21T09:00:00.000000Z", "last_at": "2026-11-21T09:00:03.000000Z",
                        "span_ms": 3000, "failures": 1, "project": None, "state": "ended", "usage": None}
    assert items[1]["event_count"] == 13 and items[1]["first_prompt"].startswith("Add pagination")
    # The feed's filters choose among them; limit bounds them.
    assert [c["id"] for c in client.get("/api/v1/conversations?project=billing-api",
                                        headers=headers).get_json()["items"]] == [SESSION]
    assert len(client.get("/api/v1/conversations?limit=1", headers=headers).get_json()["items"]) == 1
    assert client.get("/api/v1/conversations?limit=101", headers=headers).status_code == 400


def test_conversations_belong_to_their_tenant(client, headers, make_token, session):
    other = make_token("globex", "ingest,read")
    assert client.get(f"/api/v1/conversations/{session}", headers=other).status_code == 404
    assert client.get("/api/v1/conversations", headers=other).get_json() == {"items": [], "next_cursor": None}
    assert client.get("/api/v1/conversations/nope", headers=headers).status_code == 404
    assert client.get("/api/v1/conversations").status_code == 401


def test_conversation_answers_match_the_document(client, headers, session):
    from test_openapi import check

    spec = client.get("/api/v1/openapi.json").get_json()
    check(spec, client.get("/api/v1/conversations", headers=headers), "/api/v1/conversations", "get")
    one = "/api/v1/conversations/{conversation_id}"
    check(spec, client.get(f"/api/v1/conversations/{session}", headers=headers), one, "get")
    check(spec, client.get("/api/v1/conversations/nope", headers=headers), one, "get")


# -------------------------------------------------------------- the pages


@pytest.fixture
def web(local_app):
    return local_app.test_client()


def test_timeline_page_pairs_nests_and_links(web):
    for body in recorded_session():
        assert web.post(HOOK, data=json.dumps(body), content_type="application/json").status_code == 201
    html = web.get(f"/conversations/{SESSION}").get_data(as_text=True)
    assert 'ws-connect="/conversations/' + SESSION + '/ws"' in html
    assert "Add pagination to the users endpoint" in html and "13 events" in html and "1 failed" in html
    steps = re.findall(r'<li id="step-[^"]+" data-kind="(\w+)"', html)
    assert steps == ["session", "prompt", "tool", "tool", "tool", "subagent", "tool", "reply"]
    assert 'data-ms="4250"' in html and 'data-ms="31"' in html and "AssertionError: expected 20 to equal 50" in html
    # The feed and an event's page lead to the timeline.
    timeline_link = f'href="/conversations/{SESSION}"'
    assert timeline_link in web.get("/").get_data(as_text=True)
    some_id = re.search(r'data-id="([0-9a-f-]{36})"', web.get("/").get_data(as_text=True)).group(1)
    assert timeline_link in web.get(f"/activities/{some_id}").get_data(as_text=True)
    listing = web.get("/conversations").get_data(as_text=True)
    assert timeline_link in listing and "13 events" in listing


def test_unknown_conversation_page_is_404(web):
    assert web.get("/conversations/nope").status_code == 404

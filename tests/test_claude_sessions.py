"""'Needs you' and /sessions: Claude Code sessions waiting on a person, and a lane per running session."""
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

HOOK = "/api/v1/integrations/claude-code"
HOOKS = Path(__file__).parent / "fixtures" / "claude_code" / "hooks"


def payload(name: str, session: str, seconds_ago: float, **changes) -> dict:
    body = json.loads((HOOKS / f"{name}.json").read_text())
    at = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return {**body, "session_id": session, "activityweb_occurred_at": at.isoformat(), **changes}


@pytest.fixture
def web(local_app):
    return local_app.test_client()


def send(web, *payloads):
    response = web.post(HOOK, data=json.dumps(list(payloads)), content_type="application/json")
    assert response.status_code == 201, response.get_data(as_text=True)


def waiting_ids(web) -> list[str]:
    import re
    return re.findall(r'id="waiting-([^"]+)"', web.get("/needs-you").get_data(as_text=True))


def test_a_permission_request_waits_until_the_session_moves_on(web):
    send(web, payload("UserPromptSubmit", "s-1", 60), payload("PreToolUse", "s-1", 50, tool_use_id="toolu_a"),
         payload("PermissionRequest", "s-1", 40), payload("Notification.permission_prompt", "s-1", 34))
    page = web.get("/needs-you").get_data(as_text=True)
    assert waiting_ids(web) == ["s-1"]
    assert "Permission asked: Bash: curl -s http://127.0.0.1:9/health" in page  # what it asks, not the notification
    assert 'class="waiting kind-permission"' in page
    assert 'href="/needs-you" data-count="1"' in web.get("/").get_data(as_text=True)  # the header badge
    assert 'ws-connect="/needs-you/ws"' in page and 'ws-connect="/needs-you/list/ws"' in page
    send(web, payload("PostToolUse", "s-1", 5, tool_use_id="toolu_a"))
    assert waiting_ids(web) == []
    assert 'id="needs-you-badge" class="needs-you-badge" href="/needs-you" data-count="0"' in web.get("/").get_data(as_text=True)


@pytest.mark.parametrize("waiting, moving_on", [
    ("Notification.idle_prompt", "UserPromptSubmit"),
    ("Elicitation", "ElicitationResult"),
    ("Notification.permission_prompt", "Stop"),
    ("Notification.idle_prompt", "SessionEnd"),
    ("Elicitation", "Notification.elicitation_response"),
])
def test_each_kind_of_wait_clears_when_the_session_moves_on(web, waiting, moving_on):
    send(web, payload("Stop", "s-2", 90), payload(waiting, "s-2", 30))
    assert waiting_ids(web) == ["s-2"]
    send(web, payload(moving_on, "s-2", 1))
    assert waiting_ids(web) == []


def test_notifications_that_ask_nothing_do_not_wait(web):
    send(web, payload("Notification.elicitation_response", "s-3", 10))
    assert waiting_ids(web) == []


def test_lanes_show_state_tool_prompt_and_fold_ended_sessions(web):
    send(web,
         payload("SessionStart", "run-1", 120), payload("UserPromptSubmit", "run-1", 100, prompt="paginate the users"),
         payload("PreToolUse", "run-1", 30, tool_use_id="toolu_r"),
         payload("SubagentStart", "run-1", 20),
         payload("PreToolUse.subagent", "run-1", 10),
         payload("SessionStart", "idle-1", 200), payload("UserPromptSubmit", "idle-1", 190, prompt="what is up"),
         payload("Stop", "idle-1", 180),
         payload("SessionStart", "done-1", 300), payload("SessionEnd", "done-1", 250))
    html = web.get("/sessions").get_data(as_text=True)
    import re
    running = html.split('id="ended-lanes"')[0]
    assert re.findall(r'<li class="lane state-(\w+)" id="lane-(run-1|idle-1)"', running) == [("tool", "run-1"),
                                                                                          ("idle", "idle-1")]
    assert "Bash: echo hi" in running and "paginate the users" in running
    assert 'id="lane-a5945de6c1c068326"' in running and "subagent-lane" in running  # the subagent's own lane
    ended = html.split('id="ended-lanes"')[1]
    assert 'id="lane-done-1"' in ended and "1 ended session" in ended
    assert 'data-events="' in html
    assert 'ws-connect="/sessions/ws"' in html
    # The clock refresh gets the lanes alone.
    partial = web.get("/sessions", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert '<div id="session-lanes">' in partial and "<html" not in partial


def test_the_api_lists_waiting_sessions_and_lanes(web):
    send(web, payload("SessionStart", "s-api", 60), payload("PreToolUse", "s-api", 30, tool_use_id="toolu_x"),
         payload("PermissionRequest", "s-api", 20))
    [waiting] = web.get("/api/v1/sessions/waiting").get_json()["items"]
    assert (waiting["session_id"], waiting["kind"]) == ("s-api", "permission")
    assert waiting["asks"].startswith("Permission asked: Bash")
    [lane] = web.get("/api/v1/sessions").get_json()["items"]
    assert (lane["id"], lane["state"], lane["tool"]) == ("s-api", "waiting", "Bash: echo hi")
    assert len(lane["pulse"]) == 30 and sum(lane["pulse"]) == 3


@pytest.mark.parametrize("path", ["/needs-you/ws", "/needs-you/list/ws", "/sessions/ws"])
def test_the_sockets_need_a_session_and_this_origin(app, serve, make_user, path):
    import requests
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from conftest import PASSWORD, csrf_from

    server = serve(app)
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url + path, origin=server.url, open_timeout=5)
    assert refused.value.response.status_code == 401
    make_user("lanes@example.com")
    session = requests.Session()
    page = session.get(server.url + "/login").text
    session.post(server.url + "/login", data={"email": "lanes@example.com", "password": PASSWORD,
                                              "csrf_token": csrf_from(page)})
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    with connect(server.ws_url + path, origin=server.url, additional_headers={"Cookie": cookie}, open_timeout=5) as ws:
        ws.send('{"since": null}')
    with pytest.raises(InvalidStatus) as refused:
        connect(server.ws_url + path, origin="https://evil.example", additional_headers={"Cookie": cookie},
                open_timeout=5)
    assert refused.value.response.status_code == 403

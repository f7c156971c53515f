"""Claude Code sessions in a real browser (headless Chromium through Playwright):
"Needs you" appearing and clearing live, /sessions lanes, cost on the timeline and /stats.
Screenshots of each page at 1440x900 and 390x844 go to tests/artifacts/."""
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from test_otlp import exports, main_session

pytestmark = pytest.mark.browser

HOOK = "/api/v1/integrations/claude-code"
FIXTURES = Path(__file__).parent / "fixtures"
HOOKS = FIXTURES / "claude_code" / "hooks"
ARTIFACTS = Path(__file__).parent / "artifacts"
SIZES = {"desktop": (1440, 900), "phone": (390, 844)}


@pytest.fixture
def server(sqlite_local_app, serve):
    # Between events /sessions redraws its clocks this often: longer than any test, so what
    # changes on the page changes because the socket said so.
    sqlite_local_app.config["SESSIONS_CLOCK_SECONDS"] = 3600
    return serve(sqlite_local_app)


def hook(server, name: str, session: str, seconds_ago: float = 0, **changes):
    body = json.loads((HOOKS / f"{name}.json").read_text())
    at = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    body.update(changes, session_id=session, activityweb_occurred_at=at.isoformat())
    response = requests.post(server.url + HOOK, json=body, timeout=10)
    assert response.status_code == 201, response.text


AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js"


def shoot(page, name: str):
    """The page at both sizes, for a person to look at; at each it fits the screen's
    width and axe-core finds nothing serious."""
    ARTIFACTS.mkdir(exist_ok=True)
    problems = []
    for (size, (width, height)), scheme in ((item, scheme) for item in SIZES.items() for scheme in ("light", "dark")):
        page.emulate_media(color_scheme=scheme)
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{size}{'-dark' if scheme == 'dark' else ''}.png"), full_page=True)
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        if scroll_width > width:
            problems.append(f"{size}: {scroll_width} px wide")
        page.evaluate(AXE.read_text())  # through the DevTools protocol: the page's CSP does not apply
        result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        problems += [f"{size} {scheme}: {v['id']} {v['nodes'][0]['target']}" for v in result["violations"]
                     if v["impact"] in ("serious", "critical")]
    page.set_viewport_size({"width": 1280, "height": 900})
    page.emulate_media(color_scheme="light")
    assert problems == [], name


def test_a_permission_prompt_appears_live_and_clears_on_the_next_tool_call(page, server):
    page.goto(server.url + "/needs-you")
    page.wait_for_selector("#needs-you-list-live[data-state=open]")
    page.wait_for_selector("#needs-you-live[data-state=open]")
    page.locator(".nobody-waiting").wait_for()
    assert page.get_attribute("#needs-you-badge", "data-count") == "0"
    hook(server, "UserPromptSubmit", "s-live", 30)
    hook(server, "PreToolUse", "s-live", 20, tool_use_id="toolu_live")
    hook(server, "PermissionRequest", "s-live", 12)
    hook(server, "Notification.permission_prompt", "s-live", 6)
    entry = page.locator("#waiting-s-live")
    entry.wait_for()  # no reload: the socket sends the list again
    assert "Permission asked: Bash: curl -s http://127.0.0.1:9/health" in entry.text_content()
    assert "billing-api" in entry.text_content()
    page.locator('#needs-you-badge[data-count="1"]').wait_for()
    shoot(page, "needs-you")
    hook(server, "PostToolUse", "s-live", 0, tool_use_id="toolu_live")
    entry.wait_for(state="detached")
    page.locator('#needs-you-badge[data-count="0"]').wait_for()
    page.locator(".nobody-waiting").wait_for()


def test_two_sessions_run_in_their_own_lanes_and_one_ends(page, server):
    hook(server, "SessionStart", "lane-a", 90)
    hook(server, "UserPromptSubmit", "lane-a", 80, prompt="paginate the users endpoint")
    hook(server, "PreToolUse", "lane-a", 5, tool_use_id="toolu_a1")
    hook(server, "SubagentStart", "lane-a", 3)
    hook(server, "PreToolUse.subagent", "lane-a", 2)
    hook(server, "SessionStart", "lane-b", 70)
    hook(server, "UserPromptSubmit", "lane-b", 60, prompt="now the orders endpoint")
    hook(server, "PreToolUse", "lane-b", 4, tool_use_id="toolu_b1",
         tool_input={"command": "pytest tests/test_orders.py"})
    page.goto(server.url + "/sessions")
    page.wait_for_selector("#session-lanes-live[data-state=open]")
    lanes = page.locator("#running-lanes > li.lane")
    assert lanes.count() == 2
    a, b = page.locator("#lane-lane-a"), page.locator("#lane-lane-b")
    assert a.get_attribute("data-state") == "tool" and b.get_attribute("data-state") == "tool"
    assert "Bash: echo hi" in a.text_content() and "paginate the users endpoint" in a.text_content()
    assert "Bash: pytest tests/test_orders.py" in b.text_content() and "now the orders endpoint" in b.text_content()
    assert a.locator(".subagent-lane").count() == 1
    shoot(page, "sessions")
    hook(server, "PostToolUse", "lane-b", 0, tool_use_id="toolu_b1")
    hook(server, "SessionEnd", "lane-b", 0)
    page.locator('#ended-lanes #lane-lane-b[data-state="ended"]').wait_for(state="attached")
    assert page.locator("#running-lanes > li.lane").count() == 1
    assert page.locator("#lane-lane-a").get_attribute("data-state") == "tool"
    page.click("#ended-lanes summary")
    page.locator("#lane-lane-b").wait_for()


def test_cost_shows_on_the_timeline_and_on_stats(page, server):
    index = json.loads((FIXTURES / "claude_code" / "session_otel" / "json.index.json").read_text())
    payloads = []
    for entry in index:
        body = json.loads((FIXTURES / "claude_code" / "session_otel" / "json" / entry["file"]).read_text())
        payloads.append({**body, "activityweb_occurred_at": entry["received_at"]})
    assert requests.post(server.url + HOOK, json=payloads, timeout=30).status_code == 201
    session_id, _ = main_session("json")
    page.goto(f"{server.url}/conversations/{session_id}")
    page.locator(".telemetry-needed").wait_for()  # hooks only, so far
    for meta, body in exports("json"):
        response = requests.post(server.url + "/api/v1/otlp" + meta["path"], data=body,
                                 headers={"Content-Type": meta["content_type"]}, timeout=10)
        assert response.status_code == 200, response.text
    page.goto(f"{server.url}/conversations/{session_id}")
    assert page.text_content("#conversation-usage .cost") == "$0.1276"
    assert page.locator("#timeline > li.turn").count() == 3
    first_turn = page.locator("#timeline > li.turn").first
    assert first_turn.locator('.model-share[data-model="claude-haiku-5-5"]').count() == 1
    shoot(page, "conversation-cost")
    page.goto(server.url + "/stats")
    assert page.text_content("#usage-total .cost") == "$0.1305"
    assert "claude-sonnet-5-5" in page.text_content("#usage-stats")
    shoot(page, "stats-cost")
    page.goto(server.url + "/conversations")
    assert "$0.1276" in page.text_content(".conversation-list")
    shoot(page, "conversations-cost")

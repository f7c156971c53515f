"""Making sense of the feed in a real browser (headless Chromium through
Playwright): a live conversation timeline, ..."""
import pytest
import requests

from claude_session import HOOK, SESSION, recorded_session

pytestmark = pytest.mark.browser


@pytest.fixture
def server(sqlite_local_app, serve):
    return serve(sqlite_local_app)


def hook(server, *payloads):
    response = requests.post(server.url + HOOK, json=list(payloads), timeout=10)
    assert response.status_code == 201, response.text


def test_a_claude_code_session_renders_as_a_timeline_and_grows_live(page, server):
    session = recorded_session()
    hook(server, *session[:-2])  # the Task call is still running, no reply yet
    page.goto(f"{server.url}/conversations/{SESSION}")
    page.wait_for_selector("#timeline-live[data-state=open]")
    kinds = page.eval_on_selector_all("#timeline > li.step", "els => els.map(e => e.dataset.kind)")
    assert kinds == ["session", "prompt", "tool", "tool", "tool"]
    bash, edit, task = page.locator("#timeline > li.step.kind-tool").all()
    assert "Bash: npm test" in bash.text_content() and "failed" in bash.get_attribute("class")
    assert bash.locator(".duration").first.text_content() == "4.2 s"
    assert edit.locator(".duration").first.text_content() == "31 ms"
    assert "running" in task.get_attribute("class")
    assert task.locator(".steps li.step.kind-subagent .steps li.step.kind-tool").count() == 1  # the subagent's grep

    hook(server, *session[-2:])  # the Task call returns, Claude replies
    page.locator("#timeline > li.step.kind-reply").wait_for()
    task = page.locator("#timeline > li.step.kind-tool").nth(2)
    assert "running" not in task.get_attribute("class")
    assert task.locator(".duration").first.text_content() == "8.5 s"
    assert page.locator("#conversation-summary .event-count").text_content() == "13 events"

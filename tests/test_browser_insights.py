"""Making sense of the feed in a real browser (headless Chromium through
Playwright): a live conversation timeline, the unread count, ..."""
import pytest
import requests

from claude_session import HOOK, SESSION, recorded_session
from conftest import event

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


def post(server, *events):
    response = requests.post(server.url + "/api/v1/activities", json=list(events), timeout=10)
    assert response.status_code == 201, response.text
    return [item["id"] for item in response.json()["items"]]


def unread_count(page):
    return page.get_attribute("#unread-count", "data-count")


def wait_for_count(page, expected):
    page.locator(f'#unread-count[data-count="{expected}"]').wait_for()


def test_the_unread_count_falls_when_read_and_rises_live(page, server):
    first, second, third = post(server, *[event(title=f"old {i}") for i in range(3)])
    page.goto(server.url + "/")
    page.wait_for_selector("#feed-live[data-state=open]")
    page.wait_for_selector("#unread-live[data-state=open]")
    assert unread_count(page) == "3" and page.locator("#feed-items li.event.unread").count() == 3

    page.click(f"#activity-{second} .mark-read")
    wait_for_count(page, 2)
    page.locator(f"#activity-{second}:not(.unread)").wait_for()  # htmx settles classes a moment after the swap
    assert page.locator(f"#activity-{second} .mark-read").count() == 0

    arrivals = post(server, event(title="new 1"), event(title="new 2"))
    wait_for_count(page, 4)  # risen live, in the header
    for arrival in arrivals:
        assert "unread" in page.get_attribute(f"#activity-{arrival}", "class")

    page.click("form.mark-all-read button")
    wait_for_count(page, 0)
    assert page.locator("#feed-items li.event.unread").count() == 0
    assert page.text_content("#unread-count .n") == "0"

    post(server, event(title="after marking"))
    page.goto(f"{server.url}/activities/{first}")  # other pages count live too
    page.wait_for_selector("#unread-live[data-state=open]")
    assert unread_count(page) == "1"
    post(server, event(title="while reading"))
    wait_for_count(page, 2)

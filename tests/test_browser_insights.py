"""Making sense of the feed in a real browser (headless Chromium through
Playwright): a live conversation timeline, the unread count, the stats charts."""
import re

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
    page.goto(server.url + "/")  # a first visit: what came before it is not unread
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


def bar_values(page, chart, series=None):
    selector = f"#{chart} rect.bar" + (f'[data-series="{series}"]' if series else "")
    return [int(v) for v in page.eval_on_selector_all(selector, "bars => bars.map(b => b.dataset.value)")]


def test_the_stats_page_draws_its_charts_for_a_filter(page, server, tmp_path):
    hours = [f"2026-11-20T{9 + i % 6:02d}:{i:02d}:00Z" for i in range(30)]
    post(server, *[event(title=f"Bash {i}", source="claude_code", type="claude.tool.completed", entity_type="tool",
                         entity_id="Bash", duration_ms=100 * (i + 1), status="failed" if i % 5 == 0 else "success",
                         project="billing", occurred_at=hours[i]) for i in range(20)],
         *[event(title=f"Push {i}", source="github", type="github.push", project="billing" if i < 6 else "web",
                 occurred_at=hours[20 + i]) for i in range(10)])
    page.goto(server.url + "/stats?project=billing&since=2026-11-20T00:00:00Z&until=2026-11-21T00:00:00Z")
    page.locator("#events-over-time rect.bar").first.wait_for()
    page.screenshot(path=str(tmp_path / "stats.png"), full_page=True)
    assert (tmp_path / "stats.png").stat().st_size > 10_000

    assert page.text_content("#stat-total") == "26"
    assert sum(bar_values(page, "events-over-time", "claude_code")) == 20
    assert sum(bar_values(page, "events-over-time", "github")) == 6
    assert sum(bar_values(page, "failures-over-time")) == 4
    assert page.get_attribute("#events-over-time", "data-total") == "26"
    box = page.locator("#events-over-time rect.bar").first.bounding_box()
    assert box["width"] > 1 and box["height"] > 1  # drawn, not just present
    assert page.locator("#tool-durations tr[data-tool=Bash]").get_attribute("data-p50") == "1050.0"
    assert page.text_content("#stat-failure-rate") == "20.0%"
    assert page.locator("#top-sources tr").count() == 2

    # The charts follow the filter form, and the URL keeps it.
    page.select_option("select[name=source]", "github")
    page.wait_for_url(re.compile(r"source=github"))
    page.locator("#stat-total", has_text="6").wait_for()
    assert bar_values(page, "events-over-time", "claude_code") == []
    assert sum(bar_values(page, "events-over-time", "github")) == 6
    assert page.locator("#failures-over-time").count() == 0  # nothing failed: nothing to draw

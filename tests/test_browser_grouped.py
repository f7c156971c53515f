"""The grouped feed in a real browser: a group shows its count and expands,
a live event joins its group, the "Group similar" toggle round-trips through
the URL, and the feed's "send a test event" appears live. Screenshots go to
tests/artifacts/ (1440x900 and 390x844)."""
from __future__ import annotations

import pytest

from activityweb.grouping import group_key
from conftest import event
from test_browser import open_feed, post, server  # noqa: F401 (fixture)
from test_browser_rules import shoot

pytestmark = pytest.mark.browser


def endpoint_added(i):
    return event(type="project.endpoint.added", title=f"Endpoint /v{i}/invoices added", actor_id="alice",
                 actor_name="Alice", entity_type="project", entity_id="billing-api", project="billing-api")


def test_a_group_shows_its_count_expands_and_a_live_event_joins_it(page, server):
    items = post(server, *[endpoint_added(i) for i in range(5)],
                 event(type="deployment.succeeded", title="billing-api deployed to production", actor_id="bob",
                       actor_name="Bob", project="billing-api", status="success"),
                 event(type="lead.created", title="New lead: Initech", actor_name="Sales bot"))
    key = group_key(items[0])
    open_feed(page, server, "/?group=day")
    summary = page.locator(f"#{key}-summary")
    assert "Alice added 5 endpoints to billing-api" in summary.text_content()
    assert summary.locator(".group-count").text_content().startswith("5")
    events = page.locator(f"#{key}-events li.event")
    assert events.count() == 5 and not events.first.is_visible()  # collapsed
    shoot(page, "feed-grouped")
    summary.click()
    events.first.wait_for(state="visible")
    assert all(events.nth(i).is_visible() for i in range(5))
    shoot(page, "feed-grouped-expanded")

    [joined] = post(server, endpoint_added(5))
    page.wait_for_selector(f"#{key}-summary >> text=Alice added 6 endpoints to billing-api")
    assert summary.locator(".group-count").text_content().startswith("6")
    page.wait_for_selector(f"#{key}-events li.event[data-id='{joined['id']}']")
    assert page.locator(f"#{key}-events li.event").count() == 6
    assert page.locator(f"#feed-items li.event[data-id='{joined['id']}']").count() == 1  # in its group only
    # The first of its kind today starts a group of its own, on top.
    [fresh] = post(server, event(type="system.note", title="Maintenance window tonight"))
    page.wait_for_selector(f"#feed-items > li#{group_key(fresh)}")
    assert page.eval_on_selector("#feed-items > li.event-group", "el => el.id") == group_key(fresh)


def test_the_group_toggle_stays_in_the_url(page, server):
    post(server, *[endpoint_added(i) for i in range(3)])
    open_feed(page, server, "/")
    assert page.locator("li.event-group").count() == 0
    page.check("input[name=group]")
    page.wait_for_url("**/?group=day")
    page.wait_for_selector("text=Alice added 3 endpoints to billing-api")
    page.reload()
    page.wait_for_selector("#feed-live[data-state=open]")
    assert page.is_checked("input[name=group]")
    assert page.locator("li.event-group").count() == 1
    page.go_back()
    page.wait_for_function("!location.search.includes('group=day')")
    page.wait_for_function("document.querySelectorAll('li.event-group').length === 0")
    assert not page.is_checked("input[name=group]")


def test_send_a_test_event_from_the_feed_appears_live(page, server):
    open_feed(page, server, "/")
    page.click("#send-test-event")
    page.wait_for_selector("#test-event-result")
    assert "published live in" in page.text_content("#test-event-result")
    page.wait_for_selector("#feed-items li.event >> text=Test event: the live path works")
    shoot(page, "feed-test-event")

"""The dashboard in a real browser: headless Chromium through Playwright."""
import re

import pytest
import requests

from conftest import event

pytestmark = pytest.mark.browser


@pytest.fixture
def server(sqlite_local_app, serve):
    return serve(sqlite_local_app)


def post(server, *events):
    response = requests.post(server.url + "/api/v1/activities", json=list(events), timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["items"]


def open_feed(page, server, path="/"):
    page.goto(server.url + path)
    page.wait_for_selector("#feed-live[data-state=open]")


def ids_on_page(page):
    return page.eval_on_selector_all("#feed-items li.event", "els => els.map(e => e.dataset.id)")


def test_filter_form_changes_url_and_feed_and_back_restores(page, server):
    post(server, event(title="Deploy one", type="deployment.succeeded"), event(title="Lead one", type="lead.replied"))
    open_feed(page, server)
    assert page.locator("text=Lead one").count() == 1
    page.fill("input[name=type]", "deployment.*")
    page.wait_for_url(re.compile(r"type=deployment\.\*"))
    page.wait_for_selector("text=Lead one", state="detached")
    assert page.locator("text=Deploy one").count() == 1
    assert "source=" not in page.url  # empty fields stay out of the shared URL
    # The socket follows the filter.
    page.wait_for_selector('#feed-live[ws-connect="/feed/ws?type=deployment.*"][data-state=open]')
    page.go_back()
    page.wait_for_selector("text=Lead one")
    assert "type=" not in page.url
    assert page.input_value("input[name=type]") == ""
    # A reload of a filtered URL shows the same filtered view.
    page.goto(server.url + "/?type=lead.*")
    assert page.input_value("input[name=type]") == "lead.*"
    assert page.locator("text=Deploy one").count() == 0 and page.locator("text=Lead one").count() == 1


def test_search_as_you_type(page, server):
    post(server, event(title="Bash: npm test"), event(title="Edit src/app.py"))
    open_feed(page, server)
    page.locator("input[name=q]").press_sequentially("app.p", delay=30)
    page.wait_for_url(re.compile(r"q=app\.p"))
    page.wait_for_selector("text=Bash: npm test", state="detached")
    assert page.locator("text=Edit src/app.py").count() == 1


def test_live_events_appear_when_they_match(page, server):
    open_feed(page, server, "/?type=deploy.*")
    post(server, event(title="Deployed billing", type="deploy.succeeded"), event(title="Unrelated lead", type="lead.new"))
    page.wait_for_selector("text=Deployed billing", timeout=2000)
    page.wait_for_timeout(500)
    assert page.locator("text=Unrelated lead").count() == 0
    assert page.locator("#feed-empty").count() == 0  # the empty state went away


def test_load_more_to_the_end_without_duplicates(page, server):
    post(server, *[event(title=f"Event {i}", occurred_at=f"2026-11-{1 + i % 20:02d}T{i % 24:02d}:00:00Z") for i in range(130)])
    open_feed(page, server)
    while page.locator("#load-more a").count():
        before = len(ids_on_page(page))
        page.click("#load-more a")
        # (wait_for_function would eval a string, which the page's CSP forbids)
        page.locator("#feed-items li.event").nth(before).wait_for()
    ids = ids_on_page(page)
    assert len(ids) == 130 and len(set(ids)) == 130
    assert page.locator("text=That’s everything").count() == 1


def test_markup_in_events_renders_as_text(page, server):
    evil = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
    open_feed(page, server)
    live = post(server, event(title=evil, summary=evil, actor_id="javascript:alert(1)", actor_name=evil,
                              data={"html": evil}))[0]
    page.wait_for_selector(f"#activity-{live['id']}")
    assert page.text_content(f"#activity-{live['id']} .event-title") == evil
    page.reload()
    page.wait_for_selector(f"#activity-{live['id']}")
    assert page.text_content(f"#activity-{live['id']} .event-title") == evil
    page.goto(f"{server.url}/activities/{live['id']}")
    assert evil in page.text_content("h1")
    assert page.locator("img[src=x]").count() == 0


def test_a_late_event_appears_live_and_load_more_does_not_repeat_it(page, server):
    post(server, *[event(title=f"Old {i}", occurred_at=f"2026-11-10T{i % 24:02d}:{i % 60:02d}:00Z") for i in range(60)])
    open_feed(page, server)
    late = post(server, event(title="Late arrival", occurred_at="2026-01-01T00:00:00Z"))[0]
    page.wait_for_selector(f"#activity-{late['id']}")
    assert ids_on_page(page)[0] == late["id"]  # live events go on top, whatever their time
    while page.locator("#load-more a").count():
        page.click("#load-more a")
        page.wait_for_timeout(300)
    assert page.locator(f"#activity-{late['id']}").count() == 1
    ids = ids_on_page(page)
    assert len(ids) == 61 and len(set(ids)) == 61


MARKUP = ['<script>alert("s")</script>', '"><img src=x onerror=alert("i")>', "javascript:alert('j')"]


def test_markup_in_every_field_is_inert_in_page_partial_socket_and_detail(page, server):
    """Every text field and `data` carry script, attribute-breaking and
    javascript: payloads; wherever the event is rendered, none runs (the page
    fixture fails the test on any dialog) and no link points at javascript:."""
    evil = " ".join(MARKUP)
    fields = dict(title=evil, summary=evil, actor_id=evil[:200], actor_name=evil[:200], entity_type="x" + evil[:99],
                  entity_id=evil[:200], entity_name=evil, project=evil[:200], environment=evil[:100],
                  request_id=evil[:200], conversation_id=evil[:200], session_id=evil[:200],
                  correlation_id=evil[:200], tags=['"><img/src=x/onerror=alert("t")>', "javascript:alert('t')"],
                  data={"html": evil, "nested": [{"url": "javascript:alert('d')"}]})
    first = post(server, event(**fields))[0]
    open_feed(page, server)  # the page
    live = post(server, event(**fields))[0]  # the WebSocket frame
    page.wait_for_selector(f"#activity-{live['id']}")
    for item in (first, live):
        assert page.text_content(f"#activity-{item['id']} .event-title") == evil
    page.fill("input[name=q]", "alert")  # the htmx partial
    page.wait_for_url(re.compile(r"q=alert"))
    page.wait_for_selector(f"#activity-{first['id']}")
    page.goto(f"{server.url}/activities/{live['id']}")  # the detail page
    assert evil in page.text_content("h1") and "javascript:alert('d')" in page.text_content("pre.data")
    for path in ("/", f"/activities/{live['id']}"):
        page.goto(server.url + path)
        assert page.locator('a[href^="javascript"], [onerror], script:not([src])').count() == 0
    page.wait_for_timeout(300)

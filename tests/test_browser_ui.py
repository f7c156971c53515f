"""The daily dashboard in a real browser (headless Chromium, a real server
on seeded demo data): phones, both themes, axe-core, one row per tool call,
keeping your place, live controls, unread, tokens, the keyboard.

Screenshots of every page at 1440x900 and 390x844, light and dark, are
saved under tests/artifacts/ (git-ignored) for a person to look at.
"""
import re
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from activityweb import auth, store
from activityweb.demo import demo_events
from activityweb.filters import ActivityFilter, ConversationQuery
from activityweb.models import utcnow
from activityweb.rules import manage
from conftest import event
from test_browser_sessions import hook

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe-core-4.14.1.min.js"
ARTIFACTS = Path(__file__).parent / "artifacts"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}


@pytest.fixture
def seeded(sqlite_local_app, serve):
    sqlite_local_app.config["RULES_EGRESS_ALLOW"] = ["127.0.0.1"]
    with sqlite_local_app.app_context():
        tenant = store.get_or_create_tenant("default")
        # Ending an hour ago: the demo's sessions run on past `now`, and a page should not open on the future.
        # Fewer than the replay limit (sockets.REPLAY_LIMIT): loaded within the replay overlap of the
        # first page, more would (rightly) have it say "many events arrived while this page was away".
        store.bulk_load(tenant.id, demo_events(450, days=3, seed=16, now=utcnow() - timedelta(hours=1)))
        conversation = store.list_conversations(tenant.id, ConversationQuery(), limit=1).items[0].id
        some_event = store.list_activities(tenant.id, ActivityFilter(), limit=1).items[0]["id"]
        channel, _ = manage.create_channel(tenant.id, {"name": "ops-hook", "kind": "webhook",
                                                       "target": "http://127.0.0.1:9/hook"})
        rule = manage.save_rule(tenant.id, {"name": "Deploys failing", "filter": "type=deployment.*&status=failed",
                                            "condition": "count", "threshold": 2, "window_seconds": 600,
                                            "channel_id": channel.id})
        rule_id, channel_id = rule.id, channel.id
    server = serve(sqlite_local_app)
    server.conversation, server.some_event = conversation, some_event
    server.rule, server.channel = rule_id, channel_id
    # A session waiting on a person (Needs you) and one running a tool (a lane on /sessions).
    hook(server, "UserPromptSubmit", "s-waiting", 30)
    hook(server, "PreToolUse", "s-waiting", 20, tool_use_id="toolu_waiting")
    hook(server, "Notification.permission_prompt", "s-waiting", 6)
    hook(server, "SessionStart", "s-running", 90)
    hook(server, "UserPromptSubmit", "s-running", 80, prompt="paginate the users endpoint")
    hook(server, "PreToolUse", "s-running", 5, tool_use_id="toolu_running")
    return server


@pytest.fixture
def open_page(browser):
    """`open_page(viewport, scheme)`: a fresh page that fails the test on a dialog or a script error."""
    contexts, problems = [], []

    def make(viewport=DESKTOP, scheme="light", **options):
        context = browser.new_context(viewport=viewport, color_scheme=scheme, **options)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", lambda dialog: (problems.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.set_default_timeout(8000)
        return page

    yield make
    for context in contexts:
        context.close()
    assert not problems, problems


def post(server, *events, headers=None):
    response = requests.post(server.url + "/api/v1/activities", json=list(events), headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["items"]


def live(page):
    page.wait_for_selector("#feed-live[data-state=open]")


def pages(server):
    """Every page, and what its first content is (the thing a person came for)."""
    return {
        "feed": ("/", "#feed-items .event"),
        "feed-filtered": ("/?type=-claude.tool.started&range=7d", "#feed-items .event"),
        "feed-search": ("/?q=deploy", "#feed-items .event"),
        "conversations": ("/conversations", ".conversation-item"),
        "conversation": (f"/conversations/{server.conversation}", "#timeline .step"),
        "activity": (f"/activities/{server.some_event}", ".detail h1"),
        "stats": ("/stats", ".stat-card"),
        "tokens": ("/settings/tokens", ".tokens"),
        "needs-you": ("/needs-you", "#waiting-s-waiting"),
        "sessions": ("/sessions", "#running-lanes > li.lane"),
        "rules": ("/settings/rules", "#new-rule"),
        "rule": (f"/settings/rules/{server.rule}", "h1"),
        "channel": (f"/settings/rules/channels/{server.channel}", "h1"),
        "login": ("/login", "form.stacked-form"),
    }


def axe_serious(page) -> list[str]:
    page.evaluate(AXE.read_text())  # through the DevTools protocol: the page's CSP does not apply
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {len(v['nodes'])} e.g. {v['nodes'][0]['target']} {v['nodes'][0].get('failureSummary', '')[:200]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_a_phone_passes_axe_and_is_photographed(seeded, open_page, scheme):
    ARTIFACTS.mkdir(exist_ok=True)
    failures = []
    for viewport in (PHONE, DESKTOP):
        page = open_page(viewport, scheme)
        for name, (path, first) in pages(seeded).items():
            page.goto(seeded.url + path)
            page.wait_for_selector(first)
            page.wait_for_timeout(150)  # the live sockets say hello, relative times refresh
            size = f"{viewport['width']}x{viewport['height']}"
            page.screenshot(path=str(ARTIFACTS / f"{name}-{size}-{scheme}.png"))
            if viewport is PHONE:
                width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
                if width[0] > width[1]:
                    failures.append(f"{name} {scheme}: {width[0]} px wide on a {width[1]} px screen")
                box = page.locator(first).first.bounding_box()
                if not box or box["y"] + min(box["height"], 40) > viewport["height"]:
                    failures.append(f"{name} {scheme}: the first content starts at {box and box['y']} px")
            landmarks = page.evaluate("[document.querySelectorAll('h1').length, !!document.querySelector('main'),"
                                      " !!document.querySelector('header nav'), !!document.querySelector('a.skip-link')]")
            if landmarks != [1, True, True, True]:
                failures.append(f"{name}: h1 count, main, nav, skip link = {landmarks}")
            failures += [f"{name} {size} {scheme}: {v}" for v in axe_serious(page)]
    assert failures == []


def test_every_page_fits_the_narrowest_phone(seeded, open_page):
    """The layout holds from 360 px up (what scrolls sideways inside its panel, a chart or a row of actions, may)."""
    page = open_page({"width": 360, "height": 740})
    wide = {}
    for name, (path, first) in pages(seeded).items():
        page.goto(seeded.url + path)
        page.wait_for_selector(first)
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > 360:
            wide[name] = width
    assert wide == {}


def test_the_theme_follows_the_system_and_the_toggle_is_remembered(seeded, open_page):
    page = open_page(DESKTOP, "dark")
    page.goto(seeded.url + "/")
    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    assert page.get_attribute(".theme-toggle", "aria-pressed") == "true"
    page.click(".theme-toggle")
    assert page.get_attribute("html", "data-theme") == "light"
    assert page.evaluate("getComputedStyle(document.documentElement).backgroundColor") != background
    page.reload()
    assert page.get_attribute("html", "data-theme") == "light"
    assert page.get_attribute(".theme-toggle", "aria-pressed") == "false"


def test_phone_header_is_a_menu_and_filters_a_drawer_with_a_count(seeded, open_page):
    page = open_page(PHONE)
    page.goto(seeded.url + "/?status=failed&range=7d")
    assert not page.is_visible(".nav")
    page.click(".menu-toggle")
    assert page.is_visible(".nav") and page.is_visible(".theme-toggle")
    assert page.text_content(".filters-toggle .filter-count") == "2"
    assert not page.is_visible("select[name=priority]")
    page.click(".filters-toggle")
    assert page.is_visible("select[name=priority]")


def test_a_tool_call_is_one_row_that_turns_from_running_to_done_live(seeded, open_page):
    page = open_page()
    page.goto(seeded.url + "/")
    live(page)
    call = dict(entity_type="tool", entity_id="Bash", correlation_id="toolu_live_1", source="claude_code")
    [start] = post(seeded, event(type="claude.tool.started", title="Bash: pytest -x", status="started", **call))
    row = page.locator(f"li.event[data-id='{start['id']}']")
    row.locator(".status-running").wait_for()
    row_id = row.get_attribute("id")
    assert row_id.startswith("call-")
    [done] = post(seeded, event(type="claude.tool.completed", title="Bash: pytest -x", status="success",
                                duration_ms=2300, **call))
    page.locator(f"#{row_id}[data-id='{done['id']}'] .status-success").wait_for()
    assert page.locator(f"#{row_id}").count() == 1
    assert page.locator(f"#{row_id} .status-running").count() == 0
    assert "2.3 s" in page.text_content(f"#{row_id}")
    assert page.locator(f"#feed-items li.event[data-id='{start['id']}']").count() == 0  # one row, not two


def test_a_tool_call_arriving_live_adds_one_unread_row(seeded, open_page):
    page = open_page()
    page.goto(seeded.url + "/")  # a first visit: unread counts from here
    live(page)
    page.wait_for_selector("#unread-live[data-state=open]")
    assert page.get_attribute("#unread-count", "data-count") == "0"

    def call(call_id, status):
        return event(type="claude.tool.started" if status == "started" else "claude.tool.completed",
                     title="Bash: make", status=status, entity_type="tool", entity_id="Bash",
                     correlation_id=call_id, source="claude_code")

    def changes_to(expected, before):
        page.wait_for_selector(f"#unread-count:not([data-count='{before}'])")
        assert page.get_attribute("#unread-count", "data-count") == expected

    post(seeded, call("toolu_unread_1", "started"))
    changes_to("1", "0")
    # The outcome and a deploy in one batch: the call's row is counted already, the deploy is new.
    post(seeded, call("toolu_unread_1", "success"), event(title="a deploy"))
    changes_to("2", "1")
    # A running call the page was rendered with: the server's count names it, its outcome adds nothing.
    post(seeded, call("toolu_unread_2", "started"))
    changes_to("3", "2")
    page.reload()
    live(page)
    page.wait_for_selector("#unread-live[data-state=open]")
    assert page.get_attribute("#unread-count", "data-count") == "3"
    assert page.get_attribute("#unread-count", "data-running-calls").startswith("call-")
    post(seeded, call("toolu_unread_2", "success"), event(title="another deploy"))
    changes_to("4", "3")
    assert page.title().startswith("(4) ")


def test_back_after_loading_three_pages_shows_three_pages(seeded, open_page):
    page = open_page()
    page.goto(seeded.url + "/?type=-claude.tool.started")
    live(page)
    for expected in (2, 3):
        before = page.locator("#feed-items li.event").count()
        page.click("#load-more a")
        page.locator("#feed-items li.event").nth(before).wait_for()
        page.wait_for_url(re.compile(f"depth={expected}"))
    loaded = page.locator("#feed-items li.event").count()
    last = page.locator("#feed-items li.event .event-title").last
    last.scroll_into_view_if_needed()
    last.click()
    page.wait_for_selector(".detail h1")
    page.go_back()
    page.wait_for_selector("#feed-items li.event")
    assert page.locator("#feed-items li.event").count() == loaded
    assert page.evaluate("window.scrollY") > 1000  # and the place on it


def test_new_pill_while_scrolled_down_pause_holds_and_resume_shows_each_once(seeded, open_page):
    page = open_page()
    page.goto(seeded.url + "/")
    live(page)
    page.evaluate("window.scrollTo(0, 3000)")
    arrived = post(seeded, *[event(title=f"while away {i}") for i in range(3)])
    page.wait_for_selector("#new-pill:not([hidden])")
    page.locator("#new-pill", has_text="3 new").wait_for()
    page.wait_for_selector("#live-announcer:has-text('3 new events')")
    page.click("#new-pill")
    page.wait_for_selector("#new-pill[hidden]", state="attached")
    assert page.evaluate("window.scrollY") < 400
    page.click(".live-pause")
    held = post(seeded, event(title="held one"), event(title="held two"))
    page.locator(".live-pause", has_text="Resume (2 new)").wait_for()
    for item in held:
        assert page.locator(f"#activity-{item['id']}").is_hidden()
    page.click(".live-pause")
    for item in held + arrived:
        page.locator(f"#activity-{item['id']}").wait_for()
        assert page.locator(f"#activity-{item['id']}").count() == 1
    assert page.locator(".live-pause", has_text="Pause").count() == 1


def test_a_new_person_sees_nothing_unread_until_something_arrives(sqlite_app, serve, open_page):
    with sqlite_app.app_context():
        tenant = store.get_or_create_tenant("acme")
        store.bulk_load(tenant.id, demo_events(300, days=2, seed=3, now=utcnow() - timedelta(hours=1)))
        auth.create_user("new@example.com", "correct horse battery", tenant, "viewer")
        _, secret = auth.create_token(tenant, "producer", ["ingest"])
    server = serve(sqlite_app)
    page = open_page()
    page.goto(server.url + "/login")
    page.fill("input[name=email]", "new@example.com")
    page.fill("input[name=password]", "correct horse battery")
    page.click("form.stacked-form button[type=submit]")
    page.wait_for_selector("#unread-live[data-state=open]")
    assert page.get_attribute("#unread-count", "data-count") == "0"
    assert page.locator("#feed-items li.event.unread").count() == 0
    assert not page.title().startswith("(")
    post(server, event(title="news"), headers={"Authorization": f"Bearer {secret}"})
    page.wait_for_selector("#unread-count[data-count='1']")
    assert page.title().startswith("(1) ")


def test_the_token_page_makes_one_token_however_often_it_is_reloaded(seeded, open_page):
    page = open_page(DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    page.goto(seeded.url + "/settings/tokens")
    page.fill("input[name=name]", "deploy bot")
    page.click("form.inline-form button[type=submit]")
    secret = page.text_content("#new-token-secret").strip()
    assert secret.startswith("aw_")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "tokens-created-1440x900-light.png"))
    page.click("[data-copy=new-token-secret]")
    page.locator("[data-copy=new-token-secret]", has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    for _ in range(3):
        page.reload()
        assert page.locator("tr[id^=token-]").count() == 1 and page.locator("#new-token-secret").count() == 0
    page.click("details.revoke summary")
    page.screenshot(path=str(ARTIFACTS / "tokens-revoke-1440x900-light.png"))
    page.click("details.revoke button.danger")
    page.wait_for_selector("tr.revoked")


def test_the_keyboard_reaches_the_first_event_in_three_tabs_and_loads_more_with_one_key(seeded, open_page):
    page = open_page()
    page.goto(seeded.url + "/")
    live(page)
    first = page.get_attribute("#feed-items li.event .event-title", "href")
    tabs = 0
    while tabs < 3:
        page.keyboard.press("Tab")
        tabs += 1
        if page.evaluate("document.activeElement.classList.contains('skip-link')"):
            page.keyboard.press("Enter")
        elif page.evaluate("document.activeElement.getAttribute('href')") == first:
            break
    assert page.evaluate("document.activeElement.getAttribute('href')") == first, f"not there in {tabs} Tabs"
    before = page.locator("#feed-items li.event").count()
    page.keyboard.press("m")
    page.locator("#feed-items li.event").nth(before).wait_for()
    # Focus went to the first new row, not the top of the page.
    focused_row = page.evaluate("document.activeElement.closest('li') && document.activeElement.closest('li').id")
    new_first = page.locator("#feed-items li.event").nth(before).get_attribute("id")
    assert focused_row == new_first
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.closest('li').id") != new_first
    page.keyboard.press("?")
    assert page.is_visible("#shortcuts-help")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "shortcuts-1440x900-light.png"))
    page.keyboard.press("Escape")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.name") == "q"


def test_a_filter_typed_while_offline_is_applied_when_the_socket_returns(seeded, open_page):
    page = open_page()
    page.goto(seeded.url + "/")
    live(page)

    def while_down():
        page.fill("input[name=q]", "deploy")
        page.wait_for_selector("#filter-pending:not([hidden])")

    seeded.restart(while_down)
    page.wait_for_url(re.compile(r"q=deploy"), timeout=15000)
    page.wait_for_selector("#filter-pending[hidden]", state="attached")
    page.wait_for_selector('#feed-live[ws-connect*="q=deploy"][data-state=open]')


def test_a_timeline_at_its_end_follows_new_steps_and_keeps_open_details_open(seeded, open_page):
    page = open_page(PHONE)
    page.goto(f"{seeded.url}/conversations/{seeded.conversation}")
    page.wait_for_selector("#timeline-live[data-state=open]")
    opened = page.locator("#timeline details.step-detail").first
    opened_id = opened.get_attribute("id")
    opened.locator("summary").click()
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    steps = page.locator("#timeline .step").count()
    [new] = post(seeded, event(title="Bash: make deploy", type="claude.notification", source="claude_code",
                               conversation_id=seeded.conversation, sequence=10**15))
    page.locator(f"#step-{new['id']}").wait_for()
    assert page.locator("#timeline .step").count() == steps + 1
    page.wait_for_selector("#live-announcer:has-text('1 new step')")
    assert page.evaluate("window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80")
    assert page.locator(f"#{opened_id}").get_attribute("open") is not None


def test_on_a_wide_screen_the_filter_fields_fold_and_stay_folded(seeded, open_page):
    page = open_page()
    page.goto(seeded.url + "/?priority=high")
    assert page.is_visible("select[name=priority]") and page.get_attribute(".filters-toggle", "aria-expanded") == "true"
    page.keyboard.press("f")
    assert not page.is_visible("select[name=priority]")
    page.reload()
    assert not page.is_visible("select[name=priority]") and page.get_attribute(".filters-toggle", "aria-expanded") == "false"
    assert page.text_content(".filters-toggle .filter-count") == "1"
    page.click(".filters-toggle")
    assert page.is_visible("select[name=priority]")

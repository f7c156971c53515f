"""Rules in a real browser: create one in the UI and fire it, see the firing in
the channel's delivery log, and "send a test event" appearing live in the feed.
Screenshots of the pages go to tests/artifacts/ (1440x900 and 390x844)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from activityweb.rules.worker import Worker
from conftest import event, make_app, teardown_app
from receiver import Receiver

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
SIZES = {"desktop": (1440, 900), "phone": (390, 844)}


@pytest.fixture
def rules_server(tmp_path, request, serve):
    app = make_app("sqlite", tmp_path, request, LOCAL_MODE=True, RULES_EGRESS_ALLOW=["127.0.0.1"])
    worker = Worker(app, poll_seconds=0.1).start()
    receiver = Receiver()
    yield serve(app), receiver
    worker.stop()
    receiver.stop()
    teardown_app(app)


def shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for label, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_create_a_rule_in_the_ui_fire_it_and_see_the_delivery(page, rules_server):
    server, receiver = rules_server
    page.goto(server.url + "/settings/rules")
    shoot(page, "rules-empty")
    page.fill("#new-channel input[name=name]", "ops-hook")
    page.fill("#new-channel input[name=target]", receiver.url)
    page.click("#new-channel button[type=submit]")
    secret = page.text_content("#new-channel-secret")
    assert secret.startswith("whsec_")
    page.goto(server.url + "/settings/rules")
    page.fill("#new-rule input[name=name]", "Deploys failing")
    page.fill("#new-rule input[name=filter]", "type=deployment.*&status=failed")
    page.select_option("#rule-condition", "count")
    page.fill("#new-rule input[name=threshold]", "2")
    page.fill("#new-rule input[name=window_minutes]", "10")
    page.fill("#new-rule input[name=cooldown_minutes]", "30")
    page.select_option("#new-rule select[name=channel_id]", label="ops-hook (webhook)")
    page.click("#new-rule button[type=submit]")
    page.wait_for_selector("text=at least 2 matches in 10 minutes; quiet 30 minutes after firing")
    rule_url = page.url

    for title in ("billing-api deploy failed", "search deploy failed"):
        response = requests.post(server.url + "/api/v1/activities",
                                 json=event(type="deployment.failed", status="failed", title=title), timeout=10)
        assert response.status_code == 201
    [delivery] = receiver.wait(1)
    assert delivery["headers"]["webhook-id"].startswith("msg_")

    # The receiver has answered; the worker records "delivered" just after. The
    # page is not live, so look again as a person would, for a few seconds.
    deadline = time.monotonic() + 10
    page.goto(rule_url)
    while not page.locator("#firings .delivery-delivered").count() and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        page.goto(rule_url)
    page.wait_for_selector("#firings .delivery-delivered")
    assert page.locator("#firings").get_by_text("2 matching events in 10 minutes").count() == 1
    shoot(page, "rule-firings")
    page.click("text=ops-hook")
    page.wait_for_selector("#delivery-log tr.ok")
    assert delivery["headers"]["webhook-id"] in page.text_content("#delivery-log")
    page.click("#test-channel")
    page.wait_for_selector("#channel-test-result.ok")
    assert "HTTP 200" in page.text_content("#channel-test-result")
    shoot(page, "channel-log")
    page.goto(server.url + "/settings/rules")
    shoot(page, "rules")


def test_send_a_test_event_appears_live(page, browser, rules_server):
    server, _ = rules_server
    page.goto(server.url + "/")
    page.wait_for_selector("#feed-live[data-state=open]")
    settings = browser.new_page()
    try:
        settings.goto(server.url + "/settings/rules")
        settings.click("#send-test-event")
        settings.wait_for_selector("#test-event-result")
        assert "published live in" in settings.text_content("#test-event-result")
    finally:
        settings.close()
    page.wait_for_selector("#feed-items li.event >> text=Test event: the live path works")

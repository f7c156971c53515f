"""The dashboard's live socket in a real browser: resume exactly, reset, reconnect after 1012."""
import re
from datetime import datetime, timezone

import pytest

from activityweb import store
from activityweb.schemas import ActivityIn
from conftest import event
from test_browser import post, server  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser


def record_frames(page) -> list[str]:
    """Every message the page's sockets receive, as text."""
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(
        payload if isinstance(payload, str) else payload.decode())))
    return frames


def sent_ids(frames) -> list[str]:
    return [i for f in frames for i in re.findall(r'<li id="activity-([0-9a-f-]{36})"', f)]


def test_events_posted_while_the_server_restarts_all_arrive_once(page, server, sqlite_local_app):
    """The socket closes with 1012 and the page reconnects with its position.
    Each event is shown once, and sent once: the page would hide a repeat by
    its id, so the frames are counted too."""
    frames = record_frames(page)
    page.goto(server.url + "/")
    page.wait_for_selector("#feed-live[data-state=open]")
    before = post(server, event(title="before restart"))[0]
    page.wait_for_selector(f"#activity-{before['id']}")
    stored = []

    def while_down():
        with sqlite_local_app.app_context():
            tenant = store.get_or_create_tenant("default")
            events = [ActivityIn.model_validate(event(title=f"while down {i}")).model_dump() for i in range(3)]
            stored.extend(r.activity for r in store.add_activities(tenant.id, events))

    server.restart(while_down)  # the socket closes with 1012; the extension reconnects
    after = post(server, event(title="after restart"))[0]
    for item in stored + [after]:
        page.wait_for_selector(f"#activity-{item['id']}", timeout=15000)
    page.wait_for_timeout(500)
    for item in [before, *stored, after]:
        assert page.locator(f"#activity-{item['id']}").count() == 1
    assert sorted(sent_ids(frames)) == sorted(i["id"] for i in [before, *stored, after])


def test_a_page_too_far_behind_reloads_its_feed(page, server, sqlite_local_app):
    page.goto(server.url + "/")
    page.wait_for_selector("#feed-live[data-state=open]")
    stale = page.get_attribute("#feed-live", "data-since")
    page.evaluate("document.getElementById('feed-live').dataset.marker = 'old page'")

    def while_down():  # 10,001 events arrive while the page is away
        with sqlite_local_app.app_context():
            tenant = store.get_or_create_tenant("default").id
            now = datetime.now(timezone.utc)
            fields = dict.fromkeys(ActivityIn.model_fields)
            store.bulk_load(tenant, ({**fields, "type": "bulk.loaded", "title": f"bulk {n}", "source": "api",
                                      "source_id": f"bulk-{n}", "priority": "normal", "tags": [], "data": {},
                                      "occurred_at": now} for n in range(10_001)))
            store.release()

    server.restart(while_down)  # it reconnects with its stale position: over 10,000 behind
    page.wait_for_selector("#feed-live[data-marker]", state="detached", timeout=15000)
    page.wait_for_selector("#feed-live[data-state=open]", timeout=15000)
    assert page.get_attribute("#feed-live", "data-since") != stale
    assert page.locator("#feed-items li.event").count() > 0  # the reloaded feed shows the new events
    # The header's unread socket was as far behind: it gets a fresh count (capped) with its fresh position.
    page.locator("#unread-count:not([data-count='0'])").wait_for(timeout=15000)
    assert int(page.get_attribute("#unread-count", "data-count")) >= 1000

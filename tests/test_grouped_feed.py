"""The grouped feed (`?group=day`): similar events of a day in one row, the option kept in the URL."""
import re


from activityweb import store
from activityweb.auth import local_principal
from activityweb.filters import ActivityFilter
from activityweb.grouping import group_key
from activityweb.web.grouped import grouped_live_message
from conftest import csrf_from, event, sign_in
from test_web import post, web  # noqa: F401  (web is a fixture)




def endpoint_added(i, **fields):
    return event(type="project.endpoint.added", title=f"Endpoint /v{i} added", actor_id="alice", actor_name="Alice",
                 entity_type="project", entity_id="billing-api", **fields)


def test_similar_events_of_a_day_are_one_group_with_its_count(web):
    items = post(web, *[endpoint_added(i) for i in range(5)], event(title="Something else", actor_id="bob"))
    html = web.get("/?group=day").get_data(as_text=True)
    key = group_key(items[0] | {"occurred_at": items[0]["occurred_at"]})
    group = re.search(rf'<li id="{key}" class="event-group".*?</li>\s*</ol>', html, re.S).group(0)
    assert "Alice added 5 endpoints to billing-api" in group
    assert re.search(r'class="group-count"[^>]*>5<', group)
    assert sorted(re.findall(r'data-id="([0-9a-f-]{36})"', group)) == sorted(
        [i["id"] for i in items[:5]] + [items[4]["id"]])  # the group's own data-id is its newest event's
    assert "<details>" in group  # collapsed until opened
    assert 'class="day-header"' in html and "Today" in html
    # The lone event is a group of one, shown open with no summary to click.
    assert re.search(r'<details open>\s*<summary id="g-[0-9]{8}-[0-9a-f]+-summary" class="group-summary single"', html)
    # Without the option the feed is as it was.
    plain = web.get("/").get_data(as_text=True)
    assert "event-group" not in plain and "Alice added 5" not in plain


def test_the_group_option_round_trips_through_the_url(web):
    post(web, *[endpoint_added(i, source_id=f"e{i}") for i in range(55)])
    html = web.get("/?group=day&actor=alice").get_data(as_text=True)
    assert re.search(r'<input type="checkbox" name="group" value="day" checked>', html)
    assert 'ws-connect="/feed/ws?actor=alice&amp;group=day"' in html
    more = re.search(r'id="load-more".*?href="([^"]+)"', html, re.S).group(1).replace("&amp;", "&")
    assert "group=day" in more and "actor=alice" in more
    response = web.get(more, headers={"HX-Request": "true"})
    assert "group=day" in response.headers["HX-Replace-Url"]
    page = response.get_data(as_text=True)
    assert "Alice added 5 endpoints" in page  # the rest of the day's group, on the second page
    assert 'class="day-header"' not in page  # the day goes on: no second header
    unchecked = web.get("/?actor=alice").get_data(as_text=True)
    assert re.search(r'<input type="checkbox" name="group" value="day">', unchecked)
    assert "group=day" not in unchecked
    # Anything but "day" is no grouping, and no error.
    assert "event-group" not in web.get("/?group=week").get_data(as_text=True)


def test_a_live_event_joins_its_group_or_starts_one(local_app, web):
    items = post(web, *[endpoint_added(i) for i in range(3)])
    with local_app.app_context():
        tenant = local_principal().tenant_id
        [joining] = [store.get_activity(tenant, post(web, endpoint_added(9))[0]["id"])]
        [fresh] = [store.get_activity(tenant, post(web, event(title="First of its kind", type="x.y"))[0]["id"])]
        with local_app.test_request_context("/"):
            joined = grouped_live_message([joining], tenant, ActivityFilter())
            started = grouped_live_message([fresh], tenant, ActivityFilter())
            other_filter = grouped_live_message([joining], tenant, ActivityFilter(type=("x.y",)))
    key = group_key(joining)
    assert key == group_key(items[0] | {"occurred_at": joining["occurred_at"]})
    assert f'hx-swap-oob="afterbegin:#{key}-events"' in joined and joining["id"] in joined
    summary = re.search(rf'<summary id="{key}-summary".*?</summary>', joined, re.S).group(0)
    assert 'hx-swap-oob="true"' in summary and "Alice added 4 endpoints" in summary and ">4<" in summary
    assert "#feed-items" not in joined
    assert 'hx-swap-oob="afterbegin:#feed-items"' in started and f'id="{group_key(fresh)}"' in started
    assert "-events\"" not in started.split("#feed-items")[0]
    # The count is of what the page's filter shows.
    assert "#feed-items" in other_filter


def test_send_a_test_event_is_on_the_feed_for_whoever_may_ingest(web):
    html = web.get("/").get_data(as_text=True)
    assert 'id="send-test-event"' in html
    response = web.post("/settings/rules/test-event", data={"csrf_token": csrf_from(html)})
    assert response.status_code == 200 and "Test event stored" in response.get_data(as_text=True)


def test_a_viewer_has_no_test_event_button_and_may_not_send_one(client, make_user):
    make_user("viewer@example.com", "acme", "viewer")
    sign_in(client, "viewer@example.com")
    html = client.get("/").get_data(as_text=True)
    assert 'id="feed-items"' in html and 'id="send-test-event"' not in html
    assert client.post("/settings/rules/test-event", data={"csrf_token": csrf_from(html)}).status_code == 403

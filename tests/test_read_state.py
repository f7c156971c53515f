"""Unread, per person: each user (or token) has a "read up to" cursor and
single read marks; nobody's reading changes what anyone else sees."""
import re

import pytest
import sqlalchemy as sa

from activityweb.extensions import db
from activityweb.models import ReadMark
from conftest import csrf_from, event, sign_in

A = "/api/v1/activities"


def post(client, headers, *events):
    response = client.post(A, json=list(events), headers=headers)
    assert response.status_code == 201, response.get_json()
    return [item["id"] for item in response.get_json()["items"]]


def titles(client, headers, query=""):
    return sorted(a["title"] for a in client.get(f"{A}?limit=200&{query}", headers=headers).get_json()["items"])


def unread_count(client, headers):
    return client.post(f"{A}/read-all?type=no.such.*", headers=headers).get_json()["unread_count"]


@pytest.fixture
def alice(make_token):
    return make_token("acme", "ingest,read")


@pytest.fixture
def bob(make_token):
    return make_token("acme", "read")


def test_marking_one_read_is_the_callers_own(client, alice, bob):
    first, second = post(client, alice, event(title="one"), event(title="two"))
    answer = client.patch(f"{A}/{first}/read", headers=alice)
    assert answer.status_code == 200 and answer.get_json() == {"id": first, "read": True, "unread_count": 1}
    assert client.patch(f"{A}/{first}/read", headers=alice).get_json()["unread_count"] == 1  # idempotent
    assert titles(client, alice, "read=false") == ["two"] and titles(client, alice, "read=true") == ["one"]
    assert titles(client, bob, "read=false") == ["one", "two"] and titles(client, bob, "read=true") == []
    assert titles(client, alice) == ["one", "two"]  # without the filter nothing is hidden


def test_read_state_never_crosses_tenants(client, alice, make_token):
    other = make_token("globex", "ingest,read")
    [theirs] = post(client, other, event(title="globex event"))
    [ours] = post(client, alice, event(title="acme event"))
    assert client.patch(f"{A}/{theirs}/read", headers=alice).status_code == 404
    assert client.patch(f"{A}/{ours}/read", headers=other).status_code == 404
    assert client.post(f"{A}/read-all", headers=alice).get_json() == {"unread_count": 0}
    assert titles(client, other, "read=false") == ["globex event"]
    assert client.patch(f"{A}/not-an-id/read", headers=alice).status_code == 404


def test_read_all_with_a_filter_marks_only_what_it_matches(client, alice):
    post(client, alice, event(title="deploy failed", type="deploy.failed", status="failed"),
         event(title="deploy ok", type="deploy.succeeded"), event(title="lead", type="lead.new"))
    answer = client.post(f"{A}/read-all?type=deploy.*&status=failed", headers=alice)
    assert answer.status_code == 200 and answer.get_json() == {"unread_count": 2}
    assert titles(client, alice, "read=false") == ["deploy ok", "lead"]
    assert titles(client, alice, "read=false&type=deploy.*") == ["deploy ok"]


def test_read_all_stops_at_up_to_so_later_events_stay_unread(client, alice):
    older = post(client, alice, event(title="seen 1"), event(title="seen 2"))
    post(client, alice, event(title="arrived after"))
    assert client.post(f"{A}/read-all?up_to={older[-1]}", headers=alice).get_json() == {"unread_count": 1}
    assert titles(client, alice, "read=false") == ["arrived after"]
    assert client.post(f"{A}/read-all?up_to=yesterday", headers=alice).status_code == 400


def test_the_cursor_moves_forward_only_and_drops_the_marks_it_covers(app, client, alice):
    ids = post(client, alice, *[event(title=f"e{i}") for i in range(4)])
    client.patch(f"{A}/{ids[3]}/read", headers=alice)
    client.patch(f"{A}/{ids[1]}/read", headers=alice)
    client.post(f"{A}/read-all?up_to={ids[2]}", headers=alice)  # covers e0..e2; e3 stays marked
    with app.app_context():
        assert db.session.execute(sa.select(ReadMark.activity_id)).scalars().all() == [ids[3]]
    client.post(f"{A}/read-all?up_to={ids[0]}", headers=alice)  # an older point does not unread anything
    assert unread_count(client, alice) == 0
    [new] = post(client, alice, event(title="new"))
    assert titles(client, alice, "read=false") == ["new"] and unread_count(client, alice) == 1


def test_the_unread_count_stops_at_its_cap(client, alice, monkeypatch):
    from activityweb import store

    monkeypatch.setattr(store.reading, "UNREAD_COUNT_CAP", 3)  # where unread_count reads it
    post(client, alice, *[event(title=f"e{i}") for i in range(6)])
    assert unread_count(client, alice) == 4  # "3+"


def test_read_is_a_filter_like_the_others(client, alice):
    assert client.get(f"{A}?read=maybe", headers=alice).status_code == 400
    post(client, alice, event(title="x"))
    assert client.get(f"{A}?read=false&limit=1", headers=alice).get_json()["items"][0]["title"] == "x"


def test_live_matching_treats_arrivals_as_unread():
    from datetime import datetime, timezone

    from activityweb.filters import ActivityFilter

    arrival = {"type": "a.b", "source": "api", "occurred_at": datetime.now(timezone.utc), "tags": []}
    assert ActivityFilter(read=False).matches(arrival) and not ActivityFilter(read=True).matches(arrival)


def test_read_state_answers_match_the_document(client, alice):
    from test_openapi import check

    [one] = post(client, alice, event())
    spec = client.get("/api/v1/openapi.json").get_json()
    check(spec, client.patch(f"{A}/{one}/read", headers=alice), "/api/v1/activities/{activity_id}/read", "patch")
    check(spec, client.patch(f"{A}/nope/read", headers=alice), "/api/v1/activities/{activity_id}/read", "patch")
    check(spec, client.post(f"{A}/read-all?status=x", headers=alice), "/api/v1/activities/read-all", "post")
    check(spec, client.post(f"{A}/read-all?read=no", headers=alice), "/api/v1/activities/read-all", "post")


# ------------------------------------------------------------- dashboard


def unread_on_page(html):
    return re.findall(r'class="event [^"]*\bunread\b[^"]*" data-id="([0-9a-f-]{36})"', html)


def header_count(html):
    return int(re.search(r'data-count="(\d+)"', html).group(1))


def test_each_user_reads_for_themselves(app, client, make_user, make_token):
    make_user("ada@example.com", "acme")
    make_user("bea@example.com", "acme")
    make_user("ada@example.com", "globex")
    bea = app.test_client()
    sign_in(client, "ada@example.com")  # acme, her first tenant
    sign_in(bea, "bea@example.com")
    client.get("/"), bea.get("/")  # their first visits: unread counts from here
    ids = post(client, make_token("acme", "ingest"), event(title="a1"), event(title="a2"))
    post(client, make_token("globex", "ingest"), event(title="g1"))
    page = client.get("/").get_data(as_text=True)
    assert sorted(unread_on_page(page)) == sorted(ids) and header_count(page) == 2
    token = csrf_from(page)
    marked = client.post(f"/activities/{ids[0]}/read", headers={"X-CSRFToken": token, "HX-Request": "true"})
    html = marked.get_data(as_text=True)
    assert marked.status_code == 200 and f'id="activity-{ids[0]}"' in html and unread_on_page(html) == []
    assert 'id="unread-count"' in html and 'hx-swap-oob="true"' in html and header_count(html) == 1
    assert unread_on_page(client.get("/").get_data(as_text=True)) == [ids[1]]
    assert sorted(unread_on_page(bea.get("/").get_data(as_text=True))) == sorted(ids)  # Bea's are her own
    # Ada in globex starts from her own state there: her first visit, so g1 is not news to her.
    globex = [t for t in re.findall(r'<option value="(\d+)" ?>globex', page)][0]
    client.post("/tenant", data={"tenant_id": globex, "csrf_token": token})
    assert header_count(client.get("/").get_data(as_text=True)) == 0
    post(client, make_token("globex", "ingest"), event(title="g2"))
    assert header_count(client.get("/").get_data(as_text=True)) == 1
    assert client.post(f"/activities/{ids[1]}/read", headers={"X-CSRFToken": token}).status_code == 404


def test_opening_an_event_changes_nothing_until_its_page_posts(app, client, make_user, make_token):
    make_user()
    sign_in(client, "ada@example.com")
    client.get("/")
    [one] = post(client, make_token("acme", "ingest"), event(title="open me"))
    assert unread_on_page(client.get("/").get_data(as_text=True)) == [one]
    page = client.get(f"/activities/{one}").get_data(as_text=True)
    assert unread_on_page(client.get("/").get_data(as_text=True)) == [one], "a GET marked the event read"
    # The page marks it with a CSRF-checked POST once shown.
    mark = re.search(r'hx-post="([^"]+)" hx-trigger="load"', page).group(1)
    assert mark == f"/activities/{one}/read"
    assert client.post(mark).status_code == 400  # no CSRF token: refused
    assert client.post(mark, headers={"X-CSRFToken": csrf_from(page), "HX-Request": "true"}).status_code == 200
    assert unread_on_page(client.get("/").get_data(as_text=True)) == []
    assert 'hx-trigger="load"' not in client.get(f"/activities/{one}").get_data(as_text=True)


def test_mark_all_read_marks_what_the_filter_shows(app, client, make_user, make_token):
    make_user()
    ingest = make_token("acme", "ingest")
    sign_in(client, "ada@example.com")
    client.get("/")
    failed, _ = post(client, ingest, event(title="bad", status="failed"), event(title="fine", status="success"))
    token = csrf_from(client.get("/").get_data(as_text=True))
    assert client.post("/read-all?status=failed").status_code == 400  # CSRF
    answer = client.post("/read-all?status=failed", data={"csrf_token": token, "up_to": failed},
                         headers={"HX-Request": "true"})
    assert answer.status_code == 200 and answer.headers["HX-Trigger"] == '{"activityweb:read-all": {"upTo": "%s"}}' % failed
    assert header_count(answer.get_data(as_text=True)) == 1
    assert [t for t in titles_unread_on_feed(client)] == ["fine"]
    # Without htmx the form posts and comes back to the same filtered feed.
    plain = client.post("/read-all?status=success", data={"csrf_token": token})
    assert plain.status_code == 302 and plain.headers["Location"] == "/?status=success"
    assert titles_unread_on_feed(client) == []


def titles_unread_on_feed(client):
    html = client.get("/?read=false").get_data(as_text=True)
    return re.findall(r'class="event-title" href="[^"]+">([^<]+)</a>', html)


def test_local_mode_has_one_reader_for_the_page_and_the_api(local_app):
    web = local_app.test_client()
    web.get("/")
    [one] = post(web, {}, event(title="local"))
    assert header_count(web.get("/").get_data(as_text=True)) == 1
    assert web.patch(f"{A}/{one}/read").get_json()["unread_count"] == 0  # no token: the local reader
    html = web.get("/").get_data(as_text=True)
    assert header_count(html) == 0 and unread_on_page(html) == []
    assert 'name="read"' in html  # the filter form offers it


def test_a_new_person_starts_with_nothing_unread(app, client, make_user, make_token):
    """Unread means new since they came: a backlog is not 999+ on a first visit."""
    ingest = make_token("acme", "ingest")
    post(client, ingest, *[event(title=f"old {i}") for i in range(5)])
    make_user()
    sign_in(client, "ada@example.com")
    page = client.get("/").get_data(as_text=True)
    assert header_count(page) == 0 and unread_on_page(page) == []
    [new] = post(client, ingest, event(title="new"))
    page = client.get("/").get_data(as_text=True)
    assert header_count(page) == 1 and unread_on_page(page) == [new]


def test_running_calls_are_looked_for_among_the_newest_unread_starts(app, client, alice):
    """Running: a start with no outcome yet. Only the newest `window` unread
    starts are looked at, so an old start that never finished stops counting
    as running rather than making every page check every start."""
    from activityweb import store

    def start(call):
        return event(type="claude.tool.started", title=call, entity_type="tool", entity_id="Bash", status="started",
                     correlation_id=call)

    def outcome(call):
        return event(type="claude.tool.completed", title=call, entity_type="tool", entity_id="Bash",
                     status="success", correlation_id=call)

    for call in ("old-running", "done-1", "new-running", "done-2"):  # one POST each: ids in this order
        post(client, alice, start(call))
    post(client, alice, outcome("done-1"), outcome("done-2"), event(title="not a tool"))
    with app.app_context():
        reader = store.Reader(1, "nobody-yet")
        running = [c["correlation_id"] for c in store.unread_running_calls(reader)]
        within = {n: [c["correlation_id"] for c in store.unread_running_calls(reader, window=n)] for n in (1, 3, 4)}
    assert running == ["new-running", "old-running"]
    # The newest starts: done-2, new-running, done-1, old-running.
    assert within == {1: [], 3: ["new-running"], 4: ["new-running", "old-running"]}

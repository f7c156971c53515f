"""The daily dashboard, through the test client: one row per tool call, type
exclusion and quick ranges, the loaded depth, day headers, the conversations
list (paging to the end, search, filters, state), saved views, and a tokens
page that makes one token however often it is reloaded."""
import re
from datetime import datetime, timedelta, timezone

from conftest import csrf_from, event, sign_in
from test_web import post, web  # noqa: F401  (the local-mode client fixture and its poster)

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def rows(html):
    """The feed's rows, top to bottom: (element id, the event id it shows)."""
    return re.findall(r'<li id="([^"]+)" class="event[^"]*" data-id="([0-9a-f-]{36})"', html)


def tool_call(call_id, at, *, finished=True, status="success", title="Bash: npm test"):
    start = event(type="claude.tool.started", title=title, entity_type="tool", entity_id="Bash",
                  status="started", correlation_id=call_id, occurred_at=at.isoformat())
    if not finished:
        return [start]
    return [start, event(type="claude.tool.completed", title=title, entity_type="tool", entity_id="Bash",
                         status=status, duration_ms=1200, correlation_id=call_id,
                         occurred_at=(at + timedelta(seconds=1)).isoformat())]


def test_a_tool_call_is_one_row_running_until_its_outcome(web):
    [start] = post(web, *tool_call("toolu_1", NOW - timedelta(minutes=5), finished=False))
    html = web.get("/").get_data(as_text=True)
    [(row, shown)] = rows(html)
    assert row.startswith("call-") and shown == start["id"] and "status-running" in html
    [done] = post(web, event(type="claude.tool.completed", title="Bash: npm test", entity_type="tool", entity_id="Bash",
                             status="success", duration_ms=1200, correlation_id="toolu_1",
                             occurred_at=(NOW - timedelta(minutes=4)).isoformat()))
    html = web.get("/").get_data(as_text=True)
    assert rows(html) == [(row, done["id"])]  # the same row, now showing the outcome
    assert "status-running" not in html and "1.2 s" in html
    # The API keeps both events.
    assert len(web.get("/api/v1/activities").get_json()["items"]) == 2
    # The live path renders the outcome with the start's row id, so the page swaps it in place.
    from activityweb.web.render import live_message
    from activityweb import store
    with web.application.test_request_context("/"):
        message = live_message([store.get_activity(1, done["id"])])
    assert f'id="{row}"' in message


def test_a_live_batch_with_a_start_and_its_outcome_sends_the_outcome_only(web):
    from activityweb import store
    from activityweb.web.render import live_message
    items = post(web, *tool_call("toolu_9", NOW - timedelta(minutes=1)))
    with web.application.test_request_context("/"):
        message = live_message([store.get_activity(1, a["id"]) for a in items])
    assert len(rows(message)) == 1 and rows(message)[0][1] == items[1]["id"]


def test_type_exclusion_and_quick_ranges(web):
    post(web, event(title="old deploy", type="deploy.succeeded", occurred_at=(NOW - timedelta(days=3)).isoformat()),
         event(title="new deploy", type="deploy.succeeded", occurred_at=(NOW - timedelta(minutes=30)).isoformat()),
         *tool_call("toolu_2", NOW - timedelta(minutes=10), finished=False))
    api = web.get("/api/v1/activities?type=-claude.tool.started").get_json()["items"]
    assert sorted(a["title"] for a in api) == ["new deploy", "old deploy"]
    assert web.get("/api/v1/activities?type=!claude.tool.started").status_code == 400
    assert [a["title"] for a in web.get("/api/v1/activities?range=1h&type=deploy.*").get_json()["items"]] == ["new deploy"]
    assert web.get("/api/v1/activities?range=2h").status_code == 400
    html = web.get("/?range=24h").get_data(as_text=True)
    assert "new deploy" in html and "old deploy" not in html
    assert 'aria-current="true">last 24 h<' in html  # the quick range shows as chosen
    spec = web.get("/api/v1/openapi.json").get_json()
    described = {p["name"]: p for p in spec["paths"]["/api/v1/activities"]["get"]["parameters"]}
    assert "-claude.tool.started" in described["type"]["description"] and described["range"]["schema"]["enum"]


def test_load_more_keeps_the_depth_in_the_url_and_day_headers_divide_days(web):
    post(web, *[event(title=f"e{i}", occurred_at=(NOW - timedelta(hours=i)).isoformat()) for i in range(120)])
    first = web.get("/").get_data(as_text=True)
    more = re.search(r'id="load-more" class="load-more">\s*<a href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "depth=2" in more
    second = web.get(more, headers={"HX-Request": "true"})
    assert second.headers["HX-Replace-Url"] == "/?depth=2"
    # Back from an event reloads /?depth=2: both pages, in one.
    assert len(rows(web.get("/?depth=2").get_data(as_text=True))) == 100
    assert len(rows(web.get("/?depth=3").get_data(as_text=True))) == 120
    headers = re.findall(r'<li class="day-header" data-day="([\d-]+)"><h2>([^<]+)</h2>', first)
    assert headers[0][1] == "Today" and len({day for day, _ in headers}) == len(headers) >= 2


def sixty_nine_sessions():
    """s-00 (newest) to s-68, an hour apart: projects api/web alternate, Ada is in every third,
    every fifth failed, all but s-00 ended."""
    events = []
    for i in range(69):
        session = f"s-{i:02d}"
        at = NOW - timedelta(hours=i)
        events.append(event(type="claude.prompt.submitted", title=f"Prompt {i}", summary=f"fix bug number{i}",
                            entity_type="prompt", conversation_id=session, project="web" if i % 2 else "api",
                            actor_id="user", actor_name="Ada" if i % 3 == 0 else "Bob", occurred_at=at.isoformat()))
        if i % 5 == 0:
            events.append(event(type="claude.tool.failed", title="Bash", status="failed", conversation_id=session,
                                occurred_at=(at + timedelta(seconds=5)).isoformat()))
        if i > 0:
            events.append(event(type="claude.session.ended", title="Session ended", conversation_id=session,
                                occurred_at=(at + timedelta(seconds=9)).isoformat()))
    return events


def test_conversations_page_to_the_end_with_search_and_filters(web):
    post(web, *sixty_nine_sessions())
    seen, url = [], "/conversations"
    while url:
        html = web.get(url, headers={"HX-Request": "true"} if seen else {}).get_data(as_text=True)
        seen += re.findall(r'href="/conversations/(s-\d+)"', html)
        found = re.search(r'class="load-more conversations-more"><a href="([^"]+)"', html)
        url = found.group(1).replace("&amp;", "&") if found else None
    assert seen == [f"s-{i:02d}" for i in range(69)]  # all of them, newest first, once each
    assert "That’s every conversation" in html

    def listed(query):
        return re.findall(r'href="/conversations/(s-\d+)"', web.get(f"/conversations?{query}").get_data(as_text=True))

    assert listed("q=number7") == ["s-07"]
    assert set(listed("project=api")) == {f"s-{i:02d}" for i in range(0, 69, 2)}
    assert set(listed("person=ada")) == {f"s-{i:02d}" for i in range(0, 69, 3)}
    assert set(listed("failed=true")) == {f"s-{i:02d}" for i in range(0, 69, 5)}
    assert listed("state=running") == ["s-00"]  # recent and not ended
    assert len(listed("state=ended")) == 50  # a page
    page = web.get("/conversations").get_data(as_text=True)
    assert 'state-running">running<' in page and 'state-ended">ended<' in page
    assert web.get("/conversations?state=sleeping").status_code == 400


def test_the_conversations_api_pages_to_the_end_with_search_and_the_pages_filters(web):
    from test_openapi import check

    spec = web.get("/api/v1/openapi.json").get_json()
    post(web, *sixty_nine_sessions())

    def listed(query, **changes):
        """Every page of the answer, checked against the document: the ids, in order, and the pages' sizes."""
        ids, sizes, cursor = [], [], None
        while True:
            answer = web.get("/api/v1/conversations", query_string={**query, **({"cursor": cursor} if cursor else {})})
            check(spec, answer, "/api/v1/conversations", "get")
            assert answer.status_code == 200, answer.get_json()
            body = answer.get_json()
            ids += [c["id"] for c in body["items"]]
            sizes.append(len(body["items"]))
            if not (cursor := body["next_cursor"]):
                return ids, sizes

    def every(step, start=0):
        return [f"s-{i:02d}" for i in range(start, 69, step)]

    assert listed({"limit": "20"}) == (every(1), [20, 20, 20, 9])  # to the end, newest first, each once
    assert listed({})[1] == [20, 20, 20, 9]  # the default page
    assert listed({"q": "number7"})[0] == ["s-07"]
    assert listed({"project": "api", "limit": "10"}) == (every(2), [10, 10, 10, 5])
    assert listed({"person": "ADA", "limit": "7"})[0] == every(3)
    assert listed({"failed": "true"})[0] == every(5)
    assert listed({"state": "running"})[0] == ["s-00"]
    assert listed({"state": "ended", "failed": "true"})[0] == every(5, 5)
    assert listed({"type": "claude.tool.*", "project": "web"})[0] == []  # the failed Bash events carry no project
    assert listed({"type": "claude.tool.*"})[0] == every(5)  # any feed filter: one of its events matches
    first = web.get("/api/v1/conversations?limit=1").get_json()["items"][0]
    assert first["id"] == "s-00" and first["state"] == "running" and first["first_prompt"] == "fix bug number0"
    for bad, field in (("state=sleeping", "state"), ("failed=yes", "failed"), ("cursor=nonsense", "cursor"),
                       ("limit=101", "limit"), ("colour=red", "colour"), ("person=" + "x" * 201, "person")):
        answer = web.get(f"/api/v1/conversations?{bad}")
        check(spec, answer, "/api/v1/conversations", "get")
        assert answer.status_code == 400 and answer.get_json()["error"]["details"][0]["field"] == field, bad


def test_saved_views_are_each_persons_own(app, client, make_user):
    make_user("ada@example.com", "acme")
    make_user("bea@example.com", "acme")
    bea = app.test_client()
    sign_in(client, "ada@example.com")
    sign_in(bea, "bea@example.com")
    token = csrf_from(client.get("/").get_data(as_text=True))
    saved = client.post("/views?type=deploy.*&status=failed", data={"name": "Failed deploys", "csrf_token": token})
    assert saved.status_code == 303
    page = client.get("/").get_data(as_text=True)
    link = re.search(r'<a href="(/\?[^"]+)">Failed deploys</a>', page).group(1).replace("&amp;", "&")
    assert "type=deploy.*" in link.replace("%2A", "*") and "status=failed" in link
    assert ">Failed deploys</a>" not in bea.get("/").get_data(as_text=True)
    # The same name replaces; a view without a filter is refused.
    client.post("/views?type=lead.*", data={"name": "Failed deploys", "csrf_token": token})
    assert client.get("/").get_data(as_text=True).count(">Failed deploys</a>") == 1
    client.post("/views", data={"name": "Everything", "csrf_token": token})
    assert ">Everything</a>" not in client.get("/").get_data(as_text=True)
    view_id = re.search(r'action="/views/(\d+)/delete"', client.get("/").get_data(as_text=True)).group(1)
    bea_token = csrf_from(bea.get("/").get_data(as_text=True))
    assert bea.post(f"/views/{view_id}/delete", data={"csrf_token": bea_token}).status_code == 404  # not hers
    assert client.post(f"/views/{view_id}/delete", data={"csrf_token": token}).status_code == 303
    assert ">Failed deploys</a>" not in client.get("/").get_data(as_text=True)


def test_the_tokens_page_makes_one_token_however_often_it_is_reloaded(app, client, make_user):
    make_user("admin@example.com", "acme", "admin")
    sign_in(client, "admin@example.com")
    token = csrf_from(client.get("/settings/tokens").get_data(as_text=True))
    created = client.post("/settings/tokens", data={"name": "ci", "scopes": ["read"], "csrf_token": token})
    assert created.status_code == 303
    first = client.get("/settings/tokens").get_data(as_text=True)
    secret = first.split('id="new-token-secret">')[1].split("<")[0]
    assert secret.startswith("aw_") and 'data-copy="new-token-secret"' in first
    for _ in range(3):  # reloads: the same single token, the secret never again
        again = client.get("/settings/tokens").get_data(as_text=True)
        assert secret not in again and again.count('<tr id="token-') == 1
    # The session cookie never held the secret.
    assert all(secret not in cookie.value for cookie in client._cookies.values())
    # Revoking asks first: the button that revokes is inside a confirmation.
    assert re.search(r'<details class="revoke">.*Yes, revoke', first, re.S)


def test_reading_a_tool_calls_row_reads_both_its_events(web):
    web.get("/")  # a first visit: unread counts from here
    start, done = post(web, *tool_call("toolu_read", NOW - timedelta(minutes=2)))
    page = web.get("/").get_data(as_text=True)
    assert re.search(r'id="unread-count"[^>]*data-count="1"', page)  # two events, one row
    token = csrf_from(page)
    marked = web.post(f"/activities/{done['id']}/read", headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert marked.status_code == 200 and 'data-count="0"' in marked.get_data(as_text=True)


def unread_header(html):
    """The header's unread count and the running calls it names."""
    found = re.search(r'id="unread-count"[^>]*data-count="(\d+)"[^>]*data-running-calls="([^"]*)"', html)
    return int(found[1]), found[2].split()


def test_the_unread_count_counts_rows_a_tool_call_once(web):
    web.get("/")  # a first visit: unread counts from here
    [start] = post(web, *tool_call("toolu_count", NOW - timedelta(minutes=3), finished=False))
    html = web.get("/").get_data(as_text=True)
    [(row, _)] = rows(html)
    assert unread_header(html) == (1, [row])  # running: its start is the row, and the page is told so
    post(web, event(type="claude.tool.completed", title="Bash: npm test", entity_type="tool", entity_id="Bash",
                    status="success", correlation_id="toolu_count", occurred_at=(NOW - timedelta(minutes=2)).isoformat()))
    post(web, event(title="a deploy"))
    html = web.get("/").get_data(as_text=True)
    assert unread_header(html) == (2, [])  # the call (one row, done) and the deploy
    # A permission asked mid-call is a row of its own.
    post(web, event(type="claude.permission.requested", title="Bash: rm", entity_type="tool", status="waiting",
                    correlation_id="toolu_count"))
    assert unread_header(web.get("/").get_data(as_text=True))[0] == 3
    # The API's count is the same count.
    assert web.post("/api/v1/activities/read-all?type=no.such.*").get_json()["unread_count"] == 3
    # The live path sends rows: a start and its outcome take one.
    from activityweb.web.present import row_id
    from activityweb import store
    with web.application.test_request_context("/"):
        assert row_id(store.get_activity(1, start["id"])) == row

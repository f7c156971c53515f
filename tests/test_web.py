"""The dashboard's pages and partials, through the test client."""
import re

import pytest

from conftest import event

XSS = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


@pytest.fixture
def web(local_app):
    return local_app.test_client()


def post(client, *events):
    response = client.post("/api/v1/activities", json=list(events))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["items"]


def ids_in(html):
    return re.findall(r'data-id="([0-9a-f-]{36})"', html)


def test_feed_page_has_form_feed_and_socket(web):
    post(web, event(title="Deploy ok", type="deployment.succeeded"), event(title="Lead", type="lead.high_intent", priority="high"))
    response = web.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" in html and 'id="filter-form"' in html and 'id="feed-items"' in html
    assert 'ws-connect="/feed/ws"' in html
    assert "local mode" in html
    assert "Deploy ok" in html and "Lead" in html
    assert "important" in html  # high priority is marked
    assert "HX-Request" in response.headers["Vary"]


def test_htmx_request_gets_only_the_results_partial(web):
    post(web, event(title="one"))
    response = web.get("/?type=test.*", headers={"HX-Request": "true"})
    html = response.get_data(as_text=True)
    assert "<html" not in html and "filter-form" not in html
    assert 'id="feed-items"' in html and "one" in html
    assert 'ws-connect="/feed/ws?type=test.*"' in html
    assert "HX-Request" in response.headers["Vary"]


def test_filter_in_url_filters_and_fills_the_form(web):
    post(web, event(title="deploy A", type="deployment.failed", status="failed"),
         event(title="lead B", type="lead.replied"))
    html = web.get("/?type=deployment.*&q=deploy").get_data(as_text=True)
    assert "deploy A" in html and "lead B" not in html
    assert 'name="type" value="deployment.*"' in html
    assert 'name="q" value="deploy"' in html
    assert "type: deployment.*" in html  # active filter chips


def test_comma_separated_values_in_form_fields(web):
    post(web, event(title="a", status="failed"), event(title="b", status="started"), event(title="c", status="success"))
    html = web.get("/?status=failed,+started").get_data(as_text=True)
    assert ">a<" in html and ">b<" in html and ">c<" not in html


def test_load_more_walks_every_event_once(web):
    post(web, *[event(title=f"e{i}", occurred_at=f"2026-11-{1 + i % 20:02d}T10:00:00Z") for i in range(120)])
    html = web.get("/").get_data(as_text=True)
    seen = ids_in(html)
    pages = 1
    while (match := re.search(r'hx-get="([^"]*cursor=[^"]+)"', html)):
        html = web.get(match.group(1).replace("&amp;", "&"), headers={"HX-Request": "true"}).get_data(as_text=True)
        assert "<html" not in html and 'id="feed-items"' not in html  # only items and the next link
        seen += ids_in(html)
        pages += 1
    assert pages == 3 and len(seen) == 120 and len(set(seen)) == 120
    assert "everything" in html


def test_bad_filter_shows_what_is_wrong(web):
    response = web.get("/?since=next+tuesday", headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert "since" in response.get_data(as_text=True) and "notice-error" in response.get_data(as_text=True)
    assert web.get("/?since=next+tuesday").status_code == 400


def test_empty_states(web):
    assert "No activity yet" in web.get("/").get_data(as_text=True)
    assert "Nothing matches this filter" in web.get("/?type=nothing.here").get_data(as_text=True)


def test_activity_detail_page(web):
    item = post(web, event(title="Deployed", type="deployment.succeeded", actor_id="u-1", actor_name="Alice",
                           entity_type="project", entity_id="billing", conversation_id="conv-1",
                           correlation_id="req-7", tags=["deploy"], data={"url": "https://x.dev", "n": [1, 2]}))[0]
    html = web.get(f"/activities/{item['id']}").get_data(as_text=True)
    assert "Deployed" in html
    assert "/?actor=u-1" in html and "/?entity_type=project&amp;entity_id=billing" in html
    assert "/?conversation_id=conv-1" in html and "/?correlation_id=req-7" in html
    assert "&#34;url&#34;: &#34;https://x.dev&#34;" in html  # pretty-printed data, escaped
    assert web.get("/activities/01890a5d-ac96-774b-bcce-b302099a8057").status_code == 404
    assert web.get("/activities/not-an-id").status_code == 404


def test_other_tenants_events_are_not_shown(local_app, web):
    from activityweb import auth, store

    with local_app.app_context():
        _, secret = auth.create_token(store.get_or_create_tenant("globex"), "t", ["ingest"])
    other = web.post("/api/v1/activities", json=event(title="globex only"),
                     headers={"Authorization": f"Bearer {secret}"}).get_json()
    assert "globex only" not in web.get("/").get_data(as_text=True)
    assert web.get(f"/activities/{other['id']}").status_code == 404


def test_text_is_escaped_in_page_and_partials(web):
    item = post(web, event(title=XSS, summary=XSS, actor_id=XSS, actor_name=XSS, entity_id=XSS,
                           entity_name=XSS, data={"html": XSS}))[0]
    for html in (web.get("/").get_data(as_text=True),
                 web.get("/", headers={"HX-Request": "true"}).get_data(as_text=True),
                 web.get(f"/activities/{item['id']}").get_data(as_text=True)):
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;" in html


def test_dashboard_needs_sign_in_outside_local_mode(client):
    assert client.get("/").status_code in (302, 401)

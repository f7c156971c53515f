"""Inputs a hostile client sent that gave a 500, and more of the same kind.

Each is answered with its 4xx and a JSON error (or, on a dashboard page, the
error page), never a 500: Unicode digits where a number goes, times at the
ends of the calendar (also inside a cursor), a lone surrogate in a hook body,
and filter combinations an endpoint did not expect.
"""
import base64
import json

import pytest

from conftest import event, sign_in

UNICODE_DIGITS = ["²", "¹", "٣", "１２", "߀"]  # str.isdigit() says yes to each; int() to none or the wrong one


def cursor_at(moment: str) -> str:
    raw = json.dumps([moment, "01890000-0000-7000-8000-000000000000"]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


EDGE_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01", "9999-12-31T23:59:59Z"]
API_LISTS = ["/api/v1/activities", "/api/v1/activities/stats", "/api/v1/activities/export", "/api/v1/conversations"]
PAGES = ["/", "/stats", "/export", "/conversations"]


def queries():
    for moment in EDGE_TIMES:
        yield f"since={moment}".replace("+", "%2B")
        yield f"until={moment}".replace("+", "%2B")
        yield f"cursor={cursor_at(moment)}"
    for digits in UNICODE_DIGITS:
        yield f"limit={digits}"
    yield "priority=low&read=true&since=2000-01-01T00:00:00Z&limit=20"  # found by schemathesis
    yield "read=false"


@pytest.fixture
def signed_in(client, make_user):
    sign_in(client, make_user("hostile@example.com"))
    return client


def answers(client, path, headers=None) -> dict[str, int]:
    """The status of each hostile query on `path`, by query."""
    statuses = {}
    for query in queries():
        response = client.get(f"{path}?{query}", headers=headers)
        statuses[query] = response.status_code
        if path.startswith("/api/") and response.status_code == 400:
            assert response.get_json()["error"]["code"] == "invalid_parameter"
        response.close()
    return statuses


@pytest.mark.parametrize("path", API_LISTS)
def test_api_reads_answer_hostile_queries_with_a_4xx_or_an_answer(client, auth_headers, path):
    client.post("/api/v1/activities", json=event(conversation_id="c1", priority="low"), headers=auth_headers)
    wrong = {q: s for q, s in answers(client, path, auth_headers).items() if s not in (200, 400)}
    assert not wrong


def test_the_stream_answers_hostile_queries_before_it_starts(client, auth_headers):
    """The SSE stream parses its filter before streaming: a bad one is a 400, a good one opens."""
    statuses = {}
    for query in queries():
        if query.startswith("cursor=") or query.startswith("limit="):
            continue  # not parameters of a stream
        response = client.get(f"/api/v1/activities/stream?{query}", headers=auth_headers, buffered=False)
        statuses[query] = response.status_code
        response.close()
    assert set(statuses.values()) <= {200, 400}, statuses
    assert statuses["since=0001-01-01T00:00:00%2B01:00"] == 400


@pytest.mark.parametrize("path", PAGES)
def test_pages_answer_hostile_queries_with_a_4xx_or_a_page(signed_in, path):
    wrong = {q: s for q, s in answers(signed_in, path).items() if s not in (200, 400)}
    assert not wrong


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_past_the_calendar_names_the_parameter(client, auth_headers, moment):
    response = client.get("/api/v1/activities", query_string={"since": moment}, headers=auth_headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"][0]["field"] == "since"
    response = client.get("/api/v1/activities", query_string={"cursor": cursor_at(moment)}, headers=auth_headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"][0]["field"] == "cursor"


@pytest.mark.parametrize("digits", UNICODE_DIGITS)
def test_unicode_digits_are_not_a_limit(client, auth_headers, digits):
    response = client.get("/api/v1/activities", query_string={"limit": digits}, headers=auth_headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"][0]["field"] == "limit"


def test_conversations_filter_by_the_callers_read_state(client, auth_headers):
    client.post("/api/v1/activities", json=event(conversation_id="c1", priority="low"), headers=auth_headers)
    unread = client.get("/api/v1/conversations?read=false", headers=auth_headers).get_json()["items"]
    read = client.get("/api/v1/conversations?read=true", headers=auth_headers).get_json()["items"]
    assert [c["id"] for c in unread] == ["c1"] and read == []


@pytest.mark.parametrize("header", ["t=²,v1=00", "t=¹²³,v1=00", "t=1²,v1=00", "t=,v1=00", "t=1e9,v1=00", "t=-5,v1=00"])
def test_a_webhook_signature_timestamp_that_is_not_ascii_digits_is_a_401(client, header):
    response = client.post("/api/v1/integrations/webhook/ci", data=b"{}", headers={
        "X-ActivityWeb-Signature": header, "Content-Type": "application/json"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_signature"


@pytest.mark.parametrize("timestamp", ["¹", "²³", "¹⁰"[:1] + "0"])
def test_a_hubspot_timestamp_that_is_not_ascii_digits_is_a_401(client, timestamp):
    response = client.post("/api/v1/integrations/hubspot", data=b"[]", headers={
        "X-HubSpot-Request-Timestamp": timestamp, "X-HubSpot-Signature-v3": "x", "Content-Type": "application/json"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_signature"


@pytest.mark.parametrize("path", ["/api/v1/conversations/%00", "/api/v1/conversations/a%00b", "/api/v1/activities/%00",
                                  "/api/v1/activities/%00/read"])
def test_a_nul_in_a_path_is_a_404(client, auth_headers, path):
    response = client.open(path, method="PATCH" if path.endswith("/read") else "GET", headers=auth_headers)
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"


def test_a_nul_in_a_page_path_is_a_404(signed_in):
    assert signed_in.get("/conversations/%00").status_code == 404


def test_a_nul_in_a_sign_in_form_is_a_400(client, make_user):
    from conftest import csrf_from

    make_user("nul@example.com")
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": "nul\x00@example.com", "password": "x", "csrf_token": token})
    assert response.status_code == 400


def test_a_nul_in_a_token_name_or_query_value_is_a_400(client, make_user, auth_headers):
    from conftest import csrf_from

    sign_in(client, make_user("admin-nul@example.com", "acme", "admin"))
    token = csrf_from(client.get("/settings/tokens").get_data(as_text=True))
    response = client.post("/settings/tokens", data={"name": "a\x00b", "scopes": ["read"], "csrf_token": token})
    assert response.status_code == 400
    assert client.get("/api/v1/activities/export?format=%00", headers=auth_headers).status_code == 400


def test_a_token_id_beyond_an_integer_is_a_404(client, make_user):
    from conftest import csrf_from

    sign_in(client, make_user("admin-big@example.com", "acme", "admin"))
    token = csrf_from(client.get("/settings/tokens").get_data(as_text=True))
    response = client.post("/settings/tokens/99999999999999999999999/revoke", data={"csrf_token": token})
    assert response.status_code == 404

"""Every kind of bad input gets its 4xx and a JSON error naming the field; none gets a 500."""
import json

import pytest

from conftest import event


def error_of(response):
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


def fields_of(response):
    return [d["field"] for d in error_of(response)["details"]]


@pytest.mark.parametrize("body, field", [
    ({"title": "no type"}, "type"),
    ({"type": "x.y"}, "title"),
    (event(type=5), "type"),
    (event(type="Not A Verb"), "type"),
    (event(title=""), "title"),
    (event(title="   "), "title"),
    (event(title="x" * 301), "title"),
    (event(priority="urgent"), "priority"),
    (event(duration_ms="12"), "duration_ms"),
    (event(duration_ms=-1), "duration_ms"),
    (event(duration_ms=1.5), "duration_ms"),
    (event(sequence=True), "sequence"),
    (event(tags="a,b"), "tags"),
    (event(tags=[f"t{i}" for i in range(21)]), "tags"),
    (event(tags=["has space"]), "tags[0]"),
    (event(data=[1, 2]), "data"),
    (event(data={"blob": "x" * (64 * 1024)}), "data"),
    (event(occurred_at="yesterday"), "occurred_at"),
    (event(occurred_at="2026-11-20T10:00:00"), "occurred_at"),  # no offset: ambiguous
    (event(occurred_at="1970-01-01T00:00:00Z"), "occurred_at"),
    (event(occurred_at="2999-01-01T00:00:00Z"), "occurred_at"),
    (event(occurred_at=1700000000), "occurred_at"),
    (event(source="GitHub!"), "source"),
    (event(actor_name="x" * 201), "actor_name"),
    (event(unknown_key=1), "unknown_key"),
    (event(title="nul\u0000byte"), "title"),
    (event(data={"deep": [{"x": "a\u0000"}]}), "data"),
    (event(data={"k\u0000": 1}), "data"),
])
def test_invalid_event_names_the_field(client, auth_headers, body, field):
    response = client.post("/api/v1/activities", json=body, headers=auth_headers)
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "validation_error"
    assert field in fields_of(response)


def test_data_of_exactly_64_kib_is_accepted(client, auth_headers):
    overhead = len(json.dumps({"blob": ""}, separators=(",", ":")))
    data = {"blob": "x" * (64 * 1024 - overhead)}
    assert client.post("/api/v1/activities", json=event(data=data), headers=auth_headers).status_code == 201


def test_batch_errors_name_the_item(client, auth_headers):
    response = client.post("/api/v1/activities", json=[event(), event(title=""), event(priority="x")],
                           headers=auth_headers)
    assert response.status_code == 422
    assert fields_of(response) == ["[1].title", "[2].priority"]
    # Nothing of a rejected batch is stored.
    assert client.get("/api/v1/activities", headers=auth_headers).get_json()["items"] == []


def test_batch_over_a_thousand(client, auth_headers):
    response = client.post("/api/v1/activities", json=[event()] * 1001, headers=auth_headers)
    assert response.status_code == 422
    assert error_of(response)["code"] == "batch_too_large"


def test_empty_batch(client, auth_headers):
    response = client.post("/api/v1/activities", json=[], headers=auth_headers)
    assert response.status_code == 422


@pytest.mark.parametrize("raw", [b"", b"not json", b"{\"type\": ", b"\xff\xfe", b"[1, 2", b"{'single': 'quotes'}"])
def test_non_json_body(client, auth_headers, raw):
    response = client.post("/api/v1/activities", data=raw, headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_json"


@pytest.mark.parametrize("raw", [b"42", b"\"a string\"", b"null", b"[1, 2]", b"[[]]"])
def test_json_that_is_not_an_event(client, auth_headers, raw):
    response = client.post("/api/v1/activities", data=raw, headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code == 422
    error_of(response)


def test_body_over_one_mib(client, auth_headers):
    raw = json.dumps(event(summary="x" * (1024 * 1024))).encode()
    response = client.post("/api/v1/activities", data=raw, headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert error_of(response)["code"] == "body_too_large"


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=201", "limit"), ("limit=ten", "limit"),
    ("cursor=garbage", "cursor"), ("cursor=W1siYSJd", "cursor"),
    ("since=tomorrow", "since"), ("until=2026-13-01", "until"),
    ("since=2026-11-02&until=2026-11-01", "until"),
    ("priority=urgent", "priority"), ("type=Bad%20Type", "type"), ("type=a.*.b", "type"),
    ("colour=red", "colour"), ("q=" + "x" * 201, "q"), ("actor=a%00b", "actor"), ("q=a%00", "q"),
])
def test_bad_filter_is_a_400_naming_it(client, auth_headers, query, field):
    response = client.get(f"/api/v1/activities?{query}", headers=auth_headers)
    assert response.status_code == 400
    assert fields_of(response) == [field]


def test_unknown_route_and_method_are_json(client, auth_headers):
    assert error_of(client.get("/api/v1/nope", headers=auth_headers))["code"] == "not_found"
    response = client.delete("/api/v1/activities", headers=auth_headers)
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


def test_get_unknown_or_malformed_id_is_404(client, auth_headers):
    for activity_id in ("01890a5d-ac96-774b-bcce-b302099a8057", "not-a-uuid", "x" * 500):
        response = client.get(f"/api/v1/activities/{activity_id}", headers=auth_headers)
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize("raw", [b'{"type": "a.b", "title": "t", "data": {"x": NaN}}',
                                 b'{"type": "a.b", "title": "t", "data": {"x": [1, Infinity]}}',
                                 b'{"type": "a.b", "title": "t", "data": {"x": -Infinity}}',
                                 b'{"type": "a.b", "title": "t", "data": {"x": 1e400}}'])
def test_non_finite_numbers_in_data(client, auth_headers, raw):
    response = client.post("/api/v1/activities", data=raw, headers={**auth_headers, "Content-Type": "application/json"})
    assert response.status_code == 422
    assert fields_of(response) == ["data"]

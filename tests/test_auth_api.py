"""Bearer tokens on /api/v1: hashed, scoped, revocable; local mode only when asked for."""
import hashlib

import sqlalchemy as sa

from activityweb import auth, store
from activityweb.extensions import db
from activityweb.models import ApiToken
from conftest import event


def test_no_token_is_401(client):
    response = client.get("/api/v1/activities")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_token_is_401(client):
    response = client.get("/api/v1/activities", headers={"Authorization": "Bearer aw_nope"})
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_token"


def test_malformed_authorization_is_401(client):
    for header in ("Basic dXNlcjpwYXNz", "Bearer", "token"):
        assert client.get("/api/v1/activities", headers={"Authorization": header}).status_code == 401


def test_token_is_stored_hashed_and_shown_once(app, client, make_token):
    headers = make_token("acme", "read")
    secret = headers["Authorization"].split()[1]
    with app.app_context():
        stored = db.session.execute(sa.select(ApiToken)).scalar_one()
        assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert secret not in (stored.token_hash, stored.prefix, stored.name)
        assert secret.startswith(stored.prefix)
        assert stored.last_used_at is None
    assert client.get("/api/v1/activities", headers=headers).status_code == 200
    with app.app_context():
        assert db.session.execute(sa.select(ApiToken)).scalar_one().last_used_at is not None


def test_scopes(client, make_token):
    reader, writer = make_token("acme", "read"), make_token("acme", "ingest")
    denied = client.post("/api/v1/activities", json=event(), headers=reader)
    assert denied.status_code == 403
    assert denied.get_json()["error"]["code"] == "insufficient_scope"
    assert client.post("/api/v1/activities", json=event(), headers=writer).status_code == 201
    assert client.get("/api/v1/activities", headers=writer).status_code == 403
    assert client.get("/api/v1/activities", headers=reader).status_code == 200
    admin = make_token("acme", "admin")
    assert client.get("/api/v1/activities", headers=admin).status_code == 200


def test_revoked_token_is_401(app, client, make_token):
    headers = make_token("acme", "read")
    assert client.get("/api/v1/activities", headers=headers).status_code == 200
    with app.app_context():
        token = store.list_tokens()[0]
        auth.revoke_token(token.id)
    response = client.get("/api/v1/activities", headers=headers)
    assert response.status_code == 401


def test_local_mode_acts_as_default_tenant(backend, tmp_path, request):
    from conftest import make_app, teardown_app

    app = make_app(backend, tmp_path, request, LOCAL_MODE=True)
    try:
        client = app.test_client()
        created = client.post("/api/v1/activities", json=event())
        assert created.status_code == 201
        assert created.get_json()["tenant"] == "default"
        assert len(client.get("/api/v1/activities").get_json()["items"]) == 1
        # A token still decides the tenant when one is sent.
        with app.app_context():
            _, secret = auth.create_token(store.get_or_create_tenant("acme"), "t", ["read"])
        other = client.get("/api/v1/activities", headers={"Authorization": f"Bearer {secret}"})
        assert other.get_json()["items"] == []
    finally:
        teardown_app(app)


def test_an_empty_bearer_is_no_credential(backend, tmp_path, request):
    """What a producer sends with its token unset: fine in local mode, a 401 otherwise."""
    from conftest import make_app, teardown_app

    for local, expected in ((True, 201), (False, 401)):
        app = make_app(backend, tmp_path, request, LOCAL_MODE=local)
        try:
            response = app.test_client().post("/api/v1/activities", json=event(), headers={"Authorization": "Bearer "})
            assert response.status_code == expected
        finally:
            teardown_app(app)

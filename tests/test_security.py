"""The security model: sessions, CSRF, roles, tokens page, rate limits,
headers, production settings."""
import json
import os
import subprocess
import sys
import time

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import PASSWORD, TEST_KEY_PREFIX, csrf_from, event, make_app, sign_in, teardown_app


def test_pages_need_sign_in_outside_local_mode(client):
    response = client.get("/?type=a.*")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login?next=")
    htmx = client.get("/", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"].startswith("/login")
    assert client.get("/settings/tokens").status_code == 302


def test_sign_in_and_out(client, make_user):
    email = make_user("Ada@Example.com", "acme", "viewer")
    wrong = sign_in(client, email, "not the password")
    assert wrong.status_code == 401 and "do not match" in wrong.get_data(as_text=True)
    unknown = sign_in(client, "nobody@example.com")
    assert unknown.status_code == 401
    response = sign_in(client, "ada@EXAMPLE.com ")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    page = client.get("/").get_data(as_text=True)
    assert "ada@example.com" in page and "acme" in page and "local mode" not in page
    token = csrf_from(page)
    assert client.post("/logout").status_code == 400  # no CSRF token
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


def session_cookie(client) -> str:
    return client.get_cookie("session").value


def test_a_cookie_copied_before_sign_out_no_longer_works(app, client, make_user):
    sign_in(client, make_user("copy@example.com"))
    copied = session_cookie(client)
    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/").status_code == 200  # the copy works while the session lives
    token = csrf_from(client.get("/").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert thief.get("/").status_code == 302, "the copied cookie outlived the sign-out"
    # Signing in again starts a session under the new version; the old copy stays dead.
    sign_in(client, "copy@example.com")
    assert client.get("/").status_code == 200
    thief.set_cookie("session", copied)
    assert thief.get("/").status_code == 302


def test_signing_out_ends_the_users_sessions_everywhere(app, client, make_user):
    email = make_user("two@example.com")
    laptop, phone = client, app.test_client()
    sign_in(laptop, email)
    sign_in(phone, email)
    assert phone.get("/").status_code == 200
    token = csrf_from(laptop.get("/").get_data(as_text=True))
    laptop.post("/logout", data={"csrf_token": token})
    assert phone.get("/").status_code == 302


def test_next_is_never_another_site(client, make_user):
    email = make_user()
    for target, expected in (("/activities/x?y=1", "/activities/x?y=1"), ("https://evil.example/", "/"),
                             ("//evil.example/", "/")):
        # Signing in starts a new session, so each attempt needs a fresh token.
        token = csrf_from(client.get("/login").get_data(as_text=True))
        response = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token,
                                               "next": target})
        assert response.headers["Location"] == expected


@pytest.mark.parametrize("env_name", ["production", "Production", " PRODUCTION "])
def test_session_cookie_is_secure_in_production_by_default(backend, tmp_path, request, env_name):
    app = make_app(backend, tmp_path, request, ENV_NAME=env_name, SECRET_KEY="k" * 40,
                   ALLOWED_HOSTS=["localhost", "activity.example.com"])
    try:
        from activityweb import auth, store

        with app.app_context():
            auth.create_user("p@example.com", PASSWORD, store.get_or_create_tenant("acme"), "viewer")
        client = app.test_client()
        response = sign_in(client, "p@example.com")
        assert "Secure" in response.headers["Set-Cookie"]
        assert "max-age" in client.get("/login").headers["Strict-Transport-Security"]
    finally:
        teardown_app(app)


def test_csrf_is_required_on_every_form(client, make_user):
    make_user("admin@example.com", "acme", "admin")
    assert client.post("/login", data={"email": "admin@example.com", "password": PASSWORD}).status_code == 400
    sign_in(client, "admin@example.com")
    assert client.post("/settings/tokens", data={"name": "x", "scopes": "read"}).status_code == 400
    assert client.post("/tenant", data={"tenant_id": "1"}).status_code == 400
    # htmx sends it as a header
    token = csrf_from(client.get("/").get_data(as_text=True))
    created = client.post("/settings/tokens", data={"name": "x", "scopes": "read"}, headers={"X-CSRFToken": token})
    assert created.status_code == 303


def test_tokens_page_for_admins_only(client, make_user, app):
    make_user("viewer@example.com", "acme", "viewer")
    sign_in(client, "viewer@example.com")
    assert client.get("/settings/tokens").status_code == 403
    assert "API tokens" not in client.get("/").get_data(as_text=True)


def test_tokens_page_creates_shows_once_and_revokes(client, make_user):
    make_user("admin@example.com", "acme", "admin")
    sign_in(client, "admin@example.com")
    token = csrf_from(client.get("/settings/tokens").get_data(as_text=True))
    created = client.post("/settings/tokens", data={"name": "ci", "scopes": ["ingest", "read"], "csrf_token": token})
    assert created.status_code == 303  # post/redirect/get: a reload cannot make a second token
    shown = client.get(created.headers["Location"])
    html = shown.get_data(as_text=True)
    assert shown.headers["Cache-Control"] == "no-store"
    secret = html.split('id="new-token-secret">')[1].split("<")[0]
    assert secret not in client.get("/", headers={}).headers.get("Set-Cookie", "")
    assert secret.startswith("aw_")
    listing = client.get("/settings/tokens").get_data(as_text=True)
    assert secret not in listing and secret[:9] in listing and "ingest, read" in listing
    api = {"Authorization": f"Bearer {secret}"}
    assert client.post("/api/v1/activities", json=event(), headers=api).status_code == 201
    assert "never" not in client.get("/settings/tokens").get_data(as_text=True)  # last use is shown
    token_id = listing.split('id="token-')[1].split('"')[0]
    # Without the CSRF token, a revoke (from another site's form) changes nothing.
    assert client.post(f"/settings/tokens/{token_id}/revoke").status_code == 400
    assert client.post("/api/v1/activities", json=event(), headers=api).status_code == 201
    assert client.post(f"/settings/tokens/{token_id}/revoke", data={"csrf_token": token}).status_code == 302
    assert client.get("/api/v1/activities", headers=api).status_code == 401
    assert "revoked" in client.get("/settings/tokens").get_data(as_text=True)


def test_an_admin_cannot_revoke_another_tenants_token(client, make_user, make_token, app):
    from activityweb import auth, store

    make_token("globex", "read")
    make_user("admin@example.com", "acme", "admin")
    sign_in(client, "admin@example.com")
    with app.app_context():
        other = store.list_tokens()[0]
    token = csrf_from(client.get("/").get_data(as_text=True))
    assert client.post(f"/settings/tokens/{other.id}/revoke", data={"csrf_token": token}).status_code == 404


def test_switching_tenant_only_to_a_membership(client, make_user):
    make_user("both@example.com", "acme", "viewer")
    make_user("both@example.com", "globex", "viewer")
    make_user("x@example.com", "initech", "viewer")
    sign_in(client, "both@example.com")
    html = client.get("/").get_data(as_text=True)
    assert "acme" in html and "globex" in html and "initech" not in html
    token = csrf_from(html)
    from activityweb.extensions import db  # noqa: F401
    import re

    ids = dict((slug, tid) for tid, slug in re.findall(r'<option value="(\d+)"[^>]*>([a-z-]+)</option>', html))
    assert client.post("/tenant", data={"tenant_id": ids["globex"], "csrf_token": token}).status_code == 302
    assert '<option value="%s" selected>globex' % ids["globex"] in client.get("/").get_data(as_text=True)
    assert client.post("/tenant", data={"tenant_id": "9999", "csrf_token": token}).status_code == 403


def test_users_cli(runner, app):
    from activityweb import auth, store

    runner.invoke(args=["tenants", "create", "acme"])
    result = runner.invoke(args=["users", "create", "--email", "Cli@Example.com", "--tenant", "acme", "--role", "admin"],
                           input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "created cli@example.com as admin" in result.output
    short = runner.invoke(args=["users", "create", "--email", "s@example.com", "--tenant", "acme"], input="short\n")
    assert short.exit_code != 0 and "at least" in short.output
    with app.app_context():
        assert auth.check_password("cli@example.com", PASSWORD) is not None
        user = auth.find_user("cli@example.com")
        assert user.password_hash.startswith("scrypt:") and PASSWORD not in user.password_hash


def test_security_headers_everywhere(client, auth_headers):
    for response in (client.get("/login"), client.get("/api/v1/activities", headers=auth_headers),
                     client.get("/static/app.js"), client.get("/nope")):
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"


REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.mark.parametrize("storage", ["memory://", REDIS_URL])
def test_api_rate_limit_answers_429_with_retry_after(backend, tmp_path, request, storage):
    # Nothing else the Redis server holds is read or emptied: the counts go
    # under the tests' key prefix, per token (a new one each run).
    if storage.startswith("redis"):
        import redis

        try:
            redis.Redis.from_url(storage).ping()
        except redis.ConnectionError as exc:
            from conftest import _unavailable

            _unavailable("Redis (TEST_REDIS_URL; .ci/run starts one)", str(exc))
    app = make_app(backend, tmp_path, request, RATELIMIT_API="3 per minute", RATELIMIT_STORAGE_URI=storage)
    try:
        from activityweb import auth, store

        with app.app_context():
            tenant = store.get_or_create_tenant("acme")
            _, one = auth.create_token(tenant, "a", ["read"])
            _, two = auth.create_token(tenant, "b", ["read"])
        client = app.test_client()
        first = {"Authorization": f"Bearer {one}"}
        assert [client.get("/api/v1/activities", headers=first).status_code for _ in range(3)] == [200] * 3
        limited = client.get("/api/v1/activities", headers=first)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) > 0
        assert limited.get_json()["error"]["code"] == "rate_limited"
        # Another token has its own allowance.
        assert client.get("/api/v1/activities", headers={"Authorization": f"Bearer {two}"}).status_code == 200
        if storage.startswith("redis"):
            import redis

            server = redis.Redis.from_url(storage)
            ours = list(server.scan_iter(f"LIMITS:LIMITER/{TEST_KEY_PREFIX}/token:{auth.hash_token(one)[:24]}*"))
            assert ours, "the counts are not in Redis under the tests' prefix"
            server.delete(*ours)
    finally:
        teardown_app(app)


def login_attempts(client, token, pairs):
    return [client.post("/login", data={"email": email, "password": "x", "csrf_token": token},
                        environ_base={"REMOTE_ADDR": address}).status_code for address, email in pairs]


def test_one_address_cannot_try_many_accounts(backend, tmp_path, request):
    app = make_app(backend, tmp_path, request, RATELIMIT_LOGIN="100 per minute", RATELIMIT_LOGIN_ADDRESS="3 per minute",
                   RATELIMIT_LOGIN_ACCOUNT="100 per minute")
    try:
        client = app.test_client()
        token = csrf_from(client.get("/login").get_data(as_text=True))
        codes = login_attempts(client, token, [("10.0.0.1", f"u{n}@b.c") for n in range(4)])
        assert codes == [401, 401, 401, 429]
        assert login_attempts(client, token, [("10.0.0.2", "u9@b.c")]) == [401]  # another address is not held back
    finally:
        teardown_app(app)


def test_many_addresses_cannot_share_guessing_one_account(backend, tmp_path, request):
    app = make_app(backend, tmp_path, request, RATELIMIT_LOGIN="100 per minute",
                   RATELIMIT_LOGIN_ADDRESS="100 per minute", RATELIMIT_LOGIN_ACCOUNT="3 per minute")
    try:
        client = app.test_client()
        token = csrf_from(client.get("/login").get_data(as_text=True))
        codes = login_attempts(client, token, [(f"10.0.1.{n}", "ada@b.c") for n in range(4)])
        assert codes == [401, 401, 401, 429]
        assert login_attempts(client, token, [("10.0.1.9", "Ada@B.c ")]) == [429]  # the same account, however typed
        assert login_attempts(client, token, [("10.0.1.9", "bob@b.c")]) == [401]
    finally:
        teardown_app(app)


def test_sign_in_is_rate_limited(backend, tmp_path, request):
    app = make_app(backend, tmp_path, request, RATELIMIT_LOGIN="3 per minute")
    try:
        client = app.test_client()
        token = csrf_from(client.get("/login").get_data(as_text=True))
        codes = [client.post("/login", data={"email": "a@b.c", "password": "x", "csrf_token": token}).status_code
                 for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        assert "Retry-After" in client.post("/login", data={"email": "a@b.c", "password": "x",
                                                            "csrf_token": token}).headers
    finally:
        teardown_app(app)


@pytest.mark.parametrize("env, message", [
    ({}, "SECRET_KEY"),
    ({"SECRET_KEY": "k"}, "at least 32 characters"),
    ({"SECRET_KEY": "k" * 31}, "at least 32 characters"),
    ({"SECRET_KEY": "k" * 40, "ACTIVITYWEB_LOCAL_MODE": "1"}, "ACTIVITYWEB_LOCAL_MODE"),
    ({"ACTIVITYWEB_ENV": "Production", "SECRET_KEY": "k" * 40, "ACTIVITYWEB_LOCAL_MODE": "1"},
     "ACTIVITYWEB_LOCAL_MODE"),
    ({"ACTIVITYWEB_ENV": "PRODUCTION", "SECRET_KEY": "short"}, "SECRET_KEY"),
    ({"ACTIVITYWEB_ENV": "prod", "SECRET_KEY": "k" * 40, "ACTIVITYWEB_LOCAL_MODE": "1"}, "ACTIVITYWEB_ENV"),
    ({"ACTIVITYWEB_ENV": "staging"}, "ACTIVITYWEB_ENV"),
    ({"SECRET_KEY": "k" * 40}, "ALLOWED_HOSTS"),
])
def test_production_refuses_unsafe_settings_in_one_line(env, message):
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "ACTIVITYWEB_LOCAL_MODE")}
    result = subprocess.run([sys.executable, "-c", "import wsgi"], env={**base, "ACTIVITYWEB_ENV": "production", **env},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "refusing to start" in lines[0]


def test_local_mode_gunicorn_refuses_to_bind_beyond_loopback():
    env = {**os.environ, "ACTIVITYWEB_LOCAL_MODE": "1", "SECRET_KEY": "k" * 40}
    env.pop("ACTIVITYWEB_ENV", None)
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:0",
                             "wsgi:app"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "serves only loopback" in result.stderr and "refusing to start" in result.stderr


@pytest.mark.parametrize("hosts", [{"ALLOWED_HOSTS": "activity.example.com"},
                                   {"ACTIVITYWEB_PUBLIC_URL": "https://activity.example.com"}])
def test_production_starts_with_a_secret_key_and_its_host_names(hosts):
    env = {**os.environ, "ACTIVITYWEB_ENV": "production", "SECRET_KEY": "k" * 40, **hosts}
    env.pop("ACTIVITYWEB_LOCAL_MODE", None)
    result = subprocess.run([sys.executable, "-c", "import wsgi"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -------------------------------------------------------------- live streams


@pytest.fixture
def server(app, serve):
    return serve(app)


def test_feed_socket_needs_a_session(server, app, make_user):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/feed/ws", origin=server.url, open_timeout=5)
    assert refused.value.response.status_code == 401
    make_user("ws@example.com")
    session = requests.Session()
    page = session.get(server.url + "/login").text
    session.post(server.url + "/login", data={"email": "ws@example.com", "password": PASSWORD,
                                              "csrf_token": csrf_from(page)})
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    with connect(f"{server.ws_url}/feed/ws", origin=server.url, additional_headers={"Cookie": cookie},
                 open_timeout=5) as ws:
        ws.send('{"since": null}')
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/feed/ws", origin="https://evil.example", additional_headers={"Cookie": cookie},
                open_timeout=5)
    assert refused.value.response.status_code == 403


def signed_in_cookie(server, email):
    session = requests.Session()
    page = session.get(server.url + "/login").text
    session.post(server.url + "/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf_from(page)})
    return session, "; ".join(f"{k}={v}" for k, v in session.cookies.items())


def test_signing_out_ends_the_open_feed_sockets(server, app, make_user):
    app.config["LIVE_RECHECK_SECONDS"] = 0.2
    make_user("out@example.com")
    session, cookie = signed_in_cookie(server, "out@example.com")
    _, other_cookie = signed_in_cookie(server, "out@example.com")  # the same user in another browser
    with connect(f"{server.ws_url}/feed/ws", origin=server.url, additional_headers={"Cookie": cookie},
                 open_timeout=5) as ws, \
            connect(f"{server.ws_url}/feed/ws", origin=server.url, additional_headers={"Cookie": other_cookie},
                    open_timeout=5) as other:
        ws.send('{"since": null}')
        other.send('{"since": null}')
        time.sleep(0.5)  # both sockets outlive a re-check while signed in
        assert ws.close_code is None and other.close_code is None
        page = session.get(server.url + "/").text
        assert session.post(server.url + "/logout", data={"csrf_token": csrf_from(page)}).status_code in (200, 302)
        for socket_ in (ws, other):
            with pytest.raises(ConnectionClosed):
                while True:
                    socket_.recv(timeout=5)
            assert socket_.close_code == 1008  # policy: the htmx ws extension does not reconnect


def test_revoking_a_token_ends_its_streams(server, app):
    from activityweb import auth, store

    app.config["LIVE_RECHECK_SECONDS"] = 0.2
    with app.app_context():
        token, secret = auth.create_token(store.get_or_create_tenant("acme"), "stream", ["read"])
        token_id = token.id
    headers = {"Authorization": f"Bearer {secret}"}
    with connect(f"{server.ws_url}/ws", additional_headers=headers, open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "position"
        stream = requests.get(server.url + "/api/v1/activities/stream", headers=headers, stream=True, timeout=10)
        assert stream.status_code == 200
        time.sleep(0.5)
        assert ws.close_code is None
        with app.app_context():
            auth.revoke_token(token_id)
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
        assert ws.close_code == 1008
        # The SSE stream ends (EventSource's reconnect then gets a 401).
        body = b"".join(stream.iter_content(chunk_size=None))
        assert time.monotonic() - started < 10 and b"retry:" in body
    assert requests.get(server.url + "/api/v1/activities/stream", headers=headers, timeout=5).status_code == 401


def test_streams_refuse_a_foreign_origin(server, auth_headers):
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{server.ws_url}/ws", origin="https://evil.example", additional_headers=auth_headers, open_timeout=5)
    assert refused.value.response.status_code == 403
    response = requests.get(server.url + "/api/v1/activities/stream",
                            headers={**auth_headers, "Origin": "https://evil.example"}, timeout=5)
    assert response.status_code == 403


def test_allowed_origins_widen_the_check(backend, tmp_path, request, serve):
    app = make_app(backend, tmp_path, request, ALLOWED_ORIGINS=["https://dash.example"])
    try:
        from activityweb import auth, store

        with app.app_context():
            _, secret = auth.create_token(store.get_or_create_tenant("acme"), "w", ["read"])
        server = serve(app)
        with connect(f"{server.ws_url}/ws", origin="https://dash.example",
                     additional_headers={"Authorization": f"Bearer {secret}"}, open_timeout=5):
            pass
    finally:
        teardown_app(app)

"""Which requests reach the app at all: a Host we serve, in local mode a
client on this machine, a browser's state-changing request from our own
pages only, and JSON endpoints only for JSON bodies.

Local mode (`make run`) acts as the default tenant for anyone who reaches it,
so a web page the user visits must not be able to post events to it
cross-origin, nor read the feed by rebinding its own name to 127.0.0.1.
"""
import pytest

from conftest import event, make_app, teardown_app


@pytest.fixture
def local(local_app):
    return local_app.test_client()


@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1:5000", "[::1]:5000", "LOCALHOST:5000"])
def test_local_mode_answers_its_own_names(local, host):
    assert local.get("/", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:5000", "127.0.0.1.nip.io:5000", "localhost.evil.example"])
def test_a_rebound_name_gets_nothing(local, host):
    for path in ("/", "/api/v1/activities", "/feed/ws"):
        response = local.get(path, headers={"Host": host})
        assert response.status_code == 400, (path, host)
        assert "ALLOWED_HOSTS" in response.get_data(as_text=True)
    assert local.post("/api/v1/activities", json=event(), headers={"Host": host}).status_code == 400


def test_local_mode_answers_only_this_machine(local):
    assert local.get("/", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 403
    assert local.post("/api/v1/activities", json=event(), environ_base={"REMOTE_ADDR": "192.168.1.9"}).status_code == 403
    assert local.get("/", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


def test_another_sites_page_cannot_post_events_to_local_mode(local):
    foreign = {"Origin": "https://evil.example"}
    response = local.post("/api/v1/activities", json=event(), headers=foreign)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "cross_origin"
    # The "simple request" a form or fetch without preflight makes: text/plain.
    plain = local.post("/api/v1/activities", data='{"type": "x.y", "title": "t"}', content_type="text/plain")
    assert plain.status_code == 415 and plain.get_json()["error"]["code"] == "unsupported_media_type"
    form = local.post("/api/v1/activities", data={"type": "x.y", "title": "t"})
    assert form.status_code == 415
    assert local.get("/api/v1/activities").get_json()["items"] == []
    # Our own page, and a program (no Origin), may.
    assert local.post("/api/v1/activities", json=event(), headers={"Origin": "http://localhost"}).status_code == 201
    assert local.post("/api/v1/activities", json=event()).status_code == 201


@pytest.mark.parametrize("path", ["/api/v1/integrations/claude-code", "/api/v1/integrations/github",
                                  "/api/v1/integrations/hubspot", "/api/v1/integrations/salesforce",
                                  "/api/v1/integrations/webhook/ci"])
def test_every_json_endpoint_refuses_other_bodies(client, auth_headers, path):
    response = client.post(path, data="a=b", content_type="application/x-www-form-urlencoded", headers=auth_headers)
    assert response.status_code == 415


def test_a_state_changing_page_request_from_another_site_is_refused(client, make_user):
    from conftest import sign_in

    sign_in(client, make_user("o@example.com"))
    response = client.post("/logout", headers={"Origin": "https://evil.example"})
    assert response.status_code == 403


def test_outside_local_mode_an_unknown_host_is_refused_too(client, auth_headers):
    assert client.get("/api/v1/activities", headers={**auth_headers, "Host": "evil.example"}).status_code == 400
    assert client.get("/api/v1/activities", headers=auth_headers).status_code == 200


def test_allowed_hosts_and_the_public_url_widen_the_list(backend, tmp_path, request):
    app = make_app(backend, tmp_path, request, ALLOWED_HOSTS=["feed.example.com"],
                   PUBLIC_URL="https://activity.example.org")
    try:
        client = app.test_client()
        assert client.get("/login", headers={"Host": "feed.example.com"}).status_code == 200
        assert client.get("/login", headers={"Host": "activity.example.org:443"}).status_code == 200
        assert client.get("/login", headers={"Host": "localhost"}).status_code == 400
        # A load balancer probes by address.
        assert client.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200
    finally:
        teardown_app(app)

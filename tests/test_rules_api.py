"""/api/v1/rules, the settings pages and `flask rules`: tenant-scoped, admin only, JSON errors."""
from __future__ import annotations

import re

from activityweb.rules.worker import Worker
from conftest import csrf_from, event, sign_in
from receiver import Receiver

R = "/api/v1/rules"


def test_rules_crud_through_the_api(client, make_token):
    admin = make_token("acme", "admin")
    created = client.post(R, json={"name": "deploys failing", "filter": "type=deployment.*&status=failed",
                                   "condition": "count", "threshold": 3, "window_seconds": 600,
                                   "cooldown_seconds": 1800}, headers=admin)
    assert created.status_code == 201, created.get_json()
    rule = created.get_json()
    assert rule["description"] == "at least 3 matches in 10 minutes; quiet 30 minutes after firing"
    assert client.get(R, headers=admin).get_json()["items"][0]["id"] == rule["id"]
    replaced = client.put(f"{R}/{rule['id']}", json={"name": "deploys failing", "condition": "every"}, headers=admin)
    assert replaced.status_code == 200 and replaced.get_json()["condition"] == "every"
    assert client.get(f"{R}/{rule['id']}", headers=admin).get_json()["recent_firings"] == []
    assert client.delete(f"{R}/{rule['id']}", headers=admin).status_code == 204
    assert client.get(f"{R}/{rule['id']}", headers=admin).status_code == 404


def test_rule_errors_are_json_and_name_the_field(client, make_token):
    admin = make_token("acme", "admin")

    def error(body, status=422):
        response = client.post(R, json=body, headers=admin)
        assert response.status_code == status, response.get_json()
        return response.get_json()["error"]

    assert error({"name": "x", "condition": "count", "window_seconds": 60})["details"][0]["field"] == "threshold"
    assert error({"name": "x", "condition": "every", "filter": "nope=1"})["details"][0]["field"] == "filter"
    assert error({"name": "x", "condition": "every", "filter": "read=false"})["details"][0]["field"] == "filter"
    assert error({"name": "x", "condition": "every", "filter": "limit=5"})["details"][0]["field"] == "filter"
    assert error({"name": "x", "condition": "count", "threshold": "many", "window_seconds": 60}
                 )["details"][0]["field"] == "threshold"
    assert error({"name": "", "condition": "every"})["details"][0]["field"] == "name"
    assert client.post(f"{R}/channels", json=["x"], headers=admin).status_code == 422
    assert client.post(f"{R}/channels", json={"name": "c", "kind": "pigeon", "target": "x"},
                       headers=admin).get_json()["error"]["details"][0]["field"] == "kind"
    assert client.put(f"{R}/999", json={"name": "x", "condition": "every"}, headers=admin).status_code == 404
    assert client.post(f"{R}/channels/999/test", headers=admin).status_code == 404
    assert error({"name": "x", "condition": "sometimes"})["details"][0]["field"] == "condition"
    assert error({"name": "x", "condition": "digest", "window_seconds": 60})["details"][0]["field"] == "window_seconds"
    assert error({"name": "x", "condition": "every", "channel_id": 999})["details"][0]["field"] == "channel_id"
    assert error({"name": "x", "condition": "every", "extra": 1})["details"][0]["field"] == "extra"
    assert error([1, 2])["code"] == "validation_error"
    bad_json = client.post(R, data=b"{", headers={**admin, "Content-Type": "application/json"})
    assert bad_json.status_code == 400 and bad_json.get_json()["error"]["code"] == "invalid_json"
    assert client.post(R, json={"name": "x", "condition": "every"}, headers=admin).status_code == 201
    assert error({"name": "x", "condition": "every"}, 409)["code"] == "conflict"


def test_rules_need_the_admin_scope_and_stay_in_their_tenant(client, make_token):
    reader = make_token("acme", "ingest,read")
    assert client.get(R, headers=reader).status_code == 403
    assert client.get(R).status_code == 401
    acme = make_token("acme", "admin")
    globex = make_token("globex", "admin")
    rule = client.post(R, json={"name": "x", "condition": "every"}, headers=acme).get_json()
    assert client.get(f"{R}/{rule['id']}", headers=globex).status_code == 404
    assert client.delete(f"{R}/{rule['id']}", headers=globex).status_code == 404
    assert client.get(R, headers=globex).get_json()["items"] == []


def test_a_channel_url_to_a_private_address_is_refused(client, make_token):
    admin = make_token("acme", "admin")
    for url in ("http://127.0.0.1:9/x", "http://10.0.0.1/x", "http://169.254.169.254/", "http://localhost/x"):
        response = client.post(f"{R}/channels", json={"name": "h", "kind": "webhook", "target": url}, headers=admin)
        assert response.status_code == 422, url
        assert response.get_json()["error"]["details"][0]["field"] == "target"
    hidden = client.post(f"{R}/channels", json={"name": "m", "kind": "email", "target": "a@b.c"}, headers=admin)
    assert hidden.status_code == 422  # no SMTP server configured: email is not offered


def test_test_event_is_stored_marked_and_timed(client, make_token):
    ingest = make_token("acme", "ingest,read")
    response = client.post("/api/v1/activities/test", headers=ingest)
    assert response.status_code == 201
    body = response.get_json()
    assert body["test"] is True and body["published_ms"] >= 0
    assert body["activity"]["type"] == "system.test" and body["activity"]["tags"] == ["test"]
    listed = client.get("/api/v1/activities?tag=test", headers=ingest).get_json()["items"]
    assert [a["id"] for a in listed] == [body["activity"]["id"]]


def test_channels_deliveries_test_and_redeliver_through_the_api(backend, tmp_path, request):
    from conftest import make_app, teardown_app

    app = make_app(backend, tmp_path, request, RULES_EGRESS_ALLOW=["127.0.0.1"])
    receiver = Receiver()
    try:
        from activityweb import auth, store

        with app.app_context():
            _, secret = auth.create_token(store.get_or_create_tenant("acme"), "t", ["admin", "ingest"])
        admin = {"Authorization": f"Bearer {secret}"}
        client = app.test_client()
        channel = client.post(f"{R}/channels", json={"name": "hook", "kind": "webhook", "target": receiver.url},
                              headers=admin)
        assert channel.status_code == 201 and channel.get_json()["secret"].startswith("whsec_")
        channel_id = channel.get_json()["id"]
        assert "secret" not in client.get(f"{R}/channels", headers=admin).get_json()["items"][0]
        tested = client.post(f"{R}/channels/{channel_id}/test", headers=admin).get_json()
        assert tested["ok"] and tested["status_code"] == 200 and tested["response"] == "ok"
        client.post(R, json={"name": "all", "condition": "every", "channel_id": channel_id}, headers=admin)
        client.post("/api/v1/activities", json=event(title="go"), headers=admin)
        Worker(app).deliver_due()
        receiver.wait(2)
        log = client.get(f"{R}/channels/{channel_id}/deliveries", headers=admin).get_json()["items"]
        assert [a["ok"] for a in log] == [True, True] and log[0]["message_id"].startswith("msg_")
        message = log[0]["message_id"]
        assert client.post(f"{R}/firings/{message}/redeliver", headers=admin).status_code == 202
        Worker(app).deliver_due()
        receiver.wait(3)
        assert receiver.requests[2]["headers"]["webhook-id"] == receiver.requests[1]["headers"]["webhook-id"] == message
        assert client.post(f"{R}/firings/msg_nope/redeliver", headers=admin).status_code == 404
    finally:
        receiver.stop()
        teardown_app(app)


def test_the_settings_pages_are_for_admins(client, make_user):
    make_user("viewer@example.com", "acme", "viewer")
    sign_in(client, "viewer@example.com")
    assert client.get("/settings/rules").status_code == 403


def test_create_a_rule_on_the_settings_page(client, make_user):
    make_user("admin@example.com", "acme", "admin")
    sign_in(client, "admin@example.com")
    page = client.get("/settings/rules?filter=type%3Ddeployment.*")
    assert page.status_code == 200 and 'value="type=deployment.*"' in page.get_data(as_text=True)
    token = csrf_from(page.get_data(as_text=True))
    bad = client.post("/settings/rules", data={"csrf_token": token, "name": "x", "condition": "count"},
                      follow_redirects=True)
    assert "threshold: is required for a count rule" in bad.get_data(as_text=True)
    done = client.post("/settings/rules", data={"csrf_token": token, "name": "deploys", "filter": "type=deployment.*",
                                                 "condition": "count", "threshold": "2", "window_minutes": "10",
                                                 "cooldown_minutes": "30"}, follow_redirects=True)
    html = done.get_data(as_text=True)
    assert "at least 2 matches in 10 minutes; quiet 30 minutes after firing" in html
    assert re.search(r"It has not fired yet", html)


def test_flask_rules_cli(app, runner):
    from activityweb import store

    with app.app_context():
        store.get_or_create_tenant("acme")
    created = runner.invoke(args=["rules", "create", "--tenant", "acme", "--name", "silent agent", "--filter",
                                  "source=claude_code", "--condition", "heartbeat", "--window", "3600"])
    assert created.exit_code == 0, created.output
    assert "no matching event for 1 hour" in created.output
    listed = runner.invoke(args=["rules", "list", "--tenant", "acme"])
    assert "silent agent" in listed.output
    refused = runner.invoke(args=["rules", "channels", "add", "--tenant", "acme", "--name", "h", "--kind", "webhook",
                                  "--target", "http://10.0.0.1/"])
    assert refused.exit_code != 0 and "private address" in refused.output
    bad = runner.invoke(args=["rules", "create", "--tenant", "acme", "--name", "x", "--condition", "count"])
    assert bad.exit_code != 0 and "threshold" in bad.output
    once = runner.invoke(args=["rules", "worker", "--once"])
    assert once.exit_code == 0 and "tried 0 deliveries" in once.output


def test_no_rules_template_runs_a_query(backend, tmp_path, request):
    from activityweb import auth, store
    from conftest import PASSWORD, make_app, teardown_app
    from test_layering import queries_while_rendering

    app = make_app(backend, tmp_path, request, RULES_EGRESS_ALLOW=["127.0.0.1"])
    receiver = Receiver()
    try:
        with app.app_context():
            auth.create_user("admin@example.com", PASSWORD, store.get_or_create_tenant("acme"), "admin")
        client = app.test_client()
        sign_in(client, "admin@example.com")
        token = csrf_from(client.get("/settings/rules").get_data(as_text=True))
        with queries_while_rendering(app) as seen:
            made = client.post("/settings/rules/channels", data={"csrf_token": token, "name": "hook", "kind": "webhook",
                                                                 "target": receiver.url})
            assert made.status_code == 201 and "whsec_" in made.get_data(as_text=True)
            client.post("/settings/rules", data={"csrf_token": token, "name": "all", "condition": "every",
                                                 "channel_id": "1"})
            client.post("/api/v1/activities/test")  # no token: 401, nothing stored
            headers = {"HX-Request": "true", "X-CSRFToken": token}
            assert client.post("/settings/rules/test-event", headers=headers).status_code == 200
            Worker(app).deliver_due()
            assert client.post("/settings/rules/channels/1/test", headers=headers).status_code == 200
            for path in ("/settings/rules", "/settings/rules/1", "/settings/rules/channels/1"):
                assert client.get(path).status_code == 200, path
        assert seen == []
    finally:
        receiver.stop()
        teardown_app(app)


def test_an_unknown_page_is_a_404_for_an_admin_too(client, make_user):
    make_user("admin@example.com", "acme", "admin")
    sign_in(client, "admin@example.com")
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/settings/rules/999").status_code == 404
    assert client.get("/settings/rules/channels/999").status_code == 404


def test_rules_answers_match_the_openapi_document(client, make_token):
    from test_openapi import check

    spec = client.get("/api/v1/openapi.json").get_json()
    admin = make_token("acme", "admin,ingest")
    created = client.post(R, json={"name": "n", "condition": "count", "threshold": 2, "window_seconds": 60},
                          headers=admin)
    check(spec, created, "/api/v1/rules", "post")
    check(spec, client.post(R, json={"name": "n", "condition": "every"}, headers=admin), "/api/v1/rules", "post")
    check(spec, client.post(R, json={"condition": "every"}, headers=admin), "/api/v1/rules", "post")
    check(spec, client.get(R, headers=admin), "/api/v1/rules", "get")
    one = "/api/v1/rules/{rule_id}"
    check(spec, client.get(f"{R}/{created.get_json()['id']}", headers=admin), one, "get")
    check(spec, client.get(f"{R}/999", headers=admin), one, "get")
    check(spec, client.get(R, headers=make_token("acme", "read")), "/api/v1/rules", "get")
    check(spec, client.get(f"{R}/channels", headers=admin), "/api/v1/rules/channels", "get")
    check(spec, client.post(f"{R}/channels", json={"name": "c", "kind": "slack", "target": "http://10.1.1.1/"},
                            headers=admin), "/api/v1/rules/channels", "post")
    check(spec, client.post("/api/v1/activities/test", headers=admin), "/api/v1/activities/test", "post")


def test_an_id_beyond_the_database_integer_is_a_404_not_a_500(client, make_token, make_user):
    """Found by `make fuzz`: ids past PostgreSQL's INTEGER overflowed the query."""
    admin = make_token("acme", "admin")
    huge = 3220523073083708416
    for method, path in [("delete", f"{R}/channels/{huge}"), ("get", f"{R}/channels/{huge}/deliveries"),
                         ("post", f"{R}/channels/{huge}/resume"), ("post", f"{R}/channels/{huge}/test"),
                         ("get", f"{R}/{huge}"), ("delete", f"{R}/{huge}")]:
        answer = getattr(client, method)(path, headers=admin)
        assert answer.status_code in (404, 405), (method, path, answer.status_code)  # no such route
        assert answer.get_json()["error"]["code"]

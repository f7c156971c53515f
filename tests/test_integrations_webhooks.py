"""Signed webhooks: GitHub, HubSpot, Salesforce and the generic one.

Recorded payloads (tests/fixtures/<provider>/) are signed here as each
provider signs them; the tenant comes from whose secret verifies.
"""
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from activityweb import store
from activityweb.integrations import signing
from test_openapi import check

FIXTURES = Path(__file__).parent / "fixtures"
SECRETS = {  # tenant -> integration -> secret
    "acme": {"github": "gh-secret-of-acme-0001", "hubspot": "6a0f4d2e-hub-spot-client-secret-acme",
             "salesforce": "sf-shared-secret-of-acme", "webhook": "wh-secret-of-acme-deploys"},
    "globex": {"github": "gh-secret-of-globex-02", "webhook": "wh-secret-of-globex-deploys"},
}


@pytest.fixture
def tenants(app):
    ids = {}
    with app.app_context():
        for slug, secrets in SECRETS.items():
            tenant = store.get_or_create_tenant(slug)
            ids[slug] = tenant.id
            for integration, secret in secrets.items():
                signing.set_secret(tenant, integration, "deploys" if integration == "webhook" else "", secret)
    return ids


def count(app, tenant_id: int) -> int:
    with app.app_context():
        return store.count_activities(tenant_id)


def fixture(path: str):
    return json.loads((FIXTURES / f"{path}.json").read_text())


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# ------------------------------------------------------------------- GitHub

GITHUB = "/api/v1/integrations/github"
GITHUB_EXPECTED = {
    "push": ("github.push", "Pushed 2 commits to acme/billing-api:main"),
    "pull_request_merged": ("github.pull_request.merged", "PR #417 merged: Paginate the users endpoint"),
    "issues_opened": ("github.issues.opened", "Issue #421 opened: Invoices list times out for large accounts"),
    "release_published": ("github.release.published", "Released acme/billing-api v1.14.0"),
    "workflow_run_completed": ("github.workflow_run.completed", "CI failed on acme/billing-api:main"),
    "star_created": ("github.star.created", "GitHub star created on acme/billing-api"),
    "ping": ("github.ping", "GitHub ping on acme/billing-api"),
}


def github(client, name: str, secret: str = SECRETS["acme"]["github"], body: bytes | None = None, **headers):
    recorded = fixture(f"github/{name}")
    body = body if body is not None else json.dumps(recorded["body"]).encode()
    signed = {**recorded["headers"], "X-Hub-Signature-256": "sha256=" + hmac_hex(secret, body), **headers}
    return client.post(GITHUB, data=body, content_type="application/json", headers=signed)


def test_the_github_signature_is_githubs():
    """The example in GitHub's "Validating webhook deliveries"."""
    digest = signing.hmac_sha256("It's a Secret to Everybody", b"Hello, World!").hex()
    assert digest == "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_every_github_fixture_is_expected():
    assert {p.stem for p in (FIXTURES / "github").glob("*.json")} == set(GITHUB_EXPECTED)


def test_github_events_are_mapped(client, tenants):
    for name, (activity_type, title) in GITHUB_EXPECTED.items():
        response = github(client, name)
        assert response.status_code == 201, (name, response.get_json())
        activity = response.get_json()["items"][0]
        assert (activity["type"], activity["title"]) == (activity_type, title), name
        assert (activity["source"], activity["tenant"]) == ("github", "acme")
        recorded = fixture(f"github/{name}")
        assert activity["source_id"] == github_key(recorded["headers"]["X-GitHub-Event"], recorded["body"])
        assert activity["data"]["delivery"] == recorded["headers"]["X-GitHub-Delivery"]
        assert activity["actor_id"] == "alice-martin" and activity["project"] == "billing-api"


def github_key(event: str, body) -> str:
    return f"{event}:{hashlib.sha256(json.dumps(body).encode()).hexdigest()}"


def test_a_captured_github_body_replayed_under_a_new_delivery_id_is_a_duplicate(client, tenants):
    first = github(client, "push")
    assert first.status_code == 201
    replay = github(client, "push", **{"X-GitHub-Delivery": "00000000-replayed-0000-000000000000"})
    assert replay.status_code == 200 and replay.get_json()["duplicates"] == 1
    assert replay.get_json()["items"][0]["id"] == first.get_json()["items"][0]["id"]
    # Another event name over the same body is another event.
    assert github(client, "push", **{"X-GitHub-Event": "ping"}).status_code == 201


def test_github_details(client, tenants):
    push = github(client, "push").get_json()["items"][0]
    assert push["actor_name"] == "Alice Martin" and push["summary"] == "Test the last page"
    assert push["occurred_at"] == "2026-11-20T09:16:41.000000Z"  # the head commit's time
    assert [c["id"] for c in push["data"]["commits"]] == ["1f3a9c0e5b7d", "7c2e4a6b8d0f"]
    run = github(client, "workflow_run_completed").get_json()["items"][0]
    assert (run["status"], run["priority"], run["duration_ms"]) == ("failed", "high", 402_000)
    merged = github(client, "pull_request_merged").get_json()["items"][0]
    assert (merged["entity_type"], merged["entity_id"]) == ("pull_request", "acme/billing-api#417")


def test_a_github_redelivery_is_a_duplicate(client, tenants):
    assert github(client, "push").status_code == 201
    again = github(client, "push")
    assert again.status_code == 200
    assert again.get_json()["duplicates"] == 1 and again.get_json()["items"][0]["duplicate"] is True


def test_github_signatures_are_checked(app, client, tenants):
    body = json.dumps(fixture("github/push")["body"]).encode()
    assert github(client, "push", secret="not-the-secret").status_code == 401
    tampered = body.replace(b"Test the last page", b"Drop the database")
    signed_then_tampered = {**fixture("github/push")["headers"], "X-Hub-Signature-256": "sha256=" + hmac_hex(
        SECRETS["acme"]["github"], body)}
    assert client.post(GITHUB, data=tampered, content_type="application/json",
                       headers=signed_then_tampered).status_code == 401
    unsigned = client.post(GITHUB, data=body, content_type="application/json", headers=fixture("github/push")["headers"])
    assert unsigned.status_code == 401 and unsigned.get_json()["error"]["code"] == "invalid_signature"
    assert count(app, tenants["acme"]) == count(app, tenants["globex"]) == 0


def test_the_signature_decides_the_tenant(app, client, tenants):
    response = github(client, "push", secret=SECRETS["globex"]["github"])
    assert response.get_json()["items"][0]["tenant"] == "globex"
    assert (count(app, tenants["acme"]), count(app, tenants["globex"])) == (0, 1)
    # The same delivery for the other tenant is its own event there.
    assert github(client, "push").status_code == 201
    assert count(app, tenants["acme"]) == 1


# ------------------------------------------------------------------ HubSpot

HUBSPOT = "/api/v1/integrations/hubspot"


def hubspot(client, name: str, *, secret: str = SECRETS["acme"]["hubspot"], age: float = 0, body: bytes | None = None,
            signed_url: str = "http://localhost" + HUBSPOT, path: str = HUBSPOT, tamper: bool = False):
    body = body if body is not None else json.dumps(fixture(f"hubspot/{name}")).encode()
    timestamp = str(int((time.time() - age) * 1000))
    message = b"POST" + signed_url.encode() + body + timestamp.encode()
    signature = base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()
    if tamper:
        body = body.replace(b"CRM_UI", b"API")
    headers = {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": timestamp,
               "X-HubSpot-Signature-Version": "v3"}
    return client.post(path, data=body, content_type="application/json", headers=headers)


def test_hubspot_events_are_mapped(client, tenants):
    created = hubspot(client, "contact_creation").get_json()["items"]
    assert [(a["type"], a["title"]) for a in created] == [("contact.created", "New contact 78123456001")]
    assert created[0]["occurred_at"] == "2026-11-20T10:20:00.123000Z"
    assert (created[0]["actor_id"], created[0]["entity_id"]) == ("userId:9912345", "78123456001")
    changed = hubspot(client, "contact_property_change").get_json()["items"][0]
    assert (changed["type"], changed["title"]) == (
        "contact.property_changed", "Contact 78123456001: lifecyclestage → salesqualifiedlead")
    batch = hubspot(client, "batch").get_json()
    assert batch["created"] == 2
    won, company = batch["items"]
    assert (won["type"], won["title"], won["priority"]) == ("deal.won", "Deal 30987654321 won", "high")
    assert (company["type"], company["title"]) == ("company.created", "New company 11223344556")


def test_a_hubspot_retry_is_a_duplicate(client, tenants):
    events = fixture("hubspot/batch")
    assert hubspot(client, "", body=json.dumps(events).encode()).status_code == 201
    for event in events:
        event["attemptNumber"] = 1  # what HubSpot changes when it retries
    retried = hubspot(client, "", body=json.dumps(events).encode())
    assert retried.status_code == 200 and retried.get_json()["duplicates"] == 2


def test_hubspot_signatures_are_checked(app, client, tenants):
    assert hubspot(client, "contact_creation", secret="wrong-client-secret-value").status_code == 401
    assert hubspot(client, "contact_creation", tamper=True).status_code == 401
    stale = hubspot(client, "contact_creation", age=6 * 60)
    assert stale.status_code == 401 and "5 minutes" in stale.get_json()["error"]["message"]
    assert hubspot(client, "contact_creation", age=-6 * 60).status_code == 401  # from the future
    assert hubspot(client, "contact_creation", signed_url="https://elsewhere.example" + HUBSPOT).status_code == 401
    assert client.post(HUBSPOT, json=fixture("hubspot/contact_creation")).status_code == 401
    assert count(app, tenants["acme"]) == 0
    assert hubspot(client, "contact_creation", age=4 * 60).status_code == 201  # inside the window


def test_hubspot_signs_the_public_url(app, client, tenants):
    """Behind a proxy the request reaches us as http://localhost; HubSpot signed the public URL."""
    app.config["PUBLIC_URL"] = "https://activity.acme.dev"
    assert hubspot(client, "contact_creation").status_code == 401
    public = "https://activity.acme.dev" + HUBSPOT
    assert hubspot(client, "contact_creation", signed_url=public).status_code == 201
    # HubSpot decodes some percent-encodings (here %3A) in the URI it signs.
    query = "?portal=48123456&since=10%3A00"
    assert hubspot(client, "contact_property_change", signed_url=public + "?portal=48123456&since=10:00",
                   path=HUBSPOT + query).status_code == 201


# --------------------------------------------------------------- Salesforce

SALESFORCE = "/api/v1/integrations/salesforce"


def salesforce(client, name: str, secret: str = SECRETS["acme"]["salesforce"], body=None):
    data = body if body is not None else json.dumps(fixture(f"salesforce/{name}")).encode()
    return client.post(SALESFORCE, data=data, content_type="application/json",
                       headers={"X-ActivityWeb-Secret": secret} if secret else {})


def test_salesforce_messages_are_mapped(client, tenants):
    event = salesforce(client, "platform_event").get_json()["items"][0]
    assert (event["type"], event["title"]) == ("salesforce.order_shipped", "Order Shipped")
    assert event["source_id"] == "30fc4ffe-4ab1-4b3b-9f5a-b6c8d5a1e2f3"
    assert event["data"]["payload"]["Tracking_Number__c"] == "JD014600006281230985"
    won = salesforce(client, "outbound_opportunity_won").get_json()["items"][0]
    assert (won["type"], won["title"], won["priority"]) == ("deal.won", "Deal won: Globex ($48,000)", "high")
    assert (won["entity_type"], won["entity_id"]) == ("opportunity", "0065g00000Xyz12AAB")
    lead = salesforce(client, "outbound_lead").get_json()["items"][0]
    assert (lead["type"], lead["title"]) == ("salesforce.lead.changed", "Lead Priya Raman changed")
    assert salesforce(client, "outbound_lead").status_code == 200  # a resend is a duplicate


def test_salesforce_secrets_are_checked(app, client, tenants):
    assert salesforce(client, "platform_event", secret="sf-shared-secret-of-someone").status_code == 401
    assert salesforce(client, "platform_event", secret=None).status_code == 401
    assert count(app, tenants["acme"]) == 0
    unknown = salesforce(client, "", body=b'{"sobject": "Account"}')
    assert unknown.status_code == 422 and count(app, tenants["acme"]) == 0


# ------------------------------------------------------------------ generic

WEBHOOK = "/api/v1/integrations/webhook/deploys"


def webhook(client, name: str = "deployment", *, secret: str = SECRETS["acme"]["webhook"], age: float = 0,
            body: bytes | None = None, path: str = WEBHOOK, header: str | None = None):
    body = body if body is not None else json.dumps(fixture(f"webhook/{name}")).encode()
    timestamp = str(int(time.time() - age))
    signature = header or f"t={timestamp},v1={hmac_hex(secret, timestamp.encode() + b'.' + body)}"
    return client.post(path, data=body, content_type="application/json",
                       headers={"X-ActivityWeb-Signature": signature})


def test_generic_webhooks_store_our_event_shape(client, tenants):
    one = webhook(client)
    assert one.status_code == 201
    activity = one.get_json()["items"][0]
    assert (activity["type"], activity["source"], activity["source_id"]) == (
        "deployment.succeeded", "webhook", "deploys:deploy-8812")
    assert activity["environment"] == "production" and activity["tenant"] == "acme"
    batch = webhook(client, "batch").get_json()
    assert batch["created"] == 2 and all(a["source_id"].startswith("deploys:") for a in batch["items"])


def test_a_generic_replay_is_a_duplicate(client, tenants):
    body = json.dumps(fixture("webhook/batch")).encode()
    timestamp = str(int(time.time()))
    header = f"t={timestamp},v1={hmac_hex(SECRETS['acme']['webhook'], timestamp.encode() + b'.' + body)}"
    assert webhook(client, body=body, header=header).status_code == 201
    assert webhook(client, body=body, header=header).status_code == 200  # the same request again
    assert webhook(client, body=body, age=30).status_code == 200  # re-signed later by a retrying sender


def test_generic_signatures_are_checked(app, client, tenants):
    assert webhook(client, secret="not-the-webhook-secret").status_code == 401
    assert webhook(client, age=6 * 60).status_code == 401
    assert webhook(client, age=-6 * 60).status_code == 401
    body = json.dumps(fixture("webhook/deployment")).encode()
    timestamp = str(int(time.time()))
    signature = hmac_hex(SECRETS["acme"]["webhook"], timestamp.encode() + b"." + body)
    tampered = body.replace(b"production", b"staging")
    assert webhook(client, body=tampered, header=f"t={timestamp},v1={signature}").status_code == 401
    assert webhook(client, path="/api/v1/integrations/webhook/billing").status_code == 401  # another name
    for header in ("", "v1=abc", f"t={timestamp}", "t=soon,v1=abc", f"t={timestamp}0000000000,v1={signature}"):
        assert webhook(client, header=header or " ").status_code == 401, header
    assert count(app, tenants["acme"]) == 0
    rotated = f"t={timestamp},v1={'0' * 64},v1={signature}"  # old and new secret during a rotation
    assert webhook(client, body=body, header=rotated).status_code == 201


def test_generic_webhook_names_and_tenants_stay_apart(app, client, tenants):
    assert webhook(client, secret=SECRETS["globex"]["webhook"]).get_json()["items"][0]["tenant"] == "globex"
    assert webhook(client).get_json()["items"][0]["tenant"] == "acme"
    assert (count(app, tenants["acme"]), count(app, tenants["globex"])) == (1, 1)


def test_an_invalid_event_with_a_valid_signature_is_refused_whole(app, client, tenants):
    bad = json.dumps([{"type": "ok.event", "title": "fine"}, {"type": "Not A Type", "title": "x"}]).encode()
    response = webhook(client, body=bad)
    assert response.status_code == 422 and response.get_json()["error"]["details"][0]["field"] == "[1].type"
    assert count(app, tenants["acme"]) == 0


# ------------------------------------------------------ what no one can break

@pytest.mark.parametrize("body", [b"", b"null", b"[]", b"{}", b'"text"', b"[1, 2]", b"[null]", b'{"a": NaN}',
                                  b"[" * 5000 + b"]" * 5000, b'{"action": 5, "repository": "x", "commits": "y"}'])
def test_odd_bodies_with_valid_signatures_never_fail_the_server(client, tenants, body):
    statuses = {
        "github": github(client, "push", body=body).status_code,
        "hubspot": hubspot(client, "", body=body).status_code,
        "salesforce": salesforce(client, "", body=body).status_code,
        "webhook": webhook(client, body=body).status_code,
    }
    assert all(status in (200, 201, 400, 422) for status in statuses.values()), statuses


def test_responses_match_the_openapi_document(client, tenants):
    spec = client.get("/api/v1/openapi.json").get_json()
    generic = "/api/v1/integrations/webhook/{name}"
    check(spec, github(client, "push"), GITHUB, "post")
    check(spec, github(client, "push"), GITHUB, "post")  # 200, duplicate
    check(spec, github(client, "push", secret="wrong-secret-entirely"), GITHUB, "post")
    check(spec, github(client, "push", body=b"[]"), GITHUB, "post")
    check(spec, hubspot(client, "batch"), HUBSPOT, "post")
    check(spec, hubspot(client, "batch", age=600), HUBSPOT, "post")
    check(spec, salesforce(client, "outbound_opportunity_won"), SALESFORCE, "post")
    check(spec, webhook(client), generic, "post")
    check(spec, webhook(client, body=b"nope"), generic, "post")
    check(spec, webhook(client, body=b'{"type": "x"}'), generic, "post")
    hook = "/api/v1/integrations/claude-code"
    assert client.post(hook, json={"hook_event_name": "Stop"}).status_code == 401
    check(spec, client.post(hook, json={"hook_event_name": "Stop"}), hook, "post")

"""Producers that are not plain API clients: Claude Code hooks and signed webhooks.

Views parse and answer; `integrations/*` normalise and `store` stores. A
webhook carries no bearer token: its signature (or shared secret) names the
tenant, and until it is verified nothing is read from the body or stored.
"""
from flask import current_app, g, request, url_for

from .. import store
from ..auth import Principal, require
from ..integrations import claude_code, github, hubspot, salesforce, webhook
from . import bp
from .activities import batch_answer


@bp.post("/integrations/claude-code")
@require("ingest")
def claude_code_hook():
    # Hooks post whole tool responses; they are cut before storage.
    request.max_content_length = current_app.config["CLAUDE_CODE_MAX_BODY"]
    tenant_id = g.principal.tenant_id
    events, is_batch = claude_code.events_from_body(tenant_id, request.get_data(cache=False))
    results = store.add_activities(tenant_id, events)
    # An empty body: Claude Code reads a hook's answer as instructions (text
    # becomes context, JSON a decision), and this hook only watches.
    response = current_app.response_class(status=201 if any(not r.duplicate for r in results) else 200)
    if not is_batch:
        response.headers["Location"] = url_for("api.get_activity", activity_id=results[0].activity["id"])
    return response


@bp.post("/integrations/github")
def github_webhook():
    body = request.get_data(cache=False)
    tenant = github.signer(request.headers, body)
    return stored(tenant, github.events(request.headers, body))


@bp.post("/integrations/hubspot")
def hubspot_webhook():
    body = request.get_data(cache=False)
    tenant = hubspot.signer(request.method, public_url(), request.headers, body)
    return stored(tenant, hubspot.events(body))


@bp.post("/integrations/salesforce")
def salesforce_webhook():
    tenant = salesforce.signer(request.headers)
    return stored(tenant, salesforce.events(request.get_data(cache=False)))


@bp.post("/integrations/webhook/<name>")
def generic_webhook(name: str):
    body = request.get_data(cache=False)
    tenant = webhook.signer(name, request.headers, body)
    return stored(tenant, webhook.events(name, body))


def public_url() -> str:
    """The URL the sender called: behind a proxy, ACTIVITYWEB_PUBLIC_URL gives its scheme and host."""
    base = current_app.config.get("PUBLIC_URL") or request.host_url
    query = request.query_string.decode("latin-1")
    return base.rstrip("/") + request.path + (f"?{query}" if query else "")


def stored(tenant: Principal, events: list[dict]):
    """Store a webhook's events; answered like a batch POST to /activities."""
    results = store.add_activities(tenant.tenant_id, events) if events else []
    return batch_answer(results, tenant.tenant_slug)

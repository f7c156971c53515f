"""Producers that are not plain API clients: Claude Code hooks and signed webhooks.

Views parse and answer; `integrations/*` normalise and `store` stores.
"""
from flask import current_app, g, request, url_for

from .. import store
from ..auth import require
from ..integrations import claude_code
from . import bp


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

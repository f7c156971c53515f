"""/api/v1/rules: rules, their channels, firings and deliveries (admin scope);
POST /api/v1/activities/test (ingest scope). `rules/manage.py` does the work."""
from __future__ import annotations

from flask import g, jsonify, request

from ..auth import require
from ..errors import ApiError, found
from ..rules import manage
from ..store import outbox
from ..store import rules as store_rules
from ..serialize import activity_json
from . import bp


def _body():
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.",
                       [{"field": "body", "message": "expected a JSON object"}])
    return body


def _rule(rule_id: int):
    return found(store_rules.get_rule(g.principal.tenant_id, rule_id), f"No rule {rule_id} in this tenant.")


def _channel(channel_id: int):
    return found(store_rules.get_channel(g.principal.tenant_id, channel_id), f"No channel {channel_id} in this tenant.")


@bp.get("/rules")
@require("admin")
def list_rules():
    return jsonify({"items": [manage.rule_json(r) for r in store_rules.list_rules(g.principal.tenant_id)]})


@bp.post("/rules")
@require("admin")
def create_rule():
    return jsonify(manage.rule_json(manage.save_rule(g.principal.tenant_id, _body()))), 201


@bp.get("/rules/<id:rule_id>")
@require("admin")
def get_rule(rule_id: int):
    rule = _rule(rule_id)
    firings = outbox.recent_firings(g.principal.tenant_id, rule_id=rule.id)
    return jsonify({**manage.rule_json(rule), "recent_firings": [manage.firing_json(m) for m in firings]})


@bp.put("/rules/<id:rule_id>")
@require("admin")
def replace_rule(rule_id: int):
    return jsonify(manage.rule_json(manage.save_rule(g.principal.tenant_id, _body(), _rule(rule_id))))


@bp.delete("/rules/<id:rule_id>")
@require("admin")
def delete_rule(rule_id: int):
    _rule(rule_id)
    store_rules.delete_rule(g.principal.tenant_id, rule_id)
    return "", 204


@bp.get("/rules/channels")
@require("admin")
def list_channels():
    return jsonify({"items": [manage.channel_json(c) for c in store_rules.list_channels(g.principal.tenant_id)]})


@bp.post("/rules/channels")
@require("admin")
def create_channel():
    channel, secret = manage.create_channel(g.principal.tenant_id, _body())
    return jsonify({**manage.channel_json(channel), "secret": secret}), 201, {"Cache-Control": "no-store"}


@bp.delete("/rules/channels/<id:channel_id>")
@require("admin")
def delete_channel(channel_id: int):
    _channel(channel_id)
    store_rules.delete_channel(g.principal.tenant_id, channel_id)
    return "", 204


@bp.get("/rules/channels/<id:channel_id>/deliveries")
@require("admin")
def channel_deliveries(channel_id: int):
    channel = _channel(channel_id)
    log = outbox.delivery_log(g.principal.tenant_id, channel.id)
    return jsonify({"channel": manage.channel_json(channel), "items": [manage.attempt_json(a) for a in log]})


@bp.post("/rules/channels/<id:channel_id>/test")
@require("admin")
def test_channel(channel_id: int):
    return jsonify(manage.result_json(manage.test_channel(g.principal.tenant_slug, _channel(channel_id))))


@bp.post("/rules/channels/<id:channel_id>/resume")
@require("admin")
def resume_channel(channel_id: int):
    _channel(channel_id)
    return jsonify(manage.channel_json(store_rules.resume_channel(g.principal.tenant_id, channel_id)))


@bp.post("/rules/firings/<message_id>/redeliver")
@require("admin")
def redeliver(message_id: str):
    if not outbox.redeliver(g.principal.tenant_id, message_id):
        raise ApiError(404, "not_found", f"No deliverable firing {message_id!r} in this tenant.")
    return jsonify(manage.firing_json(outbox.get_message(g.principal.tenant_id, message_id))), 202


@bp.post("/activities/test")
@require("ingest")
def test_event():
    who = g.principal.user_email or (f"token {g.principal.token_id}" if g.principal.token_id else "local mode")
    activity, published_ms = manage.send_test_event(g.principal.tenant_id, who)
    return jsonify({"activity": activity_json(activity, g.principal.tenant_slug), "test": True,
                    "published_ms": round(published_ms, 2)}), 201

"""What the API, the settings page and the CLI share: managing rules and
channels in a tenant, testing a channel, and sending a test event.

Faults come back as `ApiError`s with the field at fault, so the JSON API
answers them as they are and the pages show their details.
"""
from __future__ import annotations

import time

from flask import current_app

from .. import store
from ..errors import ApiError, invalid_body
from ..models import utcnow
from ..schemas import parse_events
from ..serialize import iso
from ..store import outbox
from ..store import rules as store_rules
from . import channels
from .conditions import describe, parse_rule


def save_rule(tenant_id: int, body, rule=None):
    fields = parse_rule(body)
    try:
        return store_rules.save_rule(tenant_id, fields, rule)
    except LookupError:
        raise invalid_body("No such channel in this tenant.", "no such channel", "channel_id") from None
    except store_rules.RuleConflict as exc:
        raise ApiError(409, "conflict", str(exc), [{"field": "name", "message": "is taken"}]) from None


def create_channel(tenant_id: int, body) -> tuple:
    """A new channel and, for a webhook, its signing secret (shown once)."""
    if not isinstance(body, dict):
        raise invalid_body("The body must be a JSON object.", "expected an object")
    name = str(body.get("name") or "").strip()[:100]
    if not name:
        raise invalid_body("A channel needs a name.", "is required", "name")
    unknown = set(body) - {"name", "kind", "target"}
    if unknown:
        raise invalid_body("Unknown field(s).", "is not a known field", sorted(unknown)[0])
    try:
        target = channels.check_channel(str(body.get("kind") or ""), str(body.get("target") or ""),
                                        current_app.config)
    except channels.ChannelError as exc:
        raise invalid_body(f"{exc.field}: {exc.message}", exc.message, exc.field) from None
    secret = channels.new_secret() if body["kind"] == "webhook" else None
    try:
        channel = store_rules.create_channel(tenant_id, name, body["kind"], target, secret)
    except store_rules.RuleConflict as exc:
        raise ApiError(409, "conflict", str(exc), [{"field": "name", "message": "is taken"}]) from None
    return channel, secret


def test_channel(tenant_slug: str, channel):
    """Send a sample delivery now and answer with what the receiver said (logged like any attempt)."""
    payload = channels.sample_payload(tenant_slug, channel.name)
    message_id = outbox.message_id()
    result = channels.send({"kind": channel.kind, "target": channel.target, "secret": channel.secret,
                            "name": channel.name}, message_id, payload, current_app.config)
    outbox.record_attempt(channel.tenant_id, channel.id, None, result, utcnow())
    return result


def send_test_event(tenant_id: int, who: str) -> tuple[dict, float]:
    """Store a clearly marked test event; (the stored event, ms from the call until it was published live)."""
    started = time.perf_counter()
    body = {"type": "system.test", "source": "system", "title": "Test event: the live path works",
            "summary": f"Sent by {who} with “Send a test event”. Nothing happened; this checks delivery.",
            "actor_name": who, "priority": "low", "tags": ["test"], "data": {"test": True}}
    import json

    events, _ = parse_events(json.dumps(body).encode(), 1)
    [stored] = store.add_activities(tenant_id, events)
    # add_activities returns once the row is committed and handed to the live hub.
    return stored.activity, (time.perf_counter() - started) * 1000


# ------------------------------------------------------------------- shapes


def rule_json(rule) -> dict:
    return {"id": rule.id, "name": rule.name, "filter": rule.filter, "condition": rule.condition,
            "threshold": rule.threshold, "window_seconds": rule.window_seconds, "percent": rule.percent,
            "metric": rule.metric, "budget": rule.budget, "cooldown_seconds": rule.cooldown_seconds,
            "channel_id": rule.channel_id, "enabled": rule.enabled, "description": describe(rule),
            "created_at": iso(rule.created_at), "last_fired_at": iso(rule.last_fired_at)}


def channel_json(channel) -> dict:
    return {"id": channel.id, "name": channel.name, "kind": channel.kind, "target": channel.target,
            "created_at": iso(channel.created_at), "paused": channel.paused_at is not None,
            "paused_at": iso(channel.paused_at), "pause_reason": channel.pause_reason,
            "consecutive_failures": channel.consecutive_failures}


def firing_json(message: dict) -> dict:
    return {"id": message["id"], "rule_id": message["rule_id"], "channel_id": message["channel_id"],
            "kind": message["kind"], "created_at": iso(message["created_at"]), "reason": message["reason"],
            "status": message["status"], "attempts": message["attempts"],
            "next_attempt_at": iso(message["next_attempt_at"]) if message["status"] == "pending" else None,
            "last_status_code": message["last_status_code"], "last_error": message["last_error"],
            "delivered_at": iso(message["delivered_at"]), "payload": message["payload"]}


def attempt_json(attempt: dict) -> dict:
    return {"id": attempt["id"], "message_id": attempt["message_id"], "attempted_at": iso(attempt["attempted_at"]),
            "ok": attempt["ok"], "status_code": attempt["status_code"], "error": attempt["error"],
            "duration_ms": attempt["duration_ms"], "response": attempt["response_excerpt"]}


def result_json(result) -> dict:
    return {"ok": result.ok, "status_code": result.status, "error": result.error,
            "duration_ms": int(result.seconds * 1000), "response": (result.body or "")[:500]}

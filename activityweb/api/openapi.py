"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of every endpoint.

Event schemas come from the pydantic models that validate requests, so the
document cannot drift from what the server accepts.
"""
from __future__ import annotations

from functools import lru_cache

from flask import jsonify

from ..filters import FIELDS
from ..schemas import ActivityIn
from ..serialize import ActivityOut, StatsOut
from . import bp, openapi_usage
from .rules_openapi import rules_paths, rules_schemas

def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict:
    text = {
        400: "Malformed request or bad parameter",
        401: "Missing, unknown or revoked token",
        403: "The token lacks the needed scope",
        404: "Not found in this tenant",
        413: "Body over 1 MiB",
        415: "The body is not application/json",
        422: "Invalid event(s)",
        429: "Rate limited; see Retry-After",
        503: "The database is unavailable (code `unavailable`); retry after Retry-After seconds",
    }
    # Every operation reads or writes the database, so any may answer 503.
    return {str(s): _json(_ref("Error"), text[s]) for s in (*statuses, 503)}


def filter_parameters() -> list[dict]:
    """The filter's query parameters, one per field of its table (`filters.FIELDS`)."""
    return [{"name": f.name, "in": "query", "required": False, "description": f.description, "schema": f.schema(),
             **({"style": "form", "explode": True} if f.kind.repeatable else {})} for f in FIELDS]


PAGE_PARAMETERS = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
    {"name": "cursor", "in": "query", "description": "`next_cursor` of the previous page.", "schema": {"type": "string"}},
]


CONVERSATION_PARAMETERS = [
    {"name": "person", "in": "query", "description": "Someone in the conversation: an event's `actor_id` or "
     "`actor_name`, case-insensitive.", "schema": {"type": "string", "maxLength": 200}},
    {"name": "failed", "in": "query", "description": "`true`: only conversations with a failed event.",
     "schema": {"type": "string", "enum": ["true", "false"]}},
    {"name": "state", "in": "query", "description": "`running` or `ended` (see `state` in the answer).",
     "schema": {"type": "string", "enum": ["running", "ended"]}},
]


def components() -> dict:
    activity_in = ActivityIn.model_json_schema(ref_template="#/components/schemas/{model}")
    activity_out = ActivityOut.model_json_schema(ref_template="#/components/schemas/{model}")
    activity_out["additionalProperties"] = False
    return {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "ActivityIn": activity_in,
            "Activity": activity_out,
            "ActivityPage": {
                "type": "object",
                "required": ["items", "next_cursor"],
                "properties": {
                    "items": {"type": "array", "items": _ref("Activity")},
                    "next_cursor": {"type": ["string", "null"]},
                },
            },
            "BatchResult": {
                "type": "object",
                "required": ["items", "created", "duplicates"],
                "properties": {
                    "items": {"type": "array", "items": _ref("Activity")},
                    "created": {"type": "integer"},
                    "duplicates": {"type": "integer"},
                },
            },
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message", "details"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "details": {"type": "array", "items": {"type": "object"}},
                        },
                    }
                },
            },
            "Health": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
            **insight_schemas(),
            **rules_schemas(),
        },
    }


def paths() -> dict:
    return {
        "/api/v1/activities": {
            "post": {
                "summary": "Post one event, or a batch of up to 1,000 in one statement",
                "operationId": "createActivities",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"oneOf": [
                        _ref("ActivityIn"),
                        {"type": "array", "items": _ref("ActivityIn"), "minItems": 1, "maxItems": 1000},
                    ]}}},
                },
                "responses": {
                    "201": _json({"oneOf": [_ref("Activity"), _ref("BatchResult")]}, "Stored"),
                    "200": _json({"oneOf": [_ref("Activity"), _ref("BatchResult")]},
                                 "Already stored (idempotent repeat); `duplicate` is true"),
                    **_errors(400, 401, 403, 413, 415, 422, 429),
                },
            },
            "get": {
                "summary": "List activities, newest first, in keyset pages",
                "operationId": "listActivities",
                "parameters": filter_parameters() + PAGE_PARAMETERS,
                "responses": {"200": _json(_ref("ActivityPage"), "One page"), **_errors(400, 401, 403, 429)},
            },
        },
        "/api/v1/activities/{activity_id}": {
            "get": {
                "summary": "One activity",
                "operationId": "getActivity",
                "parameters": [{"name": "activity_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref("Activity"), "The activity"), **_errors(401, 403, 404)},
            }
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "operationId": "openapi", "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1 document"}}}
        },
        "/healthz": {
            "get": {"summary": "The process is up", "operationId": "healthz", "security": [],
                    "responses": {"200": _json(_ref("Health"), "Up")}}
        },
        "/readyz": {
            "get": {"summary": "The database is reachable and migrated", "operationId": "readyz", "security": [],
                    "responses": {"200": _json(_ref("Health"), "Ready"),
                                  "503": _json(_ref("Health"), "Not ready")}}
        },
        **integration_paths(),
        **stream_paths(),
        **insight_paths(),
        **rules_paths(),
    }


def stream_paths() -> dict:
    """Live streams for programs (api/streams.py)."""
    position = {"type": "string", "pattern": r"^\d+-[0-9a-f]{32}(~\d+-[0-9a-f]{32})*$",
                "description": "A position in the log of events, in commit order: opaque, keep it as given. "
                "Every event a stream sends carries the position after it; resuming from one sends exactly "
                "what came after, each event once (an event committed late, or with an old occurred_at, is "
                "still after it). It survives retention deleting old events."}
    resume = {"name": "since", "in": "query", "required": False,
              "description": "A position (see the schema), or an event id (resume after that event): replay "
              "what came after it, then go live. Over 10,000 events behind, or behind what retention deleted, "
              "the stream answers `reset` with a fresh position instead. A time instead is the occurred_at "
              "filter, as on the list.", "schema": {"type": "string"}}
    filters = [p for p in filter_parameters() if p["name"] != "since"] + [resume]
    return {
        "/api/v1/activities/stream": {
            "get": {
                "summary": "Server-Sent Events: each new matching activity as it commits",
                "description": "`event: activity_created`, `id:` the position after the activity, `data:` the "
                "activity JSON. Resumes from `Last-Event-ID` (or `since=`), replaying exactly what was missed, "
                "in commit order. Too far behind: `event: reset` with `id:` a fresh position (reload, then go on "
                "from there). Keep-alive comments every 15 s; a server restart ends the stream cleanly "
                "(EventSource reconnects). Same filters as the list.",
                "operationId": "streamActivities",
                "parameters": filters + [{"name": "Last-Event-ID", "in": "header", "required": False,
                                          "schema": position}],
                "responses": {"200": {"description": "An event stream",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                              **_errors(400, 401, 403)},
            }
        },
        "/ws": {
            "get": {
                "summary": "WebSocket: `{\"type\": \"activity_created\", \"activity\": {...}, \"position\": "
                "\"...\"}` per new matching activity",
                "description": "Upgrade with the bearer token in `Authorization`. Same filters as the list; "
                "`since=<position>` replays exactly what came after it first, then `{\"type\": \"position\", "
                "\"position\": \"...\"}` says where the stream stands. Too far behind: "
                "`{\"type\": \"reset\", \"position\": \"...\"}`, then live from that position. Closes with "
                "1012 when the server restarts and 1013 when the client fell behind: reconnect with the last "
                "position.",
                "operationId": "activitySocket",
                "parameters": filters,
                "responses": {"101": {"description": "Switching protocols"}, **_errors(400, 401, 403)},
            }
        },
    }


CLAUDE_CODE_HOOK = {
    "type": "object",
    "description": "The JSON Claude Code sends any hook (https://code.claude.com/docs/en/hooks). "
    "`activityweb_occurred_at` is added by hooks/activityweb_hook.py: when the hook ran.",
    "required": ["hook_event_name"],
    "properties": {
        "hook_event_name": {"type": "string"},
        "session_id": {"type": "string"},
        "cwd": {"type": "string"},
        "tool_name": {"type": "string"},
        "tool_use_id": {"type": "string"},
        "activityweb_occurred_at": {"type": "string", "format": "date-time"},
    },
    "additionalProperties": True,
}


def integration_paths() -> dict:
    """Producer endpoints (api/integrations.py): Claude Code hooks and signed webhooks."""
    stored_headers = {"Location": {"description": "The stored activity (single payloads only).",
                                   "schema": {"type": "string"}}}
    generic = "/api/v1/integrations/webhook/{name}"
    return {
        "/api/v1/integrations/claude-code": {
            "post": {
                "summary": "A Claude Code hook event (HTTP hook), or an array of them (the command hook's spool)",
                "description": "One activity per payload; see the README's Producers section. Bodies may be "
                "up to CLAUDE_CODE_MAX_BODY (8 MiB); long fields are cut and secrets masked before storage.",
                "operationId": "claudeCodeHook",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    CLAUDE_CODE_HOOK,
                    {"type": "array", "items": CLAUDE_CODE_HOOK, "minItems": 1, "maxItems": 1000},
                ]}}}},
                "responses": {
                    # Empty bodies: Claude Code reads a hook's answer as instructions.
                    "201": {"description": "Stored (empty body)", "headers": stored_headers},
                    "200": {"description": "Already stored: a retried delivery (empty body)", "headers": stored_headers},
                    **_errors(400, 401, 403, 413, 415, 422),
                },
            }
        },
        "/api/v1/integrations/github": _webhook(
            "A GitHub webhook delivery", "githubWebhook",
            "Verified by X-Hub-Signature-256 against each tenant's GitHub secret; X-GitHub-Delivery is the "
            "idempotency key, so a redelivery is a duplicate. push, pull_request, issues, release and "
            "workflow_run are mapped; other events are recorded as github.<event>[.<action>].",
            [("X-Hub-Signature-256", "`sha256=` and the hex HMAC-SHA256 of the body", True),
             ("X-GitHub-Event", "The event name", True), ("X-GitHub-Delivery", "The delivery GUID", True)],
            {"type": "object"},
        ),
        "/api/v1/integrations/hubspot": _webhook(
            "HubSpot webhook events (an array)", "hubspotWebhook",
            "Verified by the v3 signature: base64 HMAC-SHA256 of method + URI + body + timestamp with the "
            "app's client secret; refused when the timestamp is more than 5 minutes from our clock.",
            [("X-HubSpot-Signature-v3", "The v3 signature", True),
             ("X-HubSpot-Request-Timestamp", "Milliseconds since the epoch", True)],
            {"type": "array", "items": {"type": "object"}},
        ),
        "/api/v1/integrations/salesforce": _webhook(
            "Salesforce Platform Events or outbound record notifications, as JSON", "salesforceWebhook",
            "Authenticated by the tenant's shared secret in X-ActivityWeb-Secret. The body is a Platform Event "
            "({channel, data: {payload, event}}) or an outbound message ({OrganizationId, Notification: "
            "[{Id, sObject}]}), or an array of them.",
            [("X-ActivityWeb-Secret", "The secret set with `flask integrations set-secret`", True)],
            {"oneOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}]},
        ),
        generic: {
            **_webhook(
                "Events in our own shape from anyone holding the webhook's secret", "genericWebhook",
                "Signed: `X-ActivityWeb-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">`, "
                "refused beyond 5 minutes. The body is one event or an array, as for POST /activities; events "
                "are stored with source `webhook` and source ids prefixed by the webhook's name.",
                [("X-ActivityWeb-Signature", "`t=<unix seconds>,v1=<hex signature>`", True)],
                {"oneOf": [_ref("ActivityIn"), {"type": "array", "items": _ref("ActivityIn"), "maxItems": 1000}]},
            ),
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "The webhook's name, as given to `flask integrations set-secret`."}],
        },
    }


def _webhook(summary: str, operation_id: str, description: str, headers: list, body: dict) -> dict:
    """A signed webhook: no bearer token, answered like a batch POST to /activities."""
    return {
        "post": {
            "summary": summary,
            "operationId": operation_id,
            "description": description,
            "security": [],
            "parameters": [{"name": name, "in": "header", "required": required, "description": text,
                            "schema": {"type": "string"}} for name, text, required in headers],
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": {
                "201": _json(_ref("BatchResult"), "Stored"),
                "200": _json(_ref("BatchResult"), "Already stored: a redelivery (every item has duplicate: true)"),
                "401": _json(_ref("Error"), "Missing, stale or invalid signature or secret; nothing stored"),
                **_errors(400, 413, 415, 422),
            },
        }
    }


def insight_schemas() -> dict:
    """Answers of the endpoints that make sense of the feed (`insight_paths`)."""
    time = {"type": "string", "format": "date-time"}
    nullable_text = {"type": ["string", "null"]}
    summary = {
        "type": "object",
        "required": ["id", "first_prompt", "event_count", "started_at", "last_at", "span_ms", "failures", "project",
                     "state"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "first_prompt": {**nullable_text, "description": "The first event whose entity_type is `prompt`."},
            "event_count": {"type": "integer"},
            "started_at": time,
            "last_at": time,
            "span_ms": {"type": "integer", "description": "From the first event to the last."},
            "failures": {"type": "integer", "description": "Events with status `failed`."},
            "project": nullable_text,
            "state": {"type": "string", "enum": ["running", "ended"],
                      "description": "`ended` once a `claude.session.ended` event came or after 30 minutes idle."},
        },
    }
    return {
        "ConversationSummary": summary,
        "ReadState": {
            "type": "object", "required": ["unread_count"],
            "properties": {
                "id": {"type": "string"},
                "read": {"type": "boolean"},
                "unread_count": {"type": "integer",
                                 "description": "Feed rows this token has not read, counted up to 1,000: a tool "
                                                "call's start and outcome (same correlation id) are one row."},
            },
        },
        **_stats_schemas(),
        "ConversationList": {
            "type": "object", "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": _ref("ConversationSummary")},
                           "next_cursor": {"type": ["string", "null"],
                                           "description": "Pass as `cursor` for the next page; null on the last."}},
        },
        "ConversationStep": {
            "type": "object",
            "required": ["kind", "status", "failed", "running", "duration_ms", "event", "result", "steps"],
            "additionalProperties": False,
            "properties": {
                "kind": {"type": "string", "enum": ["prompt", "tool", "subagent", "reply", "session", "event"]},
                "status": nullable_text,
                "failed": {"type": "boolean"},
                "running": {"type": "boolean", "description": "Started, and no result yet."},
                "duration_ms": {"type": ["integer", "null"],
                                "description": "The result's duration, else the time from the event to its result."},
                "event": _ref("Activity"),
                "result": {"oneOf": [_ref("Activity"), {"type": "null"}],
                           "description": "The event that finished this one (same correlation_id)."},
                "steps": {"type": "array", "items": _ref("ConversationStep"),
                          "description": "Nested: what a subagent did, a subagent under the call that spawned it."},
            },
        },
        "Conversation": {
            **summary,
            "required": summary["required"] + ["truncated", "steps"],
            "properties": {
                **summary["properties"],
                "truncated": {"type": "boolean", "description": "Only the first 5,000 events are shown."},
                "steps": {"type": "array", "items": _ref("ConversationStep")},
            },
        },
    }


def _stats_schemas() -> dict:
    """`Stats` and the parts it is made of, from the model that builds the answer."""
    schema = StatsOut.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    return {**schema.pop("$defs"), "Stats": schema}


def insight_paths() -> dict:
    """Endpoints that make sense of the feed: conversation timelines, read state, stats, export."""
    up_to = {"name": "up_to", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "An event id: mark only events received up to it (default: the newest now), "
             "so events arriving meanwhile stay unread."}
    return {
        "/api/v1/activities/{activity_id}/read": {
            "patch": {
                "summary": "Mark one activity read, for this token",
                "description": "Read state belongs to the caller (each token has its own), not to the event.",
                "operationId": "markRead",
                "parameters": [{"name": "activity_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref("ReadState"), "Marked read"), **_errors(401, 403, 404, 429)},
            }
        },
        "/api/v1/activities/stats": {
            "get": {
                "summary": "Counts, a time series, top lists, failure rate and durations of what the filters match",
                "operationId": "activityStats",
                "parameters": filter_parameters() + [{
                    "name": "bucket", "in": "query", "required": False,
                    "schema": {"type": "string", "enum": ["auto", "hour", "day"], "default": "auto"},
                    "description": "The time series step; `auto` is hours for spans up to three days. More than "
                    "2,000 points is a 400."}],
                "responses": {"200": _json(_ref("Stats"), "The stats"), **_errors(400, 401, 403, 429)},
            }
        },
        "/api/v1/activities/export": {
            "get": {
                "summary": "Every activity the filters match, newest first, as CSV or NDJSON, streamed",
                "description": "Streamed in constant memory (a server-side cursor), so any number of rows. NDJSON: "
                "one activity a line, exactly as the list shows it. CSV: the same fields as columns (tags and "
                "data as JSON, null as empty); a cell starting with = + - @ gets a leading ' so spreadsheets do "
                "not run it.",
                "operationId": "exportActivities",
                "parameters": filter_parameters() + [{
                    "name": "format", "in": "query", "required": False,
                    "schema": {"type": "string", "enum": ["csv", "ndjson"], "default": "csv"}}],
                "responses": {
                    "200": {"description": "A download (Content-Disposition: attachment)", "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        "application/x-ndjson": {"schema": {"type": "string"}}}},
                    **_errors(400, 401, 403, 429),
                },
            }
        },
        "/api/v1/activities/read-all": {
            "post": {
                "summary": "Mark read every activity the filters match, for this token",
                "description": "Without filters this moves the token's \"read up to\" point (receive order); "
                "with filters it marks each matching unread activity.",
                "operationId": "markAllRead",
                "parameters": filter_parameters() + [up_to],
                "responses": {"200": _json(_ref("ReadState"), "Marked read"), **_errors(400, 401, 403, 429)},
            }
        },
        "/api/v1/conversations": {
            "get": {
                "summary": "Conversations and sessions, the most recently active first, paged to the end",
                "description": "Conversations (a Claude Code session is one) with at least one event the feed "
                "filters match (`q` searches their events, `project` is theirs), narrowed by `person`, `failed` and "
                "`state`; each with its first prompt, event count, span, failures and state over all of its events. "
                "Ordered by their newest event (then id, descending); `next_cursor` pages on to the end.",
                "operationId": "listConversations",
                "parameters": filter_parameters() + CONVERSATION_PARAMETERS + [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                                                "default": 20}}, PAGE_PARAMETERS[1]],
                "responses": {"200": _json(_ref("ConversationList"), "Conversations"), **_errors(400, 401, 403, 429)},
            }
        },
        "/api/v1/conversations/{conversation_id}": {
            "get": {
                "summary": "One conversation as a timeline",
                "description": "Its events in `sequence` order (then time) as steps: a started event paired with "
                "the event that finished it (same `correlation_id`) and the duration between, subagents nested "
                "under the tool call that spawned them.",
                "operationId": "getConversation",
                "parameters": [{"name": "conversation_id", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json(_ref("Conversation"), "The timeline"), **_errors(401, 403, 404, 429)},
            }
        },
    }


@lru_cache(maxsize=1)
def document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ActivityWeb API",
            "version": "1.0.0",
            "description": "Post activity events from any producer; read them back filtered and paged. "
            "Errors are `{\"error\": {\"code\", \"message\", \"details\"}}`.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": {**paths(), **openapi_usage.paths()},
        "components": _with_usage(components()),
    }


def _with_usage(found: dict) -> dict:
    found["schemas"].update(openapi_usage.schemas())
    openapi_usage.extend_conversations(found)
    return found


@bp.get("/openapi.json")
def openapi_document():
    return jsonify(document())

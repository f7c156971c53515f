"""The OpenAPI parts of Claude Code's telemetry and sessions: the OTLP
receiver, usage stats, the usage fields of conversations, the running
sessions and who waits (merged into `openapi.document`)."""
from __future__ import annotations


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: int) -> dict:
    return {str(s): {"description": "An error", "content": {"application/json": {"schema": _ref("Error")}}}
            for s in statuses}


USAGE = {
    "type": "object",
    "required": ["cost_usd", "cost_usd_exact", "tokens", "total_tokens"],
    "properties": {
        "cost_usd": {"type": "number"},
        "cost_usd_exact": {"type": "string", "description": "The exact decimal sum of the exported costs."},
        "tokens": {"type": "object", "properties": {k: {"type": "integer"} for k in
                                                    ("input", "output", "cacheRead", "cacheCreation")}},
        "total_tokens": {"type": "integer"},
        "requests": {"type": "integer", "description": "API calls counted (turns)."},
        "by_model": {"type": "object", "additionalProperties": _ref("Usage")},
    },
}
NULLABLE_USAGE = {"oneOf": [_ref("Usage"), {"type": "null"}]}


def _group(key: str) -> dict:
    return {"type": "array", "items": {"allOf": [_ref("Usage"), {"type": "object",
                                                                  "properties": {key: {"type": ["string", "null"]}}}]}}


WAITING = {
    "type": "object", "required": ["session_id", "since", "asks", "kind", "event_id"],
    "properties": {"session_id": {"type": "string"}, "project": {"type": ["string", "null"]},
                   "since": {"type": "string", "format": "date-time"},
                   "asks": {"type": "string", "description": "What it asks: the first waiting event's title."},
                   "kind": {"type": "string", "enum": ["permission", "question", "idle", "input"]},
                   "event_id": {"type": "string"}, "agent": {"type": ["string", "null"]}},
}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
LANE = {
    "type": "object", "required": ["id", "session_id", "name", "state", "pulse", "subagents"],
    "properties": {
        "id": {"type": "string", "description": "The session id, or a subagent's agent_id."},
        "session_id": {"type": "string"}, "name": {"type": "string"},
        "state": {"type": "string", "enum": ["tool", "waiting", "idle", "ended"]},
        "started_at": {"type": "string", "format": "date-time"}, "last_at": {"type": "string", "format": "date-time"},
        "tool": {"type": ["string", "null"], "description": "The running tool call's title."},
        "tool_since": NULLABLE_TIME, "last_prompt": {"type": ["string", "null"]},
        "waiting": {"oneOf": [_ref("WaitingSession"), {"type": "null"}]},
        "pulse": {"type": "array", "items": {"type": "integer"},
                  "description": "Events per 10 seconds over the last five minutes, oldest first."},
        "usage": NULLABLE_USAGE,
        "subagents": {"type": "array", "items": _ref("SessionLane")},
    },
}


def _items(name: str) -> dict:
    return {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": _ref(name)}}}


def schemas() -> dict:
    return {
        "WaitingSession": WAITING,
        "SessionLane": LANE,
        "Usage": USAGE,
        "UsageStats": {
            "type": "object", "required": ["total", "bucket", "series", "by_model", "by_project", "by_actor"],
            "properties": {"total": _ref("Usage"), "bucket": {"type": "string", "enum": ["day", "hour"]},
                           "series": _group("at"), "by_model": _group("model"),
                           "by_project": _group("project"), "by_actor": _group("actor")},
        },
    }


def _otlp(signal: str, operation_id: str) -> dict:
    body = {"application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": {"type": "object"}}}
    return {"post": {
        "summary": f"OTLP/HTTP {signal} export (Claude Code's OpenTelemetry exporter)",
        "description": "Base URL for OTEL_EXPORTER_OTLP_ENDPOINT: `<server>/api/v1/otlp`. protobuf or OTLP/JSON, "
        "optionally `Content-Encoding: gzip`, up to OTLP_MAX_BODY (8 MiB) inflated. Answered with the "
        f"Export{signal.title()}ServiceResponse in the request's encoding; `partial_success` counts what was not taken.",
        "operationId": operation_id,
        "requestBody": {"required": True, "content": body},
        "responses": {"200": {"description": "Taken (a resent export stores nothing new)", "content": body},
                      **_errors(400, 401, 403, 413, 415, 429)},
    }}


def paths() -> dict:
    return {
        "/api/v1/otlp/v1/logs": _otlp("logs", "otlpLogs"),
        "/api/v1/otlp/v1/metrics": _otlp("metrics", "otlpMetrics"),
        "/api/v1/sessions": {"get": {
            "summary": "A lane per Claude Code session active in the last hour, running ones first",
            "operationId": "sessionLanes",
            "responses": {"200": {"description": "Lanes", "content": {"application/json": {"schema": _items("SessionLane")}}},
                          **_errors(401, 403, 429)},
        }},
        "/api/v1/sessions/waiting": {"get": {
            "summary": "Claude Code sessions waiting on a person, the longest waiting first",
            "description": "A permission request, an elicitation, or a permission_prompt, idle_prompt, "
            "elicitation_dialog or agent_needs_input notification with nothing after it that moves the session on.",
            "operationId": "waitingSessions",
            "responses": {"200": {"description": "Waiting sessions",
                                  "content": {"application/json": {"schema": _items("WaitingSession")}}},
                          **_errors(401, 403, 429)},
        }},
        "/api/v1/usage/stats": {"get": {
            "summary": "Claude Code's cost and tokens: total, per day, by model, project and actor",
            "operationId": "usageStats",
            "parameters": [*({"name": n, "in": "query", "required": False, "schema": {"type": "string", "format": "date-time"}}
                             for n in ("since", "until")),
                           {"name": "bucket", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["day", "hour"], "default": "day"}}],
            "responses": {"200": {"description": "Usage", "content": {"application/json": {"schema": _ref("UsageStats")}}},
                          **_errors(400, 401, 403, 429)},
        }},
    }


def extend_conversations(components: dict) -> None:
    """The usage of a conversation, its turns and each step's telemetry."""
    found = components["schemas"]
    found["ConversationSummary"]["properties"]["usage"] = NULLABLE_USAGE
    step = found["ConversationStep"]
    step["properties"]["telemetry"] = {"type": "array", "items": _ref("Activity"),
                                       "description": "Claude Code's OpenTelemetry events about this step."}
    conversation = found["Conversation"]
    conversation["properties"] = {
        **conversation["properties"], "usage": NULLABLE_USAGE,
        "continues": {"type": ["string", "null"], "description": "The session this one resumes or forks."},
        "turns": {"type": "array", "items": {"type": "object", "properties": {
            "prompt_id": {"type": ["string", "null"]}, "usage": NULLABLE_USAGE,
            "steps": {"type": "array", "items": _ref("ConversationStep")}}}},
    }

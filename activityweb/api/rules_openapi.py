"""The OpenAPI paths and schemas of /api/v1/rules and POST /api/v1/activities/test (merged by openapi.py)."""
from __future__ import annotations

from ..rules.conditions import RuleIn


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {400: "Malformed request", 401: "Missing, unknown or revoked token", 403: "The token lacks the needed scope",
          404: "Not found in this tenant", 409: "The name is taken", 422: "Invalid field(s)",
          429: "Rate limited; see Retry-After"}


def _errors(*statuses: int) -> dict:
    return {str(s): _json(_ref("Error"), ERRORS[s]) for s in statuses}


def _id(name: str, kind: str = "integer") -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": kind}}


NULLABLE_INT = {"type": ["integer", "null"]}
NULLABLE_NUM = {"type": ["number", "null"]}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
NULLABLE_TEXT = {"type": ["string", "null"]}


def rules_schemas() -> dict:
    rule_in = RuleIn.model_json_schema(ref_template="#/components/schemas/{model}")
    rule = {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "filter": {"type": "string"},
        "condition": {"type": "string"}, "threshold": NULLABLE_INT, "window_seconds": NULLABLE_INT,
        "percent": NULLABLE_NUM, "metric": NULLABLE_TEXT, "budget": NULLABLE_NUM, "cooldown_seconds": {"type": "integer"},
        "channel_id": NULLABLE_INT, "enabled": {"type": "boolean"}, "description": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"}, "last_fired_at": NULLABLE_TIME,
        "recent_firings": {"type": "array", "items": _ref("Firing")}},
        "required": ["id", "name", "filter", "condition", "cooldown_seconds", "enabled", "description"]}
    firing = {"type": "object", "description": "One firing; `id` is its Standard Webhooks `webhook-id`.",
              "properties": {
                  "id": {"type": "string"}, "rule_id": NULLABLE_INT, "channel_id": NULLABLE_INT,
                  "kind": {"type": "string", "enum": ["firing", "digest"]},
                  "created_at": {"type": "string", "format": "date-time"}, "reason": {"type": "string"},
                  "status": {"type": "string", "enum": ["pending", "delivered", "dead", "logged"]},
                  "attempts": {"type": "integer"}, "next_attempt_at": NULLABLE_TIME,
                  "last_status_code": NULLABLE_INT, "last_error": NULLABLE_TEXT, "delivered_at": NULLABLE_TIME,
                  "payload": {"type": "object"}},
              "required": ["id", "status", "reason", "payload"]}
    channel = {"type": "object", "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["webhook", "slack", "email"]}, "target": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"}, "paused": {"type": "boolean"},
        "paused_at": NULLABLE_TIME, "pause_reason": NULLABLE_TEXT, "consecutive_failures": {"type": "integer"},
        "secret": {"type": ["string", "null"], "description": "A webhook's signing secret (`whsec_...`), "
                   "only in the answer that created it."}},
        "required": ["id", "name", "kind", "target", "paused"]}
    attempt = {"type": "object", "properties": {
        "id": {"type": "integer"}, "message_id": NULLABLE_TEXT, "attempted_at": {"type": "string", "format": "date-time"},
        "ok": {"type": "boolean"}, "status_code": NULLABLE_INT, "error": NULLABLE_TEXT,
        "duration_ms": {"type": "integer"}, "response": NULLABLE_TEXT}, "required": ["ok", "duration_ms"]}
    result = {"type": "object", "description": "What the receiver answered a test delivery.", "properties": {
        "ok": {"type": "boolean"}, "status_code": NULLABLE_INT, "error": NULLABLE_TEXT,
        "duration_ms": {"type": "integer"}, "response": {"type": "string"}}, "required": ["ok", "duration_ms"]}
    return {
        "RuleIn": rule_in, "Rule": rule, "Firing": firing, "Channel": channel, "DeliveryAttempt": attempt,
        "DeliveryResult": result,
        "ChannelIn": {"type": "object", "required": ["name", "kind", "target"], "additionalProperties": False,
                      "properties": {"name": {"type": "string", "maxLength": 100},
                                     "kind": {"type": "string", "enum": ["webhook", "slack", "email"],
                                              "description": "email only when the server has SMTP configured"},
                                     "target": {"type": "string", "description": "https URL or email address; "
                                                "URLs resolving to private addresses are refused"}}},
        "TestEvent": {"type": "object", "required": ["activity", "test", "published_ms"], "properties": {
            "activity": _ref("Activity"), "test": {"type": "boolean"},
            "published_ms": {"type": "number", "description": "From the POST until the event was committed "
                             "and handed to live delivery."}}},
    }


def rules_paths() -> dict:
    admin = {"description": "Needs the `admin` scope."}
    rule_body = {"required": True, "content": {"application/json": {"schema": _ref("RuleIn")}}}
    listing = lambda name: {"type": "object", "required": ["items"],  # noqa: E731
                            "properties": {"items": {"type": "array", "items": _ref(name)}}}
    return {
        "/api/v1/rules": {
            "get": {**admin, "summary": "The tenant's rules", "operationId": "listRules",
                    "responses": {"200": _json(listing("Rule"), "Rules"), **_errors(401, 403, 429)}},
            "post": {**admin, "summary": "Create a rule: a feed filter plus a condition", "operationId": "createRule",
                     "requestBody": rule_body,
                     "responses": {"201": _json(_ref("Rule"), "Created"), **_errors(400, 401, 403, 409, 422, 429)}},
        },
        "/api/v1/rules/{rule_id}": {
            "parameters": [_id("rule_id")],
            "get": {**admin, "summary": "One rule with its recent firings", "operationId": "getRule",
                    "responses": {"200": _json(_ref("Rule"), "The rule"), **_errors(401, 403, 404, 429)}},
            "put": {**admin, "summary": "Replace a rule", "operationId": "replaceRule", "requestBody": rule_body,
                    "responses": {"200": _json(_ref("Rule"), "Replaced"),
                                  **_errors(400, 401, 403, 404, 409, 422, 429)}},
            "delete": {**admin, "summary": "Delete a rule and its firings", "operationId": "deleteRule",
                       "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404, 429)}},
        },
        "/api/v1/rules/channels": {
            "get": {**admin, "summary": "Channels firings go to", "operationId": "listChannels",
                    "responses": {"200": _json(listing("Channel"), "Channels"), **_errors(401, 403, 429)}},
            "post": {**admin, "summary": "Add a channel (a webhook's signing secret is in this answer only)",
                     "operationId": "createChannel",
                     "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ChannelIn")}}},
                     "responses": {"201": _json(_ref("Channel"), "Created"), **_errors(400, 401, 403, 409, 422, 429)}},
        },
        "/api/v1/rules/channels/{channel_id}": {
            "parameters": [_id("channel_id")],
            "delete": {**admin, "summary": "Delete a channel and its log", "operationId": "deleteChannel",
                       "responses": {"204": {"description": "Deleted"}, **_errors(401, 403, 404, 429)}},
        },
        "/api/v1/rules/channels/{channel_id}/deliveries": {
            "parameters": [_id("channel_id")],
            "get": {**admin, "summary": "The channel's delivery log: attempts, status, response time",
                    "operationId": "channelDeliveries",
                    "responses": {"200": _json({"type": "object", "required": ["channel", "items"], "properties": {
                        "channel": _ref("Channel"), "items": {"type": "array", "items": _ref("DeliveryAttempt")}}},
                        "The log, newest first"), **_errors(401, 403, 404, 429)}},
        },
        "/api/v1/rules/channels/{channel_id}/test": {
            "parameters": [_id("channel_id")],
            "post": {**admin, "summary": "Send a sample delivery now; answers with the receiver's answer",
                     "operationId": "testChannel",
                     "responses": {"200": _json(_ref("DeliveryResult"), "What the receiver said"),
                                   **_errors(401, 403, 404, 429)}},
        },
        "/api/v1/rules/channels/{channel_id}/resume": {
            "parameters": [_id("channel_id")],
            "post": {**admin, "summary": "Resume a paused channel; its waiting firings are due at once",
                     "operationId": "resumeChannel",
                     "responses": {"200": _json(_ref("Channel"), "Resumed"), **_errors(401, 403, 404, 429)}},
        },
        "/api/v1/rules/firings/{message_id}/redeliver": {
            "parameters": [_id("message_id", "string")],
            "post": {**admin, "summary": "Deliver a firing again, under the same webhook-id",
                     "operationId": "redeliverFiring",
                     "responses": {"202": _json(_ref("Firing"), "Queued"), **_errors(401, 403, 404, 429)}},
        },
        "/api/v1/activities/test": {
            "post": {"summary": "Store a clearly marked test event (type system.test, tag test); it appears live",
                     "description": "Needs the `ingest` scope.", "operationId": "sendTestEvent",
                     "responses": {"201": _json(_ref("TestEvent"), "Stored and published"),
                                   **_errors(401, 403, 429)}},
        },
    }

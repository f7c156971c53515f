"""OTLP/HTTP: Claude Code's OpenTelemetry exporter posts here directly.

    OTEL_EXPORTER_OTLP_ENDPOINT=https://<activityweb>/api/v1/otlp
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf   (or http/json)
    OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer <ingest token>

The exporter appends /v1/logs and /v1/metrics to the base. Answers are
OTLP's: an Export*ServiceResponse in the request's encoding, with
`partial_success` when some records or points were not taken; errors are
this API's JSON errors with the status codes OTLP clients act on (400 and
413 are not retried; 429 and 503 are).
"""
from flask import current_app, g, request

from .. import store
from ..auth import require
from ..integrations import claude_code_otel, otlp
from ..integrations.redact import redactor
from . import bp


@bp.post("/otlp/v1/logs")
@require("ingest")
def otlp_logs():
    export = _export("logs")
    config = current_app.config
    events, rejected, why = claude_code_otel.log_events(
        export.request, max_chars=config["CLAUDE_CODE_MAX_FIELD_CHARS"],
        masker=redactor(tuple(config.get("REDACT_PATTERNS") or ())))
    step = config["MAX_BATCH"]
    for start in range(0, len(events), step):
        store.add_activities(g.principal.tenant_id, events[start:start + step])
    return _answer(export, rejected, why)


@bp.post("/otlp/v1/metrics")
@require("ingest")
def otlp_metrics():
    export = _export("metrics")
    points, rejected, why = claude_code_otel.usage_points(export.request)
    store.usage.add_points(g.principal.tenant_id, points)
    return _answer(export, rejected, why)


def _export(signal: str) -> otlp.Export:
    limit = current_app.config["OTLP_MAX_BODY"]
    request.max_content_length = limit
    body = otlp.inflate(request.get_data(cache=False), request.headers.get("Content-Encoding"), limit)
    return otlp.decode(signal, request.headers.get("Content-Type"), body)


def _answer(export: otlp.Export, rejected: int, why: str):
    body, content_type = otlp.answer(export, rejected, why)
    return current_app.response_class(body, status=200, content_type=content_type)

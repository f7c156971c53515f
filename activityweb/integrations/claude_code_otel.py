"""Claude Code's OpenTelemetry export: log events as activities, metrics as usage points.

Claude Code (https://code.claude.com/docs/en/monitoring-usage) exports
`claude_code.*` log events and delta-sum metrics; `integrations/otlp`
decodes them. Here:

- Each log event becomes an activity of type `claude.otel.<event>` from
  source `claude_code_otel`, joined to the same session's hook events:
  `conversation_id`/`session_id` = `session.id`, `request_id` = `prompt.id`
  (the hooks' `prompt_id`), `correlation_id` = `tool_use_id`. Its
  `source_id` digests the record itself, so a resent batch is a duplicate.
  Attributes are masked and cut like hook payloads before anything is kept.
- Events Claude Code logs about its own machinery (hook registration and
  runs, plugin loading, settings, sweeps) are accepted and not stored: a
  session start logs ~180 of them and a person reads none.
- A record that is not a Claude Code event is rejected (OTLP partial success).
- Metric points become `UsagePoint`s; only delta sums are taken (Claude
  Code's default), since adding cumulative points would count twice.
"""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal

from ..costs import METRIC_SCALES
from ..errors import ApiError
from .otlp import attributes
from .redact import Redactor
from .shaping import build_event, clip, fit_data, microseconds, one_line, parse_moment, shape, snake

SOURCE = "claude_code_otel"
EVENT_PREFIX = "claude_code."
METRIC_PREFIX = "claude_code."
BOOKKEEPING = frozenset({
    "hook_registered", "hook_execution_start", "hook_execution_complete", "hook_plugin_metrics", "plugin_loaded",
    "plugin_installed", "managed_settings_resolved", "retention_sweep", "mcp_server_connection",
    "api_request_body", "api_response_body",
})
DELTA = 1  # AGGREGATION_TEMPORALITY_DELTA
TITLE_CHARS = 200
# A stored value's bound: sums of many points still fit in 64 bits.
MAX_VALUE = 2**53


def _text(values: dict, key: str, limit: int = 200) -> str | None:
    value = values.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return one_line(value, limit)


def _number(values: dict, key: str) -> float | None:
    """A numeric attribute; Claude Code sends some (duration_ms, sizes) as strings."""
    value = values.get(key)
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return value if isinstance(value, (int, float)) else None


def _moment(nanos: int) -> datetime | None:
    """A time in nanoseconds since the epoch, if it is one an activity accepts (see `parse_moment`)."""
    if not nanos:
        return None
    try:
        moment = datetime.fromtimestamp(nanos / 1e9, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None
    return parse_moment(moment.isoformat())


def actor_of(values: dict) -> str | None:
    return _text(values, "user.email") or _text(values, "user.account_uuid") or _text(values, "user.id")


# Log events -----------------------------------------------------------------------------------

def log_events(request, *, max_chars: int, masker: Redactor) -> tuple[list[dict], int, str]:
    """The activities of a logs export, how many records were rejected, and why."""
    events, rejected, reasons = [], 0, set()
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                raw = attributes(record.attributes)
                body = record.body.string_value if record.body.WhichOneof("value") == "string_value" else ""
                short = raw.get("event.name") if isinstance(raw.get("event.name"), str) else None
                if body.startswith(EVENT_PREFIX):
                    short = short or body[len(EVENT_PREFIX):]
                elif not short:
                    rejected += 1
                    reasons.add("only Claude Code's claude_code.* events are stored")
                    continue
                if short in BOOKKEEPING:
                    continue
                key = hashlib.sha256(record.SerializeToString(deterministic=True)).hexdigest()
                occurred_at = (_moment(record.time_unix_nano) or _moment(record.observed_time_unix_nano)
                               or parse_moment(raw.get("event.timestamp")) or datetime.now(timezone.utc))
                try:
                    events.append(to_activity(short, raw, key, occurred_at, max_chars=max_chars, masker=masker))
                except ApiError as exc:  # the record maps to an invalid activity: the rest still store
                    rejected += 1
                    reasons.add(f"{short}: {exc.message}"[:300])
    return events, rejected, "; ".join(sorted(reasons))


def to_activity(short: str, raw: dict, key: str, occurred_at: datetime, *, max_chars: int, masker: Redactor) -> dict:
    seen = shape(raw, max_chars=max_chars, redactor=masker)
    session = _text(seen, "session.id")
    duration = _number(seen, "duration_ms")
    return build_event(
        type=f"claude.otel.{snake(short)}",
        source=SOURCE,
        source_id=f"{snake(short)}:{key}",
        session_id=session,
        conversation_id=session,
        request_id=_text(seen, "prompt.id"),
        correlation_id=_text(seen, "tool_use_id"),
        sequence=microseconds(occurred_at),
        duration_ms=int(duration) if duration is not None and 0 <= duration < 2**53 else None,
        occurred_at=occurred_at,
        tags=["telemetry"],
        data=fit_data({k: v for k, v in seen.items() if k != "session.id"}),
        **_describe(short, seen),
    )


def _describe(short: str, a: dict) -> dict:
    claude = {"actor_id": "claude", "actor_name": "Claude"}
    agent = _text(a, "agent.name")
    if agent:
        claude = {"actor_id": agent, "actor_name": agent}
    model = _text(a, "model")
    model_entity = {"entity_type": "model", "entity_id": model, "entity_name": model}
    tool = _text(a, "tool_name") or "Tool"
    tool_entity = {"entity_type": "tool", "entity_id": tool, "entity_name": tool}
    if short == "api_request":
        cost = _number(a, "cost_usd") or 0.0
        tokens_in, tokens_out = int(_number(a, "input_tokens") or 0), int(_number(a, "output_tokens") or 0)
        return {"title": f"API call: {model or 'model'} · ${cost:.4f} · {tokens_in:,} in, {tokens_out:,} out",
                **claude, **model_entity, "status": "success"}
    if short == "api_error":
        code = _text(a, "status_code") or "error"
        return {"title": one_line(f"API error {code}: {_text(a, 'error') or model or ''}", TITLE_CHARS),
                "summary": clip(a.get("error"), 5000), **claude, **model_entity, "status": "failed", "priority": "high"}
    if short == "api_retries_exhausted":
        return {"title": "API retries exhausted", **claude, **model_entity, "status": "failed", "priority": "high"}
    if short == "api_refusal":
        return {"title": f"The model refused: {model or 'model'}", **claude, **model_entity, "status": "refused"}
    if short == "tool_result":
        ok = str(a.get("success")).lower() == "true"
        error = _text(a, "error") or _text(a, "error_type")
        return {"title": one_line(f"{tool} finished" if ok else f"{tool} failed" + (f": {error}" if error else ""),
                                  TITLE_CHARS),
                **claude, **tool_entity, "status": "success" if ok else "failed",
                "summary": clip(a.get("error"), 5000)}
    if short == "tool_decision":
        decision = _text(a, "decision") or "decided"
        by = _text(a, "source")
        return {"title": f"{tool}: {decision}" + (f" ({by})" if by else ""), **claude, **tool_entity,
                "status": "accepted" if decision == "accept" else "rejected",
                "priority": "normal" if decision == "accept" else "high"}
    if short == "user_prompt":
        text = _text(a, "prompt", TITLE_CHARS)
        if text and text != "<REDACTED>":
            return {"title": f"Prompt: {text}", "summary": clip(a.get("prompt"), 5000),
                    "actor_id": "user", "actor_name": "User", "entity_type": "prompt"}
        length = int(_number(a, "prompt_length") or 0)
        return {"title": f"Prompt ({length:,} characters, not logged)", "actor_id": "user", "actor_name": "User"}
    if short == "assistant_response":
        text = _text(a, "response", TITLE_CHARS)
        length = int(_number(a, "response_length") or 0)
        return {"title": f"Claude: {text}" if text and text != "<REDACTED>" else f"Claude replied ({length:,} characters)",
                "summary": clip(a.get("response"), 5000), **claude, **model_entity}
    if short == "subagent_completed":
        return {"title": f"Subagent completed: {agent or _text(a, 'agent_type') or 'subagent'}", **claude,
                "entity_type": "subagent", "status": "success"}
    if short == "skill_activated":
        return {"title": f"Skill activated: {_text(a, 'skill.name') or _text(a, 'skill_name') or 'skill'}", **claude}
    if short == "compaction":
        return {"title": "Conversation compacted", **claude, "status": "success"}
    return {"title": one_line(f"Claude Code: {short}", TITLE_CHARS), **claude}


# Metrics ------------------------------------------------------------------------------------------

def usage_points(request) -> tuple[list[dict], int, str]:
    """The usage points of a metrics export, how many points were rejected, and why."""
    points, rejected, reasons = [], 0, set()
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                data = metric.WhichOneof("data")
                count = len(getattr(metric, data).data_points) if data else 0
                if not metric.name.startswith(METRIC_PREFIX):
                    rejected += count
                    reasons.add("only Claude Code's claude_code.* metrics are stored")
                    continue
                if data != "sum" or metric.sum.aggregation_temporality != DELTA:
                    rejected += count
                    reasons.add(f"{metric.name}: only delta sums are stored "
                                "(set OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta)")
                    continue
                for point in metric.sum.data_points:
                    stored = _point(metric.name, point)
                    if stored is None:
                        rejected += 1
                        reasons.add(f"{metric.name}: a point without a time or a value in range")
                    else:
                        points.append(stored)
    return points, rejected, "; ".join(sorted(reasons))


def _point(metric: str, point) -> dict | None:
    raw = attributes(point.attributes)
    number = point.as_double if point.WhichOneof("value") == "as_double" else point.as_int
    occurred_at = _moment(point.time_unix_nano)
    if occurred_at is None or number != number or number in (float("inf"), float("-inf")):
        return None
    scale = METRIC_SCALES.get(metric, 1)
    value = int((Decimal(repr(number)) * scale).to_integral_value(ROUND_HALF_EVEN))
    if not -MAX_VALUE <= value <= MAX_VALUE:  # beyond a BIGINT column (and any real cost or count)
        return None
    canonical = json.dumps([metric, sorted(raw.items(), key=lambda kv: kv[0]), point.start_time_unix_nano,
                            point.time_unix_nano, repr(number)], default=str, separators=(",", ":"))
    return {
        "point_key": hashlib.sha256(canonical.encode()).hexdigest(),
        "metric": metric,
        "kind": (_text(raw, "type") or _text(raw, "start_type") or "")[:50],
        "session_id": _text(raw, "session.id"),
        "model": _text(raw, "model"),
        "actor_id": actor_of(raw),
        "query_source": _text(raw, "query_source", 100),
        "day": occurred_at.date(),
        "occurred_at": occurred_at,
        "value": value,
    }


OTLP_BASE = "/api/v1/otlp"


def otel_settings(base_url: str, token: str | None = None, protocol: str = "http/protobuf") -> dict:
    """The `env` block of Claude Code's settings.json that exports its
    telemetry here: cost, tokens and the events behind them. Claude Code
    takes these values literally (no $VARIABLES), so the token is written in."""
    return {"env": {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": base_url.rstrip("/") + OTLP_BASE,
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer {token or '<a token with the ingest scope>'}",
        # Claude Code's defaults are 60 s and 5 s; cost shows sooner this way.
        "OTEL_METRIC_EXPORT_INTERVAL": "10000",
        "OTEL_LOGS_EXPORT_INTERVAL": "5000",
    }}

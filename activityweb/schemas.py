"""Validation of what clients send: event bodies and the query parameters beside the filter.

One place decides what is valid, so the API, the dashboard, the live sockets
and the exports agree, and every rejection names the field at fault. Errors
are raised as `errors.ApiError` (bodies) and `errors.InvalidQuery` (query
strings). The filter's own parameters are `filters.py`'s; what we send back
is `serialize.py`'s.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from .errors import ApiError, InvalidQuery, invalid_body
from .ids import is_uuid

PRIORITIES = ("low", "normal", "high", "critical")
TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
SLUG_PATTERN = r"^[a-z][a-z0-9_]*$"
MAX_DATA_BYTES = 64 * 1024
MAX_TAGS = 20
MAX_TITLE = 300
# How far ahead of our clock a producer's `occurred_at` may be (clock skew).
MAX_FUTURE = timedelta(days=1)


def check_batch(items: list, is_batch: bool, max_batch: int, noun: str = "events") -> None:
    """An array body holds between 1 and `max_batch` items."""
    if is_batch and not items:
        raise invalid_body("The batch is empty.", "empty array")
    if len(items) > max_batch:
        raise ApiError(422, "batch_too_large", f"A batch holds at most {max_batch} {noun}; this one has {len(items)}.",
                       [{"field": "body", "message": f"at most {max_batch} items"}])


# ---------------------------------------------------------------- event bodies

Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\s,]+$")]


class ActivityIn(BaseModel):
    """An event as a producer posts it. Unknown keys are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Annotated[str, StringConstraints(max_length=100, pattern=TYPE_PATTERN)] = Field(
        description="Dotted lower-case verb, e.g. `tool.completed`."
    )
    title: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TITLE)]
    source: Annotated[str, StringConstraints(max_length=50, pattern=SLUG_PATTERN)] = Field(
        "api", description="Producer family: api, claude_code, github, hubspot, salesforce, webhook, system, ..."
    )
    source_id: Text | None = Field(
        None,
        description="The producer's own id. (source, source_id) is the idempotency key; "
        "without it every post is a new event.",
    )
    summary: Annotated[str, StringConstraints(max_length=5000)] | None = None
    actor_id: Text | None = None
    actor_name: Text | None = None
    entity_type: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    entity_id: Text | None = None
    entity_name: Annotated[str, StringConstraints(min_length=1, max_length=300)] | None = None
    status: Annotated[str, StringConstraints(max_length=50, pattern=SLUG_PATTERN)] | None = None
    priority: Literal["low", "normal", "high", "critical"] = "normal"
    duration_ms: Annotated[int, Field(ge=0, le=10**12)] | None = None
    project: Text | None = None
    environment: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    request_id: Text | None = None
    conversation_id: Text | None = None
    session_id: Text | None = None
    sequence: Annotated[int, Field(ge=0, le=2**53)] | None = None
    correlation_id: Text | None = None
    tags: Annotated[list[Tag], Field(max_length=MAX_TAGS)] = Field(default_factory=list)
    data: dict[str, Any] = Field(default_factory=dict, description="Free JSON payload, at most 64 KiB.")
    occurred_at: AwareDatetime | None = Field(
        None, description="RFC 3339 with an offset; defaults to when the server received it."
    )

    @field_validator("title")
    @classmethod
    def title_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("data")
    @classmethod
    def data_size(cls, value: dict) -> dict:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_DATA_BYTES:
            raise ValueError(f"is {size} bytes; at most {MAX_DATA_BYTES} bytes (64 KiB) are allowed")
        return value

    @field_validator("occurred_at")
    @classmethod
    def occurred_at_sane(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(timezone.utc)
        if value.year < 2000:
            raise ValueError("must be in the year 2000 or later")
        if value > datetime.now(timezone.utc) + MAX_FUTURE:
            raise ValueError("is more than a day in the future")
        return value

    @field_validator("tags")
    @classmethod
    def tags_unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("*")
    @classmethod
    def storable(cls, value):
        # PostgreSQL text and jsonb cannot hold U+0000, and JSON has no NaN or
        # Infinity (jsonb refuses them; SQLite would store invalid JSON):
        # refuse them here rather than fail in the database.
        problem = _unstorable(value)
        if problem:
            raise ValueError(problem)
        return value


def _unstorable(value) -> str | None:
    if isinstance(value, str):
        return "must not contain the NUL character (\\u0000)" if "\x00" in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else "must not contain NaN or Infinity (JSON has neither)"
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _unstorable(k) or _unstorable(v))), None)
    if isinstance(value, list):
        return next((p for v in value if (p := _unstorable(v))), None)
    return None


_one_event = TypeAdapter(ActivityIn)
_event_list = TypeAdapter(list[ActivityIn])


def _field_path(loc: tuple) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "body"


PATTERN_HINTS = {
    "type": "must be a dotted lower-case verb such as `tool.completed` or `lead.high_intent`",
    "source": "must be a lower-case word such as `github` or `claude_code`",
    "status": "must be a lower-case word such as `success` or `failed`",
    "tags": "tags are single words without spaces or commas",
}


def validation_details(exc: ValidationError) -> list[dict]:
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = err["loc"]
        message = err["msg"]
        named = [p for p in loc if isinstance(p, str)]
        if err["type"] == "string_pattern_mismatch" and named and named[0] in PATTERN_HINTS:
            message = PATTERN_HINTS[named[0]]
        elif err["type"] == "extra_forbidden":
            message = "is not a known field"
        elif err["type"] == "missing":
            message = "is required"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        details.append({"field": _field_path(loc), "message": message, "type": err["type"]})
    return details


def parse_events(body: bytes, max_batch: int) -> tuple[list[dict], bool]:
    """Validate a POST body: one event object or an array of them.

    Returns the events as dicts and whether the body was a batch. Raises
    `ApiError` with every problem found, each naming its field.
    """
    stripped = body.lstrip()
    if not stripped:
        raise ApiError(400, "invalid_json", "The request body is empty; send a JSON event object or array.")
    is_batch = stripped[:1] == b"["
    adapter = _event_list if is_batch else _one_event
    try:
        parsed = adapter.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(e["type"] == "json_invalid" for e in errors):
            raise ApiError(400, "invalid_json", "The request body is not valid JSON.",
                           [{"field": "body", "message": errors[0]["msg"]}]) from None
        if not is_batch and errors and errors[0]["loc"] == () and errors[0]["type"] in {"model_type", "model_attributes_type"}:
            raise ApiError(422, "validation_error", "The body must be a JSON event object or an array of them.",
                           [{"field": "body", "message": "expected an object or an array"}]) from None
        details = validation_details(exc)
        raise ApiError(422, "validation_error", f"{len(details)} invalid field(s): "
                       + ", ".join(d["field"] for d in details[:5]), details) from None
    events = parsed if is_batch else [parsed]
    check_batch(events, is_batch, max_batch)
    return [e.model_dump() for e in events], is_batch


# ------------------------------------------------------------- query strings
#
# The filter's own keys are `filters.py`'s; these are the other parameters.


def whole_number(text: str, max_digits: int = 18) -> int | None:
    """`text` as a non-negative int if it is ASCII digits only, else None.

    `str.isdigit()` alone is not enough: it accepts `²` and other Unicode
    digits that `int()` then rejects (a 500 before this existed)."""
    text = text.strip()
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def parse_limit(args, default: int = 50, maximum: int = 200) -> int:
    raw = args.get("limit", "").strip()
    if not raw:
        return default
    value = whole_number(raw)
    if value is None or not 1 <= value <= maximum:
        raise InvalidQuery("limit", f"must be a whole number from 1 to {maximum}")
    return value


BUCKETS = ("auto", "hour", "day")


def parse_bucket(args) -> str:
    """`bucket`: the step of a time series."""
    bucket = args.get("bucket", "").strip() or "auto"
    if bucket not in BUCKETS:
        raise InvalidQuery("bucket", f"is one of {', '.join(BUCKETS)}")
    return bucket


def parse_up_to(args) -> str | None:
    """`up_to`: the newest event id a reader has seen (marking read stops there)."""
    value = args.get("up_to", "").strip()
    if value and not is_uuid(value):
        raise InvalidQuery("up_to", "is not an event id")
    return value or None

"""Validation of what clients send: event bodies and the feed's query string.

One place decides what is valid, so the API, the dashboard, the live sockets
and the exports agree, and every rejection names the field at fault. Errors
are raised as `errors.ApiError` (bodies) and `errors.InvalidQuery` (query
strings); what we send back is `serialize.py`'s.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
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


def event_json_schema() -> dict:
    return ActivityIn.model_json_schema(ref_template="#/components/schemas/{model}")


# ------------------------------------------------------------- query strings

_WORD = re.compile(r"[^\W_]+")


def search_terms(text: str) -> list[str]:
    """Words of a search box, lower-cased, as the full-text indexes split them."""
    return [w.lower() for w in _WORD.findall(text or "")][:16]


def parse_time(name: str, value: str) -> datetime:
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):  # a date picker sends a bare date
        text += "T00:00:00+00:00"
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?", text):
        text += "+00:00"  # datetime-local has no offset; we mean UTC
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidQuery(name, f"{value!r} is not an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class ActivityFilter:
    """What a reader asked to see. Hashable, so live fan-out can group sockets by it.

    Repeating a key offers alternatives (`type=a&type=b` is a or b); different
    keys narrow. `type` values ending in `.*` match a prefix.
    """

    type: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    actor: tuple[str, ...] = ()
    entity_type: tuple[str, ...] = ()
    entity_id: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    priority: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()
    project: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()
    conversation_id: tuple[str, ...] = ()
    session_id: tuple[str, ...] = ()
    correlation_id: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    q: str = ""
    # Read (True) or unread (False) by whoever asks; see `store.Reader`.
    read: bool | None = None

    def is_empty(self) -> bool:
        return self == ActivityFilter()

    def to_args(self) -> list[tuple[str, str]]:
        """The filter as query-string pairs, the inverse of `parse_filter`."""
        args = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                args.extend((f.name, v) for v in value)
            elif isinstance(value, datetime):
                args.append((f.name, value.isoformat().replace("+00:00", "Z")))
            elif isinstance(value, bool):
                args.append((f.name, "true" if value else "false"))
            elif value:
                args.append((f.name, value))
        return args

    @property
    def terms(self) -> list[str]:
        return search_terms(self.q)

    def matches(self, a: Any) -> bool:
        """Whether an event (model or mapping) passes; the live path uses this
        instead of a query per event. It must agree with `store.apply_filter`."""
        get = a.get if isinstance(a, dict) else (lambda k: getattr(a, k))
        if self.read:
            return False  # an event that has just arrived is unread, whoever reads
        if self.type and not any(
            get("type").startswith(t[:-1]) if t.endswith(".*") else get("type") == t for t in self.type
        ):
            return False
        simple = (
            ("source", "source"), ("actor", "actor_id"), ("entity_type", "entity_type"),
            ("entity_id", "entity_id"), ("status", "status"), ("priority", "priority"),
            ("project", "project"), ("environment", "environment"),
            ("conversation_id", "conversation_id"), ("session_id", "session_id"),
            ("correlation_id", "correlation_id"),
        )
        for name, column in simple:
            wanted = getattr(self, name)
            if wanted and get(column) not in wanted:
                return False
        if self.tag and not set(self.tag) & set(get("tags") or ()):
            return False
        occurred = get("occurred_at")
        if self.since and occurred < self.since:
            return False
        if self.until and occurred >= self.until:
            return False
        if self.q:
            words = search_terms(" ".join(
                get(k) or "" for k in ("title", "summary", "actor_name", "entity_name")
            ))
            if not all(any(w.startswith(t) for w in words) for t in self.terms):
                return False
        return True


_LIST_KEYS = {f.name for f in fields(ActivityFilter) if f.type.startswith("tuple")}
_TYPE_FILTER = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?$|^\*$")
PAGE_KEYS = {"limit", "cursor"}
_COMMA_KEYS = {"type", "source", "status", "priority", "tag"}


def parse_filter(args, *, strict: bool = True, extra_keys: frozenset = frozenset()) -> ActivityFilter:
    """Build a filter from a query string (a werkzeug MultiDict).

    Empty values are ignored (an untouched form field). In strict mode (the
    JSON API) an unknown key is an error, so a typo does not silently widen
    the result.
    """
    values: dict[str, Any] = {}
    for key in args.keys():
        raw = [v.strip() for v in args.getlist(key) if v.strip()]
        if not strict and key in _COMMA_KEYS:
            # The dashboard's text fields take several values as "a, b".
            raw = [part.strip() for v in raw for part in v.split(",") if part.strip()]
        if any("\x00" in v for v in raw):
            raise InvalidQuery(key, "must not contain the NUL character")
        if key in _LIST_KEYS:
            if not raw:
                continue
            if len(raw) > 50:
                raise InvalidQuery(key, "at most 50 values")
            for v in raw:
                if len(v) > 200:
                    raise InvalidQuery(key, "values are at most 200 characters")
            if key == "type":
                for v in raw:
                    if not _TYPE_FILTER.match(v):
                        raise InvalidQuery("type", f"{v!r} is not a type like `tool.completed` or a prefix like `tool.*`")
                if "*" in raw:
                    continue
            if key == "priority":
                for v in raw:
                    if v not in PRIORITIES:
                        raise InvalidQuery("priority", f"{v!r} is not one of {', '.join(PRIORITIES)}")
            values[key] = tuple(dict.fromkeys(raw))
        elif key in ("since", "until"):
            if raw:
                values[key] = parse_time(key, raw[0])
        elif key == "read":
            if raw and raw[0] not in ("true", "false"):
                raise InvalidQuery("read", "is true (read by you) or false (unread)")
            if raw:
                values["read"] = raw[0] == "true"
        elif key == "q":
            q = " ".join(raw)
            if len(q) > 200:
                raise InvalidQuery("q", "at most 200 characters")
            if search_terms(q):
                values["q"] = q
        elif strict and key not in PAGE_KEYS and key not in extra_keys:
            raise InvalidQuery(key, "is not a filter this endpoint knows")
    if values.get("since") and values.get("until") and values["since"] >= values["until"]:
        raise InvalidQuery("until", "must be after since")
    return ActivityFilter(**values)


def parse_limit(args, default: int = 50, maximum: int = 200) -> int:
    raw = args.get("limit", "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise InvalidQuery("limit", f"must be a whole number from 1 to {maximum}")
    return int(raw)


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


def parse_stream_args(args, last_event_id: str | None = None) -> tuple[ActivityFilter, str | None]:
    """Filter and resume point of a stream (SSE, /ws).

    `since` is the time filter when it is a time, and the resume point when
    it is an event id (SSE's Last-Event-ID header wins); the two cannot be
    confused, since an event id is never a valid time.
    """
    since_id = None
    rest = args.copy()
    value = rest.get("since", "").strip()
    if is_uuid(value):
        since_id = value
        rest.poplist("since")
    if last_event_id:
        if not is_uuid(last_event_id.strip()):
            raise InvalidQuery("Last-Event-ID", "is not an event id")
        since_id = last_event_id.strip()
    return parse_filter(rest), since_id

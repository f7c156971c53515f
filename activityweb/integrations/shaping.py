"""What the producers' normalisers share: parsing bodies, making their text
and JSON fit an activity, and building a validated event.

Producers send what they like; an activity has limits (a 300-character
title, 64 KiB of `data`, no NUL characters, which PostgreSQL cannot store).
Normalisers cut and clean rather than reject: a webhook that is refused is
retried by its sender and refused again, and the event is lost anyway.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from datetime import datetime, timedelta, timezone

from pydantic import ValidationError

from ..errors import ApiError
from ..schemas import MAX_DATA_BYTES, MAX_FUTURE, ActivityIn, validation_details
from .redact import MASK, Redactor

# Deeper JSON is replaced by a marker: nothing readable lives that deep, and
# every walk over it stays far from Python's recursion limit.
MAX_DEPTH = 32
MAX_ITEMS = 100  # keys of an object, items of a list
# Text one payload's walk looks at in all (and hands to the redactor).
MAX_TOTAL_CHARS = 256 * 1024
# A body with more of these (an upper bound on its keys and items) is not
# parsed into Python objects: 260,000 keys took 0.2 s of CPU to parse alone,
# during which a gevent worker answers nothing else.
MAX_JSON_TOKENS = 40_000
# `data` is validated against MAX_DATA_BYTES; leave room for what a
# normaliser adds after fitting.
DATA_BUDGET = MAX_DATA_BYTES - 2048
_SPACE = re.compile(r"\s+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def json_tokens(body: bytes) -> int:
    """An upper bound on the keys and items of a JSON body, counted at C speed
    (commas and colons inside strings count too)."""
    return body.count(b",") + body.count(b":")


def parse_json(body: bytes):
    """A request body as JSON; a 400 ApiError when it is not."""
    if not body.strip():
        raise ApiError(400, "invalid_json", "The request body is empty; send JSON.")
    try:
        return json.loads(body, parse_constant=_not_json, parse_float=_finite)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.",
                       [{"field": "body", "message": str(exc)[:200]}]) from None


def _not_json(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    # 1e400 parses as infinity, which neither database's JSON can hold.
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range")
    return value


def one_line(value, limit: int) -> str | None:
    """Text for a title or name: whitespace collapsed, NUL removed, cut with an ellipsis."""
    if value is None or isinstance(value, (dict, list)):
        return None
    # Only the start can show: a megabyte of text costs no more than a line.
    text = _SPACE.sub(" ", clean(str(value)[: limit * 4 + 256])).strip()
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def clip(value, limit: int) -> str | None:
    """Text for a summary: line breaks kept, NUL removed, cut with an ellipsis."""
    if value is None or isinstance(value, (dict, list)):
        return None
    text = clean(str(value)[: limit + 256]).strip()
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class Budget:
    """How much text one payload's walk may still look at. Shared across the
    walk, so a payload of many small strings costs no more than one big one."""

    __slots__ = ("chars",)

    def __init__(self, chars: int):
        self.chars = chars


def shape(value, *, max_chars: int, redactor: Redactor | None = None, depth: int = 0, budget: Budget | None = None):
    """A JSON value made fit to store: NUL and lone surrogates removed,
    secrets masked (with a `redactor`), strings over `max_chars` cut, objects
    and lists over MAX_ITEMS shortened, nesting bounded, and at most
    MAX_TOTAL_CHARS of text looked at in all. Every cut happens before the
    walk goes on, so the work is bounded whatever was sent. A cut says how
    much it left out."""
    if budget is None:
        budget = Budget(MAX_TOTAL_CHARS)
    if depth >= MAX_DEPTH:
        return "[nested too deep]"
    if isinstance(value, str):
        if budget.chars <= 0:
            return f"[{len(value)} characters cut: the payload's text budget is spent]"
        shaped = _shape_text(value, max_chars, redactor)
        budget.chars -= min(len(value), max_chars + 512)
        return shaped
    if isinstance(value, list):
        items = [shape(v, max_chars=max_chars, redactor=redactor, depth=depth + 1, budget=budget)
                 for v in value[:MAX_ITEMS]]
        if len(value) > MAX_ITEMS:
            items.append(f"[{len(value) - MAX_ITEMS} more items cut]")
        return items
    if isinstance(value, dict):
        shaped = {}
        for key, item in itertools.islice(value.items(), MAX_ITEMS):
            key = clean(str(key)[:200])
            if redactor is not None and isinstance(item, str) and item and redactor.is_secret_key(key):
                shaped[key] = MASK
            else:
                shaped[key] = shape(item, max_chars=max_chars, redactor=redactor, depth=depth + 1, budget=budget)
        if len(value) > MAX_ITEMS:
            shaped["[cut]"] = f"{len(value) - MAX_ITEMS} more keys cut"
        return shaped
    return value


def clean(text: str) -> str:
    """Text either database can store: no NUL, and no lone surrogate (JSON's
    `"\\ud800"` parses to one, which UTF-8 cannot encode)."""
    text = text.replace("\x00", "")
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def _shape_text(text: str, max_chars: int, redactor: Redactor | None) -> str:
    length = len(text)
    # Redact a little beyond the cut, not the whole text: a huge tool output
    # costs no more than a short one, and a secret that straddles the cut is
    # still seen whole (up to the margin) and masked.
    text = clean(text[: max_chars + 512])
    if redactor is not None:
        text = redactor.text(text)
    if length > max_chars:
        text = text[:max_chars] + f"… [{length - max_chars} characters cut]"
    return text


def dig(value, *keys):
    """`value[k1][k2]...`, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def json_size(value) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def fit_data(shaped: dict) -> dict:
    """Data already `shape`d, cut tighter until it fits an activity's `data`.

    Rarely needed: only a payload with very many fields outgrows 64 KiB once
    each field is cut.
    """
    limit = 1024
    while json_size(shaped) > DATA_BUDGET:
        if limit < 64:
            return {"cut": "the payload was too large to keep", "keys": [str(k)[:100] for k in list(shaped)[:50]]}
        shaped = shape(shaped, max_chars=limit)
        limit //= 4
    return shaped


def as_data(value: dict, max_chars: int = 2000) -> dict:
    """A webhook's payload (or part of it) as an activity's `data`."""
    return fit_data(shape(value, max_chars=max_chars))


def digest(value) -> str:
    """A stable hex digest of a JSON value (key order does not matter)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def snake(name: str) -> str:
    """`PostToolUse` -> `post_tool_use`, `Deal_Won__e` -> `deal_won_e`: a segment of an activity type."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    text = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return text[:60] or "unknown"


def parse_moment(value) -> datetime | None:
    """A producer's time (RFC 3339 text, or epoch seconds or milliseconds) if
    it is one an activity accepts; None otherwise, so the receive time is used."""
    moment = None
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            seconds = value / 1000 if value > 10**11 else value  # HubSpot and Salesforce count milliseconds
            moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
        elif isinstance(value, str) and value.strip():
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    moment = moment.astimezone(timezone.utc)
    if moment.year < 2000 or moment > datetime.now(timezone.utc) + MAX_FUTURE:
        return None
    return moment


def microseconds(moment: datetime) -> int:
    """Microseconds since the epoch: a `sequence` that orders events by time."""
    return (moment - _EPOCH) // _MICROSECOND


def build_event(**fields) -> dict:
    """An event dict as `store.add_activities` takes it, validated like any posted event.

    A normaliser builds what fits, so a failure here is a producer sending
    something no mapping expected; it is answered as a 422 naming the field.
    """
    try:
        return ActivityIn.model_validate(fields, strict=False).model_dump()
    except ValidationError as exc:
        details = validation_details(exc)
        raise ApiError(422, "validation_error", "The payload maps to an invalid activity: "
                       + ", ".join(d["field"] for d in details[:5]), details) from None

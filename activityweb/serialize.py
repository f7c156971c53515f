"""What we send: an activity as JSON, the one time format, page cursors.

The JSON API, the streams and the exports all show an activity through
`activity_json`; `ActivityOut` documents that shape in OpenAPI.
"""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from typing import Literal

from pydantic import ConfigDict, Field

from .errors import InvalidQuery
from .ids import is_uuid
from .schemas import ActivityIn


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 in UTC with microseconds and a `Z`, the one time format we emit."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def activity_json(activity: dict, tenant_slug: str) -> dict:
    """An activity as the JSON API, the streams and the exports show it."""
    out = {"id": activity["id"], "tenant": tenant_slug}
    for key, value in activity.items():
        if key != "id":
            out[key] = iso(value) if isinstance(value, datetime) else value
    return out


class ActivityOut(ActivityIn):
    """An activity as stored (documentation of responses; not used to validate input)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Server-made UUIDv7; sorts in the order events were received.")
    tenant: str
    source: str
    source_id: str
    priority: Literal["low", "normal", "high", "critical"]
    occurred_at: datetime
    received_at: datetime
    duplicate: bool | None = Field(None, description="Present on POST answers: true if this event was already stored.")


# ------------------------------------------------------------------ cursors
#
# A page's cursor is the keyset position of its last event, (occurred_at,
# id), opaque to clients.


def encode_cursor(position: tuple[datetime, str]) -> str:
    occurred_at, activity_id = position
    raw = json.dumps([occurred_at.isoformat(), activity_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def next_cursor(page) -> str | None:
    """The cursor of the page after `page` (a `store.Page`), or None if it is the last."""
    return encode_cursor(page.next_after) if page.next_after else None


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, activity_id = json.loads(raw)
        moment = datetime.fromisoformat(moment)
        if moment.tzinfo is None or not is_uuid(activity_id):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidQuery("cursor", "is not a cursor this server made; use next_cursor as given") from None
    return moment.astimezone(timezone.utc), activity_id


def parse_cursor(args) -> tuple[datetime, str] | None:
    """The `cursor` a client sent back, as a keyset position."""
    raw = args.get("cursor", "").strip()
    return decode_cursor(raw) if raw else None

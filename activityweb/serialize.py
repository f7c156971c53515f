"""What we send: an activity as JSON, the one time format, page cursors, the stats answer.

The JSON API, the streams and the exports all show an activity through
`activity_json`; `ActivityOut` documents that shape in OpenAPI. The stats
answer is declared once, as `StatsOut`: it both builds the JSON and gives
OpenAPI its schema.
"""
from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime, timezone
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from .errors import InvalidQuery
from .filters import in_time_range
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


# -------------------------------------------------------------------- stats

Moment = Annotated[datetime, PlainSerializer(iso, return_type=str), WithJsonSchema({"type": "string",
                                                                                   "format": "date-time"})]


class StatsCount(BaseModel):
    value: str | None
    count: int


class StatsDurations(BaseModel):
    count: int
    p50: float | None
    p95: float | None
    max: int | None

    @classmethod
    def of(cls, d) -> "StatsDurations":
        return cls(count=d.count, p50=d.p50, p95=d.p95, max=d.max)


class StatsToolDurations(StatsDurations):
    tool: str


class StatsFailures(BaseModel):
    failed: int
    succeeded: int
    rate: float | None = Field(description="failed ÷ (failed + succeeded); null if neither.")


class StatsPoint(BaseModel):
    at: Moment
    count: int
    failed: int
    by_source: dict[str, int]


class StatsSeries(BaseModel):
    bucket: Literal["hour", "day"]
    points: list[StatsPoint] = Field(description="Every bucket (UTC) from `since` (or the first event) to `until` "
                                     "(or the last), empty ones included.")


class StatsActor(BaseModel):
    id: str
    name: str | None
    count: int


class StatsEntity(BaseModel):
    type: str | None
    id: str
    name: str | None
    count: int


def _counts(pairs) -> list[StatsCount]:
    return [StatsCount(value=value, count=count) for value, count in pairs]


class StatsOut(BaseModel):
    """`GET /api/v1/activities/stats`: the shape of what a filter matches."""

    total: int
    first_at: Moment | None
    last_at: Moment | None
    by_type: list[StatsCount] = Field(description="The 20 most frequent types.")
    by_source: list[StatsCount]
    by_status: list[StatsCount]
    by_priority: list[StatsCount]
    failures: StatsFailures
    series: StatsSeries
    top_actors: list[StatsActor]
    top_entities: list[StatsEntity]
    duration_ms: StatsDurations = Field(description="Over events with a duration_ms; p50 and p95 interpolated as "
                                        "PostgreSQL's percentile_cont.")
    tools: list[StatsToolDurations] = Field(description="Durations per tool (entity_type `tool`), the 10 most called.")
    path: Literal["rollups", "scan"] = Field(description="`rollups`: from the hourly rollups (a filter of type, "
                                             "source, status, priority and times only); p50/p95 from a log-scale "
                                             "histogram, within 19 %. `scan`: from the events; percentiles exact.")
    scanned_since: Moment | None = Field(description="A scan reads the newest 20,000 events (in since/until) at "
                                         "most: the time it stopped at, or null if it read them all.")
    top_lists_since: Moment | None = Field(description="From the rollups, the top actors and entities count the "
                                           "newest 10,000 matching events among the newest 20,000 events (in "
                                           "since/until): the time they start at, or null if all.")

    @classmethod
    def of(cls, stats) -> "StatsOut":
        """From a `store.Stats`."""
        return cls(
            total=stats.total, first_at=stats.first_at, last_at=stats.last_at,
            by_type=_counts(stats.by_type), by_source=_counts(stats.by_source), by_status=_counts(stats.by_status),
            by_priority=_counts(stats.by_priority),
            failures=StatsFailures(failed=stats.failed, succeeded=stats.succeeded, rate=stats.failure_rate),
            series=StatsSeries(bucket=stats.bucket, points=[
                StatsPoint(at=p.at, count=p.count, failed=p.failed, by_source=p.by_source) for p in stats.series]),
            top_actors=[StatsActor(id=i, name=name, count=n) for i, name, n in stats.top_actors],
            top_entities=[StatsEntity(type=t, id=i, name=name, count=n) for t, i, name, n in stats.top_entities],
            duration_ms=StatsDurations.of(stats.durations),
            tools=[StatsToolDurations(tool=tool, **StatsDurations.of(d).model_dump()) for tool, d in stats.tools],
            path=stats.path, scanned_since=stats.scanned_since, top_lists_since=stats.top_lists_since,
        )


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


def any_key(key) -> bool:
    """A conversation id as a cursor's tie-breaker: any text an event may carry."""
    return isinstance(key, str) and 0 < len(key) <= 1000


def decode_cursor(cursor: str, valid_key=is_uuid) -> tuple[datetime, str]:
    """A position `encode_cursor` made: a time and the key that breaks ties
    (an event id; `valid_key=any_key`: a conversation id, any text)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        moment, activity_id = json.loads(raw)
        moment = datetime.fromisoformat(moment)
        if moment.tzinfo is None or not valid_key(activity_id):
            raise ValueError
        moment = in_time_range("cursor", moment)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidQuery("cursor", "is not a cursor this server made; use next_cursor as given") from None
    return moment, activity_id


def parse_cursor(args, valid_key=is_uuid) -> tuple[datetime, str] | None:
    """The `cursor` a client sent back, as a keyset position."""
    raw = args.get("cursor", "").strip()
    return decode_cursor(raw, valid_key) if raw else None

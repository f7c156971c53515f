"""What a rule is and when it fires, without the database.

A rule is a filter in the feed's own language (the query string the feed's
URL holds, parsed by `filters.parse_filter`: one filter definition) and one
condition:

- `every`: each matching event;
- `count`: at least `threshold` matches within the last `window_seconds`;
- `failure_rate`: of at least `threshold` matches in the window, more than
  `percent` % failed (`status` in FAILED_STATUSES);
- `cost`: the sum of a metric of the matches in the window is over `budget`.
  Metrics are pluggable (`register_metric`): the built-in `cost_usd` reads
  `data.cost_usd`, which OTLP cost events carry; a first-class cost column
  registers a metric of its own;
- `heartbeat`: no match for `window_seconds` ("nothing deployed in 7 days");
- `digest`: every `window_seconds` (an hour or a day) a summary of what
  matched, grouped as the feed groups (`activityweb.grouping`).

`cooldown_seconds`: after a firing, the rule stays quiet that long, so one
incident sends one alert. A heartbeat fires once per silence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from werkzeug.datastructures import MultiDict

from ..errors import ApiError, InvalidQuery
from ..filters import PAGE_KEYS, ActivityFilter, parse_filter

CONDITIONS = ("every", "count", "failure_rate", "cost", "heartbeat", "digest")
# Evaluated as events arrive; the others by the worker's clock.
AT_INGEST = frozenset({"every", "count", "failure_rate", "cost"})
SCHEDULED = frozenset({"heartbeat", "digest"})
FAILED_STATUSES = ("failed", "error")
DIGEST_PERIODS = {3600: "hourly", 86400: "daily"}
MAX_WINDOW = 90 * 86400


@dataclass(frozen=True)
class Metric:
    """A number summed over the events in a window: where it is in an event."""

    name: str
    unit: str
    data_key: str  # the key in the event's `data` object

    def of(self, event) -> float:
        data = event.get("data") if isinstance(event, dict) else getattr(event, "data", None)
        value = (data or {}).get(self.data_key)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> None:
    METRICS[metric.name] = metric


register_metric(Metric("cost_usd", "USD", "cost_usd"))


class RuleError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def rule_filter(query: str) -> ActivityFilter:
    """The rule's filter from its query string, as the API's list endpoint parses it."""
    args = MultiDict(parse_qsl(query.lstrip("?"), keep_blank_values=True))
    paging = sorted(PAGE_KEYS & set(args))
    if paging:
        raise RuleError("filter", f"{paging[0]}: pages are the feed's; a rule's filter has none")
    try:
        flt = parse_filter(args)
    except InvalidQuery as exc:
        raise RuleError("filter", exc.message) from None
    if flt.read is not None:
        raise RuleError("filter", "read: read state is a reader's; a rule has none")
    if flt.since or flt.until:
        raise RuleError("filter", "since/until: a rule watches what arrives; give it a window instead")
    return flt


Name = Annotated[str, StringConstraints(min_length=1, max_length=100, strip_whitespace=True)]


class RuleIn(BaseModel):
    """A rule as the API, the settings page and `flask rules create` give it."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    filter: Annotated[str, StringConstraints(max_length=2000)] = Field(
        "", description="The feed's filter as a query string, e.g. `type=deployment.failed&project=billing-api`.")
    condition: Literal["every", "count", "failure_rate", "cost", "heartbeat", "digest"]
    threshold: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="count: matches needed; failure_rate: events needed before the rate counts.")
    window_seconds: Annotated[int, Field(ge=1, le=MAX_WINDOW)] | None = Field(
        None, description="The sliding window (count, failure_rate, cost), the silence (heartbeat), or the "
        "period (digest: 3600 or 86400).")
    percent: Annotated[float, Field(ge=0, le=100)] | None = Field(None, description="failure_rate: the bound, in %.")
    metric: str | None = Field(None, description="cost: the metric summed (default cost_usd).")
    budget: Annotated[float, Field(ge=0)] | None = Field(None, description="cost: the bound of the metric's sum.")
    cooldown_seconds: Annotated[int, Field(ge=0, le=MAX_WINDOW)] = Field(
        0, description="After firing, stay quiet this long: one incident, one alert.")
    channel_id: int | None = Field(None, description="Where firings go; none: recorded only.")
    enabled: bool = True

    @model_validator(mode="after")
    def condition_needs(self):
        rule_filter(self.filter)
        need = {"count": ("threshold", "window_seconds"), "failure_rate": ("threshold", "window_seconds", "percent"),
                "cost": ("window_seconds", "budget"), "heartbeat": ("window_seconds",),
                "digest": ("window_seconds",)}.get(self.condition, ())
        for name in need:
            if getattr(self, name) is None:
                raise RuleError(name, f"is required for a {self.condition} rule")
        if self.condition == "cost":
            self.metric = self.metric or "cost_usd"
            if self.metric not in METRICS:
                raise RuleError("metric", f"is one of {', '.join(sorted(METRICS))}")
        if self.condition == "digest" and self.window_seconds not in DIGEST_PERIODS:
            raise RuleError("window_seconds", "a digest is hourly (3600) or daily (86400)")
        return self


def parse_rule(body) -> dict:
    """A rule's fields from a JSON body (a dict); a 422 ApiError naming each field at fault."""
    from ..schemas import validation_details

    if not isinstance(body, dict):
        raise ApiError(422, "validation_error", "The body must be a JSON object.",
                       [{"field": "body", "message": "expected an object"}])
    try:
        return RuleIn.model_validate(body).model_dump()
    except ValidationError as exc:
        details = validation_details(exc)
        for detail in details:  # a RuleError raised inside the model validator
            if detail["field"] == "body" and ": " in detail["message"]:
                detail["field"], detail["message"] = detail["message"].split(": ", 1)
        raise ApiError(422, "validation_error", f"{len(details)} invalid field(s): "
                       + ", ".join(d["field"] for d in details[:5]), details) from None


# ----------------------------------------------------------------- deciding


@dataclass(frozen=True)
class Window:
    """What the events matching a rule in its window add up to."""

    matches: int
    failed: int = 0
    metric: float = 0.0


def window_reason(rule, window: Window) -> str | None:
    """Why a windowed rule fires on this window, or None if it does not."""
    minutes = describe_seconds(rule.window_seconds)
    if rule.condition == "count":
        if window.matches >= rule.threshold:
            return f"{window.matches} matching events in {minutes} (at least {rule.threshold})"
    elif rule.condition == "failure_rate":
        if window.matches >= rule.threshold and window.failed * 100 > rule.percent * window.matches:
            rate = 100 * window.failed / window.matches
            return (f"{rate:.0f}% of {window.matches} events failed in {minutes} "
                    f"(over {rule.percent:g}%)")
    elif rule.condition == "cost":
        if window.metric > rule.budget:
            metric = METRICS[rule.metric]
            return f"{metric.name} {window.metric:.2f} {metric.unit} in {minutes}, over the budget of {rule.budget:g}"
    return None


def describe_seconds(seconds: int | None) -> str:
    if not seconds:
        return "-"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def describe(rule) -> str:
    """The condition in a line, for pages and messages."""
    window = describe_seconds(rule.window_seconds)
    kind = rule.condition
    if kind == "every":
        text = "every matching event"
    elif kind == "count":
        text = f"at least {rule.threshold} matches in {window}"
    elif kind == "failure_rate":
        text = f"over {rule.percent:g}% failed of at least {rule.threshold} events in {window}"
    elif kind == "cost":
        text = f"{rule.metric} over {rule.budget:g} in {window}"
    elif kind == "heartbeat":
        text = f"no matching event for {window}"
    else:
        text = f"{DIGEST_PERIODS.get(rule.window_seconds, window)} digest"
    if rule.cooldown_seconds:
        text += f"; quiet {describe_seconds(rule.cooldown_seconds)} after firing"
    return text

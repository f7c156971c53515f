"""Cost and tokens as they are added up: of a session (from the metric points
`store.usage` sums) or of a turn (from its `claude.otel.api_request` events)."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

TOKEN_KINDS = ("input", "output", "cacheRead", "cacheCreation")
# api_request event attributes -> token kinds of claude_code.token.usage
EVENT_TOKENS = {"input_tokens": "input", "output_tokens": "output", "cache_read_tokens": "cacheRead",
                "cache_creation_tokens": "cacheCreation"}
API_REQUEST = "claude.otel.api_request"
COST = "claude_code.cost.usage"
TOKENS = "claude_code.token.usage"
# Stored metric value = reported value x scale, as an integer (exact sums):
# USD in 1e-12 (a double's shortest repr has at most 17 significant digits;
# Claude Code's costs carry 7 decimals), seconds in microseconds.
METRIC_SCALES = {COST: 10**12, "claude_code.active_time.total": 10**6}


def usd(scaled: int) -> Decimal:
    """A stored cost as dollars, exactly."""
    return Decimal(scaled) / METRIC_SCALES[COST]


@dataclass
class Usage:
    """Cost (USD, exact decimal) and tokens by kind; `by_model` splits it."""

    cost: Decimal = Decimal(0)
    tokens: dict = field(default_factory=lambda: dict.fromkeys(TOKEN_KINDS, 0))
    by_model: dict = field(default_factory=dict)  # model -> Usage
    requests: int = 0  # API calls counted (turns only)

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens.values())

    def add_event(self, data: dict) -> None:
        """Add one api_request event's cost and tokens (and to its model's share)."""
        for usage in (self, self.by_model.setdefault(str(data.get("model") or "unknown"), Usage())):
            usage.requests += 1
            cost = data.get("cost_usd")
            if isinstance(cost, (int, float)) and not isinstance(cost, bool):
                usage.cost += Decimal(repr(cost))
            for attribute, kind in EVENT_TOKENS.items():
                value = data.get(attribute)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    usage.tokens[kind] += int(value)

    def as_json(self) -> dict:
        body = {"cost_usd": round(float(self.cost), 9), "cost_usd_exact": format(self.cost.normalize(), "f"),
                "tokens": dict(self.tokens), "total_tokens": self.total_tokens}
        if self.requests:
            body["requests"] = self.requests
        if self.by_model:
            body["by_model"] = {model: usage.as_json() for model, usage in sorted(self.by_model.items())}
        return body


def usage_of_events(events: list[dict]) -> Usage | None:
    """The usage of these events' API calls, or None if there was none."""
    usage = Usage()
    for event in events:
        if event.get("type") == API_REQUEST:
            usage.add_event(event.get("data") or {})
    return usage if usage.requests else None


def add_point(usage: Usage, metric: str, kind: str, value: int) -> None:
    """Add one summed metric point (`store.usage`: scaled integers) to `usage`."""
    if metric == COST:
        usage.cost += usd(value)
    elif kind in usage.tokens:
        usage.tokens[kind] += value

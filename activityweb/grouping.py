"""Grouping events: by day, and within a day by type, actor and entity.

Events of one type by one actor on one entity within a (UTC) day collapse
into one `Group`: "Alice added 5 endpoints to billing-api". The feed's
grouped view and the digest rules both use this, so a digest reads the way
the feed looks.

The interface, for the feed's day headers and a live event joining its group:

- `group_key(event) -> str`: the group an event belongs to, as a DOM-safe
  id (`g-<yyyymmdd>-<hash>`); a live event looks up `#<key>` and joins it.
- `group_by_day(events) -> list[Day]`: events in feed order (newest first)
  to days (newest first), each with its groups in order of their newest event.
- `Group.phrase`: the collapsed row's sentence; `Group.events`: the rows inside.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime, timezone


def _day(event) -> date:
    moment = event["occurred_at"]
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return moment.astimezone(timezone.utc).date()


def _identity(event) -> tuple:
    return (event.get("type"), event.get("actor_id") or event.get("actor_name"), event.get("entity_type"),
            event.get("entity_id") or event.get("entity_name"))


def group_key(event) -> str:
    digest = hashlib.blake2s(repr(_identity(event)).encode(), digest_size=6).hexdigest()
    return f"g-{_day(event):%Y%m%d}-{digest}"


def _plural(word: str, n: int) -> str:
    if n == 1:
        return word
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


PREPOSITIONS = {"added": "to", "removed": "from", "deployed": "to", "pushed": "to"}


@dataclass
class Group:
    key: str
    day: date
    events: list[dict] = field(default_factory=list)
    total: int | None = None  # when more are in the group than `events` (a live event joining one)

    @property
    def count(self) -> int:
        return len(self.events) if self.total is None else self.total

    @property
    def phrase(self) -> str:
        """"Alice added 5 endpoints to billing-api"; one event is its own title."""
        first = self.events[0]
        if self.count == 1:
            return first["title"]
        parts = first["type"].split(".")
        verb = parts[-1].replace("_", " ")
        noun = (parts[-2] if len(parts) > 1 else "event").replace("_", " ")
        who = first.get("actor_name") or first.get("actor_id") or "Someone"
        what = first.get("entity_name") or first.get("entity_id")
        text = f"{who} {verb} {self.count} {_plural(noun, self.count)}"
        return f"{text} {PREPOSITIONS.get(verb, 'on')} {what}" if what else text

    def summary(self) -> dict:
        return {"key": self.key, "day": self.day.isoformat(), "count": self.count, "phrase": self.phrase,
                "type": self.events[0]["type"], "event_ids": [e["id"] for e in self.events[:50]]}


@dataclass
class Day:
    day: date
    groups: list[Group] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(g.count for g in self.groups)


def group_by_day(events) -> list[Day]:
    days: dict[date, Day] = {}
    groups: dict[str, Group] = {}
    for event in events:
        key = group_key(event)
        group = groups.get(key)
        if group is None:
            day = _day(event)
            group = groups[key] = Group(key, day)
            days.setdefault(day, Day(day)).groups.append(group)
        group.events.append(event)
    return list(days.values())

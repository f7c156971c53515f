"""The batch matcher agrees with the filter table's own `matches`, field by field."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from werkzeug.datastructures import MultiDict

from activityweb.filters import parse_filter
from activityweb.grouping import group_by_day, group_key
from activityweb.rules.matching import BatchIndex, matching

NOW = datetime(2026, 12, 2, 12, tzinfo=timezone.utc)


def events(n: int, rng: random.Random) -> list[dict]:
    return [{"id": str(i), "type": rng.choice(["tool.started", "tool.completed", "deployment.failed", "lead.new"]),
             "source": rng.choice(["api", "claude_code"]), "status": rng.choice(["failed", "success", None]),
             "priority": rng.choice(["low", "normal", "high", "critical"]), "actor_id": rng.choice(["a", "b", None]),
             "project": rng.choice(["x", "y", None]), "environment": None, "entity_type": None, "entity_id": None,
             "conversation_id": None, "session_id": None, "correlation_id": None,
             "tags": rng.sample(["deploy", "test", "urgent"], rng.randrange(3)),
             "title": rng.choice(["Deployed billing", "Ran tests", "New lead Alice"]), "summary": None,
             "actor_name": None, "entity_name": None, "occurred_at": NOW - timedelta(minutes=rng.randrange(600))}
            for i in range(n)]


FILTERS = ["", "type=tool.*", "type=tool.started&status=failed", "type=deployment.failed&type=lead.new",
           "priority=critical&priority=high&project=x", "tag=deploy", "tag=test&actor=a", "q=dep", "q=new+al&source=api",
           "status=failed&since=2026-12-02T06:00:00Z", "until=2026-12-02T08:00:00Z&type=lead.*", "actor=nobody"]


def test_the_batch_matcher_agrees_with_the_filter_table():
    rng = random.Random(3)
    batch = events(400, rng)
    index = BatchIndex(batch)
    for query in FILTERS:
        flt = parse_filter(MultiDict([tuple(p.split("=", 1)) for p in query.replace("+", " ").split("&") if p]))
        expected = [e["id"] for e in batch if flt.matches(e)]
        assert [batch[p]["id"] for p in matching(flt, index)] == expected, query


def test_grouping_by_day_type_actor_and_entity():
    base = {"type": "project.endpoint.added", "actor_id": "alice", "actor_name": "Alice", "entity_type": "service",
            "entity_id": "billing-api", "entity_name": "billing-api", "title": "Added an endpoint"}
    today = [dict(base, id=str(i), occurred_at=NOW - timedelta(minutes=i)) for i in range(5)]
    other = dict(base, id="bob", actor_id="bob", actor_name="Bob", occurred_at=NOW)
    yesterday = dict(base, id="old", occurred_at=NOW - timedelta(days=1))
    days = group_by_day([other, *today, yesterday])
    assert [d.day.isoformat() for d in days] == ["2026-12-02", "2026-12-01"]
    assert [g.phrase for g in days[0].groups] == ["Added an endpoint", "Alice added 5 endpoints to billing-api"]
    assert group_key(today[0]) == group_key(today[4]) != group_key(yesterday) != group_key(other)

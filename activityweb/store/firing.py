"""Evaluating rules as events are stored: ingest's one hook, `insert_firing_rules`.

Given the rows an insert just stored, it matches them in memory against the
tenant's rules (the batch indexed once, `rules/matching.py`; no query per
event), adds windowed rules' matches to their time buckets (`rule_counters`,
one upsert), reads the windows of those not cooling down (one query), and
writes each firing to the outbox (`store/outbox.py`) with its claim on the
rule's cool-down. All of it is inside the insert's transaction, on SQLite and
on PostgreSQL: one commit for events, counts and firings.

Concurrent writers (other processes) stay exact: on PostgreSQL a batch takes
a transaction-scoped advisory lock on each rule it counts before counting,
so of two batches counting one rule the second reads its window only after
the first has committed (none misses a crossing), and the cool-down claim
is an UPDATE that re-checks `last_fired_at` after any concurrent claim's
commit (of two, one fires). SQLite has one writer at a time.
"""
from __future__ import annotations

import contextlib
import functools
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import utcnow
from ..rules.conditions import METRICS, Window, window_reason
from ..rules.matching import BatchIndex, matching
from ..serialize import activity_json
from .outbox import claim_and_enqueue_pg, enqueue, firing_payload
from .rules import LiveRule, counters_table, ingest_rules, rules_table
from .filtering import apply_filter
from .tables import activities, public

log = logging.getLogger(__name__)


@dataclass
class Firing:
    rule: LiveRule
    reason: str
    events: list[dict]
    count: int
    since: datetime | None = None  # a windowed rule's: where its window starts


def insert_firing_rules(conn, rows: list[dict], insert) -> set[str]:
    """Ingest's hook: `insert(conn, rows)` (returning the ids it stored), then
    the rules of the rows it stored, in the insert's own transaction.

    So firings, counts and cool-down claims commit with the events or not at
    all: no commit of their own, and no moment where events are stored but
    their rules not yet evaluated. SQLite's connection is in a transaction
    already; PostgreSQL's runs in autocommit (an insert alone is one round
    trip), so a transaction is begun only when the batch's tenants have
    ingest-time rules. A fault in evaluating is logged and never fails the
    ingest it rides on: on PostgreSQL the transaction is rolled back and the
    rows inserted alone."""
    tenants = {row["tenant_id"] for row in rows}
    if not rows or not any(ingest_rules(conn, t) for t in tenants):
        return insert(conn, rows)
    own_transaction = conn.dialect.name == "postgresql"
    if own_transaction:
        conn.exec_driver_sql("BEGIN")
    try:
        inserted = insert(conn, rows)
    except BaseException:
        if own_transaction:
            with contextlib.suppress(Exception):  # the insert's own error is the one to report
                conn.exec_driver_sql("ROLLBACK")
        raise
    try:
        fired = _fire_rules(conn, [row for row in rows if row["id"] in inserted])
    except Exception:
        log.exception("rules could not be evaluated for %d new events", len(inserted))
        if not own_transaction:  # SQLite: the failed statement is undone, the transaction goes on
            return inserted
        conn.exec_driver_sql("ROLLBACK")  # if the database is gone, this fails the ingest, as it should
        return insert(conn, rows)
    if own_transaction:
        conn.exec_driver_sql("COMMIT")  # the events' commit: a failure here is the ingest's
    if fired:
        from ..rules.setup import wake_worker

        wake_worker(current_app)
    return inserted


def _fire_rules(conn, rows: list[dict]) -> int:
    by_tenant: dict[int, list[dict]] = {}
    for row in rows:
        by_tenant.setdefault(row["tenant_id"], []).append(row)
    now = utcnow()
    firings: list[Firing] = []
    counted: list[tuple[LiveRule, list[dict]]] = []  # windowed rules and their matches in the window
    for tenant_id, events in by_tenant.items():
        rules = ingest_rules(conn, tenant_id)
        if not rules:
            continue
        index = BatchIndex(events)
        for rule in rules:
            if rule.condition == "every":
                if not rule.cooling(now) and (matched := matching(rule.flt, index)):
                    firings.extend(_every(rule, [events[p] for p in matched]))
                continue
            # Windowed rules count even while cooling down: the window after it must be whole.
            since = int(now.timestamp()) - rule.window_seconds
            epoch = index.epoch
            recent = [p for p in matching(rule.flt, index) if epoch[p] >= since]
            if recent:  # late arrivals from before the window change nothing
                counted.append((rule, index, recent))
    if not counted and not firings:
        return 0
    firings = _decide(conn, counted, firings, now)
    return _write_firings(conn, firings, now) if firings else 0


def _decide(conn, counted: list[tuple], firings: list[Firing], now: datetime) -> list[Firing]:
    """Count the windowed rules' matches, read their windows and add the firings they call for."""
    if counted:
        deciding = [(rule, index, recent) for rule, index, recent in counted if not rule.cooling(now)]
        # This batch alone can be enough for a count rule: then its window need not be read.
        asks = [rule for rule, _, recent in deciding
                if not (rule.condition == "count" and len(recent) >= rule.threshold)]
        totals = _count_and_total(conn, counted, asks, now)
        for rule, index, recent in deciding:
            window = totals.get(rule.id, Window(len(recent)))
            reason = window_reason(rule, window)
            if reason:
                firings.append(Firing(rule, reason, [index.events[p] for p in recent[:10]], window.matches,
                                      since=now - timedelta(seconds=rule.window_seconds)))
    return firings


def _every(rule: LiveRule, matched: list[dict]) -> list[Firing]:
    if rule.cooldown_seconds:  # the first fires; the rest fall in its cool-down
        return [Firing(rule, "a matching event", matched[:1], 1)]
    return [Firing(rule, "a matching event", [e], 1) for e in matched]


def bucket_seconds(window_seconds: int) -> int:
    """A windowed rule's counting bucket: about 600 to a window, at least a second."""
    return max(1, window_seconds // 600)


def _bucket(moment: datetime, size: int) -> int:
    return int(moment.timestamp()) // size * size


def _count_and_total(conn, counted: list[tuple], asks: list[LiveRule], now: datetime) -> dict[int, Window]:
    """Add each counted rule's matches (positions in a batch) to its time
    buckets, and read the windows of the rules in `asks`, this batch included."""
    buckets: dict[tuple[int, int], list] = {}
    for rule, index, recent in counted:
        bucket_of = index.buckets(bucket_seconds(rule.window_seconds))
        for bucket, n in Counter(map(bucket_of.__getitem__, recent)).items():
            buckets[(rule.id, bucket)] = [n, 0, 0.0]
        if rule.condition == "failure_rate":
            failed = index.failed
            for p in recent:
                if failed[p]:
                    buckets[(rule.id, bucket_of[p])][1] += 1
        elif rule.condition == "cost":
            metric, events = METRICS[rule.metric], index.events
            for p in recent:
                buckets[(rule.id, bucket_of[p])][2] += metric.of(events[p])
    if conn.dialect.name == "postgresql":  # one statement whatever the number of buckets
        keys, values = list(buckets), list(buckets.values())
        conn.exec_driver_sql(_PG_COUNT, {
            "rule_id": [k[0] for k in keys], "bucket": [k[1] for k in keys], "matches": [v[0] for v in values],
            "failed": [v[1] for v in values], "metric": [v[2] for v in values]})
    else:
        conn.execute(_counter_upsert(conn.dialect.name), [
            {"rule_id": rule_id, "bucket": bucket, "matches": m, "failed": f, "metric": x}
            for (rule_id, bucket), (m, f, x) in buckets.items()])
    return _window_totals(conn, asks, now) if asks else {}


def _window_start(rule: LiveRule, now: datetime) -> int:
    """The first bucket of the rule's sliding window (its edge is exact to one bucket)."""
    return _bucket(now - timedelta(seconds=rule.window_seconds), bucket_seconds(rule.window_seconds))


# PostgreSQL: every bucket in one statement with one array parameter per
# column, as ingest writes events; the text never changes, so psycopg prepares
# it. First (the one-row join yields nothing before its aggregate is done) it
# takes the counted rules' advisory locks, in rule order so that two batches
# cannot deadlock: held to the ingest transaction's end, they make the next
# batch counting the same rule wait for this one's commit before it reads.
RULE_LOCK_CLASS = 0x72756C65  # 'rule': the advisory-lock class (first key) of rules
_PG_COUNT = (
    "INSERT INTO rule_counters (rule_id, bucket, matches, failed, metric) "
    "SELECT u.* FROM unnest(%(rule_id)s::int[], %(bucket)s::bigint[], %(matches)s::int[], %(failed)s::int[], "
    f"%(metric)s::float8[]) AS u, (SELECT count(pg_advisory_xact_lock({RULE_LOCK_CLASS}, r.id)) "
    "FROM (SELECT DISTINCT id FROM unnest(%(rule_id)s::int[]) AS k(id) ORDER BY id) AS r) AS locked "
    "ON CONFLICT (rule_id, bucket) DO UPDATE SET matches = rule_counters.matches + excluded.matches, "
    "failed = rule_counters.failed + excluded.failed, metric = rule_counters.metric + excluded.metric"
)
# The windows asked for, from two arrays: (rule, first bucket).
_PG_TOTALS = (
    "SELECT c.rule_id, sum(c.matches), sum(c.failed), sum(c.metric) FROM rule_counters c "
    "JOIN unnest(%(rule_id)s::int[], %(since)s::bigint[]) AS a(rule_id, since) "
    "ON c.rule_id = a.rule_id AND c.bucket >= a.since GROUP BY c.rule_id"
)


@functools.cache
def _counter_upsert(dialect: str):
    """Built once, so its compiled form is reused: ingest's path runs it every batch."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(counters_table)
    return statement.on_conflict_do_update(index_elements=["rule_id", "bucket"], set_={
        "matches": counters_table.c.matches + statement.excluded.matches,
        "failed": counters_table.c.failed + statement.excluded.failed,
        "metric": counters_table.c.metric + statement.excluded.metric})


@functools.cache
def _totals_query(rules: int):
    """The totals of `rules` rules' windows, each from its own first bucket: one shape per count, compiled once."""
    c = counters_table.c
    ranges = [sa.and_(c.rule_id == sa.bindparam(f"r{i}"), c.bucket >= sa.bindparam(f"s{i}")) for i in range(rules)]
    return (sa.select(c.rule_id, sa.func.sum(c.matches), sa.func.sum(c.failed), sa.func.sum(c.metric))
            .where(sa.or_(*ranges)).group_by(c.rule_id))


def _window_totals(conn, rules: list[LiveRule], now: datetime) -> dict[int, Window]:
    """Each rule's totals over its sliding window (edge exact to one bucket), in one query."""
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(_PG_TOTALS, {"rule_id": [r.id for r in rules],
                                                 "since": [_window_start(r, now) for r in rules]})
        return {row[0]: Window(int(row[1]), int(row[2]), float(row[3])) for row in rows}
    params = {}
    for i, rule in enumerate(rules):
        params[f"r{i}"] = rule.id
        params[f"s{i}"] = _window_start(rule, now)
    return {row[0]: Window(int(row[1]), int(row[2]), float(row[3]))
            for row in conn.execute(_totals_query(len(rules)), params)}


def prune_counters(now: datetime | None = None) -> int:
    """Drop buckets that have left their rule's window (with a window's margin)."""
    now_epoch = int((now or utcnow()).timestamp())
    window = sa.select(rules_table.c.window_seconds).where(rules_table.c.id == counters_table.c.rule_id)
    result = db.session.execute(sa.delete(counters_table).where(
        counters_table.c.bucket < now_epoch - 2 * sa.func.coalesce(window.scalar_subquery(), 0)))
    db.session.commit()
    return result.rowcount


@functools.cache
def _claim_query(rules: int):
    """Claim `rules` rules' firings at once: each whose cool-down has passed (or that has none) is set to now."""
    c = rules_table.c
    return (sa.update(rules_table).values(last_fired_at=sa.bindparam("now"))
            .where(sa.or_(*(sa.and_(c.id == sa.bindparam(f"r{i}"), sa.or_(c.last_fired_at.is_(None),
                                                                           c.last_fired_at <= sa.bindparam(f"l{i}")))
                            for i in range(rules))))
            .returning(c.id))


def _claim_many(conn, rules: list[LiveRule], now: datetime) -> set[int]:
    """The rules among these that may fire now (one statement); of two processes, one wins each."""
    params = {"now": now}
    for i, rule in enumerate(rules):
        params[f"r{i}"] = rule.id
        params[f"l{i}"] = now - timedelta(seconds=rule.cooldown_seconds)
    return set(conn.execute(_claim_query(len(rules)), params).scalars())


def _window_events(conn, firing: Firing) -> list[dict]:
    """What a receiver reads with a windowed firing: the window's latest matches, not only this batch's."""
    if firing.since is None:
        return firing.events
    rule = firing.rule
    query = apply_filter(sa.select(activities).where(activities.c.tenant_id == rule.tenant_id,
                                                     activities.c.occurred_at >= firing.since), rule.flt)
    rows = conn.execute(query.order_by(activities.c.occurred_at.desc(), activities.c.id.desc()).limit(10)).mappings()
    return [public(row) for row in rows] or firing.events


def _write_firings(conn, firings: list[Firing], now: datetime) -> int:
    """Claim the firing rules (their cool-downs) and write the winners' messages, atomically."""
    for f in firings:
        f.events = _window_events(conn, f)
    rules = list({f.rule.id: f.rule for f in firings}.values())
    messages = [(f.rule, "firing", f.reason, firing_payload(
        f.rule, f.reason, f.count, [activity_json(public(e), f.rule.tenant_slug) for e in f.events], now))
        for f in firings]
    if conn.dialect.name == "postgresql":  # one statement: a claim is never made without its message
        claims = [(r.id, now - timedelta(seconds=r.cooldown_seconds)) for r in rules]
        claimed = claim_and_enqueue_pg(conn, claims, messages, now)
    else:
        claimed = _claim_many(conn, rules, now)
        enqueue(conn, [m for m in messages if m[0].id in claimed], now)
    for rule in rules:
        if rule.id in claimed:
            rule.last_fired_at = now  # this process's cache cools down too
    return sum(m[0].id in claimed for m in messages)



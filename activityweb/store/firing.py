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
from sqlalchemy.dialects import sqlite

from ..extensions import db
from ..models import utcnow
from ..rules.conditions import METRICS, Window, window_reason
from ..rules.matching import BatchIndex, matching
from ..serialize import activity_json
from .database import autocommit_connection, pipeline
from .filtering import apply_filter
from .outbox import CLAIM_AND_ENQUEUE_PG, claim_and_enqueue_params, claim_and_enqueue_pg, enqueue, firing_payload
from .rules import LiveRule, counters_table, ingest_rules, rules_table
from .tables import activities, public

log = logging.getLogger(__name__)
FIRING_EVENTS = 10  # the matches a firing carries to its receiver, newest first


@dataclass
class Firing:
    rule: LiveRule
    reason: str
    events: list[dict]
    count: int
    since: datetime | None = None  # a windowed rule's window start, when the batch holds too few of its matches


def insert_firing_rules(conn, rows: list[dict], insert) -> set[str]:
    """Ingest's hook: `insert(conn, rows, begin=)` (returning the ids it
    stored), then the rules of the rows it stored, in the insert's own transaction.

    So firings, counts and cool-down claims commit with the events or not at
    all: no commit of their own, and no moment where events are stored but
    their rules not yet evaluated. SQLite's connection is in a transaction
    already; PostgreSQL's runs in autocommit (an insert alone is one round
    trip), so a transaction is begun only when the batch's tenants have
    ingest-time rules (`begin=True`: the insert opens it, in its own round
    trip). A fault in evaluating is logged and never fails the ingest it
    rides on: on PostgreSQL the transaction is rolled back and the rows
    inserted alone."""
    tenants = {row["tenant_id"] for row in rows}
    if not rows or not any(ingest_rules(conn, t) for t in tenants):
        return insert(conn, rows)
    own_transaction = conn.dialect.name == "postgresql"
    try:
        inserted = insert(conn, rows, begin=own_transaction)
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
        if conn.invalidated:  # the connection died, and the events' transaction with it
            conn.rollback()  # SQLAlchemy's bookkeeping, so `conn` may be used (reconnected) after
            # Not on `conn`: reconnected, it is no longer in autocommit, and the events would not commit.
            with autocommit_connection() as fresh:
                return insert(fresh, rows)  # if the database is gone, this fails the ingest, as it should
        conn.exec_driver_sql("ROLLBACK")
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
            recent = index.since(matching(rule.flt, index), int(now.timestamp()) - rule.window_seconds)
            if recent:  # late arrivals from before the window change nothing
                counted.append((rule, index, recent))
    if not counted and not firings:
        return 0
    deciding = [(rule, index, recent) for rule, index, recent in counted if not rule.cooling(now)]
    # This batch alone can be enough for a count rule: then its window need not be read.
    asks = [rule for rule, _, recent in deciding if not (rule.condition == "count" and len(recent) >= rule.threshold)]
    totals, fired = _count_and_fire(conn, counted, asks, firings, now)
    windowed = []
    for rule, index, recent in deciding:
        window = totals.get(rule.id, Window(len(recent)))
        reason = window_reason(rule, window)
        if reason:
            windowed.append(_windowed(rule, reason, [index.events[p] for p in recent], window.matches, now))
    return fired + (_fire(conn, windowed, now) if windowed else 0)


def _count_and_fire(conn, counted: list[tuple], asks: list[LiveRule], firings: list[Firing],
                    now: datetime) -> tuple[dict[int, Window], int]:
    """Count the windowed rules' matches (`counted`), read the windows of
    those in `asks`, and fire `firings` (every-match rules': known before any
    count). Returns the windows' totals, this batch included, and the firings written.

    On PostgreSQL it is one pipeline, waited for once: on ingest's path a wait
    costs more than a small statement. Still exact: the server runs the totals
    only once the count (and its advisory locks) is done, and under READ
    COMMITTED the totals statement takes its own snapshot then, so it sees
    every batch that held a lock first."""
    buckets = _buckets(counted)
    if conn.dialect.name != "postgresql":
        if buckets:
            conn.execute(_counter_upsert(), [{"rule_id": r, "bucket": b, "matches": m, "failed": f, "metric": x}
                                             for (r, b), (m, f, x) in buckets.items()])
        totals = _window_totals(conn, asks, now) if asks else {}
        return totals, _fire(conn, firings, now) if firings else 0
    written = _messages(conn, firings, now) if firings else None  # every-match firings: nothing to read
    keys, values = list(buckets), list(buckets.values())
    with pipeline(conn) as raw:
        if buckets:
            raw.execute(_PG_COUNT, {"rule_id": [k[0] for k in keys], "bucket": [k[1] for k in keys],
                                    "matches": [v[0] for v in values], "failed": [v[1] for v in values],
                                    "metric": [v[2] for v in values]})
        totals = raw.execute(_PG_TOTALS, {"rule_id": [r.id for r in asks],
                                          "since": [_window_start(r, now) for r in asks]}) if asks else None
        claims = raw.execute(CLAIM_AND_ENQUEUE_PG, claim_and_enqueue_params(*written, now)) if written else None
    fired = _claimed(written, {row[0] for row in claims}, now) if written else 0
    return ({row[0]: Window(int(row[1]), int(row[2]), float(row[3])) for row in totals} if totals else {}), fired


def _windowed(rule: LiveRule, reason: str, recent: list[dict], count: int, now: datetime) -> Firing:
    """A windowed rule's firing, carrying the window's newest matches. A batch
    that holds FIRING_EVENTS of them (a busy window) is enough on its own, and
    the store is not read on ingest's path; a smaller one (the usual hook
    posting one event) is topped up from the window when the firing is written."""
    newest = sorted(recent, key=lambda e: e["occurred_at"], reverse=True)[:FIRING_EVENTS]
    if len(recent) >= FIRING_EVENTS or len(recent) == count:
        return Firing(rule, reason, newest, count)
    return Firing(rule, reason, newest, count, since=now - timedelta(seconds=rule.window_seconds))


def _every(rule: LiveRule, matched: list[dict]) -> list[Firing]:
    if rule.cooldown_seconds:  # the first fires; the rest fall in its cool-down
        return [Firing(rule, "a matching event", matched[:1], 1)]
    return [Firing(rule, "a matching event", [e], 1) for e in matched]


def bucket_seconds(window_seconds: int) -> int:
    """A windowed rule's counting bucket: about 600 to a window, at least a second."""
    return max(1, window_seconds // 600)


def _bucket(moment: datetime, size: int) -> int:
    return int(moment.timestamp()) // size * size


def _buckets(counted: list[tuple]) -> dict[tuple[int, int], list]:
    """(rule, bucket) -> [matches, failed, metric] of each counted rule's matches (positions in a batch)."""
    buckets: dict[tuple[int, int], list] = {}
    for rule, index, recent in counted:
        size = bucket_seconds(rule.window_seconds)
        failed = index.failed if rule.condition == "failure_rate" else None
        metric = index.metric(METRICS[rule.metric]) if rule.condition == "cost" else None
        only = index.one_bucket(size)
        if only is not None:  # the usual live batch: all of it in one bucket
            buckets[(rule.id, only)] = [len(recent), sum(failed[p] for p in recent) if failed else 0,
                                        sum(metric[p] for p in recent) if metric else 0.0]
            continue
        bucket_of = index.buckets(size)
        for bucket, n in Counter(map(bucket_of.__getitem__, recent)).items():
            buckets[(rule.id, bucket)] = [n, 0, 0.0]
        for p in recent:
            if failed and failed[p]:
                buckets[(rule.id, bucket_of[p])][1] += 1
            if metric:
                buckets[(rule.id, bucket_of[p])][2] += metric[p]
    return buckets


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
def _counter_upsert():
    """SQLite's, built once so its compiled form is reused: ingest's path runs it every batch."""
    statement = sqlite.insert(counters_table)
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
    """SQLite: each rule's totals over its sliding window (edge exact to one bucket), in one query."""
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
    """What a receiver reads with a windowed firing: the window's newest matches, not only this batch's."""
    if firing.since is None:
        return firing.events
    rule = firing.rule
    query = apply_filter(sa.select(activities).where(activities.c.tenant_id == rule.tenant_id,
                                                     activities.c.occurred_at >= firing.since), rule.flt)
    query = query.order_by(activities.c.occurred_at.desc(), activities.c.id.desc()).limit(FIRING_EVENTS)
    rows = conn.execute(query).mappings()
    return [public(row) for row in rows] or firing.events


def _messages(conn, firings: list[Firing], now: datetime) -> tuple[list[LiveRule], list[tuple]]:
    """The firing rules and the outbox messages (rule, kind, reason, payload) of `firings`."""
    for f in firings:
        f.events = _window_events(conn, f)
    rules = list({f.rule.id: f.rule for f in firings}.values())
    return rules, [(f.rule, "firing", f.reason, firing_payload(
        f.rule, f.reason, f.count, [activity_json(public(e), f.rule.tenant_slug) for e in f.events], now))
        for f in firings]


def _fire(conn, firings: list[Firing], now: datetime) -> int:
    """Claim the firing rules (their cool-downs) and write the winners' messages, atomically."""
    rules, messages = written = _messages(conn, firings, now)
    if conn.dialect.name == "postgresql":  # one statement: a claim is never made without its message
        claimed = claim_and_enqueue_pg(conn, rules, messages, now)
    else:
        claimed = _claim_many(conn, rules, now)
        enqueue(conn, [m for m in messages if m[0].id in claimed], now)
    return _claimed(written, claimed, now)


def _claimed(written: tuple[list[LiveRule], list[tuple]], claimed: set[int], now: datetime) -> int:
    """How many messages were written, their rules' claims being `claimed`."""
    rules, messages = written
    for rule in rules:
        if rule.id in claimed:
            rule.last_fired_at = now  # this process's cache cools down too
    return sum(m[0].id in claimed for m in messages)

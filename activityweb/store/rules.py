"""Rules and channels: their rows, and evaluating rules as events are stored.

`fire_rules` is ingest's one hook (store/ingest.py): given the rows an insert
just stored, it matches them in memory against the tenant's rules (the batch
indexed once, `rules/matching.py`; no query per event), adds windowed rules'
matches to their time buckets (`rule_counters`, one upsert), reads the
windows of those not cooling down (one query), and writes each firing to the
outbox (`store/outbox.py`). On SQLite that is inside the
insert's transaction; on PostgreSQL (where the insert commits on its own)
right after it, in one transaction of its own.

A tenant's rules are cached per process for RULE_CACHE_SECONDS; a change
made in this process clears the cache at once.
"""
from __future__ import annotations

import functools
import logging
from collections import Counter
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..filters import ActivityFilter
from ..models import Tenant, utcnow
from ..rules.conditions import AT_INGEST, FAILED_STATUSES, METRICS, SCHEDULED, Window, rule_filter, window_reason
from ..rules.matching import BatchIndex, matching
from ..rules.models import OutboxMessage, Rule, RuleChannel, RuleCounter
from ..serialize import activity_json
from .filtering import apply_filter
from .outbox import claim_and_enqueue_pg, enqueue, firing_payload
from .tables import activities, public

log = logging.getLogger(__name__)
RULE_CACHE_SECONDS = 5.0
rules_table = Rule.__table__
channels_table = RuleChannel.__table__
counters_table = RuleCounter.__table__


class RuleConflict(ValueError):
    """A name the tenant already uses."""


# ------------------------------------------------------------------ channels


def list_channels(tenant_id: int) -> list[RuleChannel]:
    return list(db.session.execute(sa.select(RuleChannel).where(RuleChannel.tenant_id == tenant_id)
                                   .order_by(RuleChannel.name)).scalars())


def get_channel(tenant_id: int, channel_id: int) -> RuleChannel | None:
    return db.session.execute(sa.select(RuleChannel).where(RuleChannel.tenant_id == tenant_id,
                                                           RuleChannel.id == channel_id)).scalar_one_or_none()


def create_channel(tenant_id: int, name: str, kind: str, target: str, secret: str | None) -> RuleChannel:
    channel = RuleChannel(tenant_id=tenant_id, name=name, kind=kind, target=target, secret=secret)
    db.session.add(channel)
    _commit_or_conflict(f"a channel named {name!r} exists")
    db.session.refresh(channel)  # loaded now, so a page rendering it asks the database nothing
    return channel


def delete_channel(tenant_id: int, channel_id: int) -> bool:
    channel = get_channel(tenant_id, channel_id)
    if channel is None:
        return False
    db.session.delete(channel)
    db.session.commit()
    forget_rules()
    return True


def resume_channel(tenant_id: int, channel_id: int) -> RuleChannel | None:
    """Unpause: its waiting messages are due again now."""
    channel = get_channel(tenant_id, channel_id)
    if channel is None:
        return None
    channel.paused_at = channel.pause_reason = channel.failing_since = None
    channel.consecutive_failures = 0
    db.session.execute(sa.update(OutboxMessage).where(OutboxMessage.channel_id == channel_id,
                                                      OutboxMessage.status == "pending")
                       .values(next_attempt_at=utcnow()))
    db.session.commit()
    return channel


# --------------------------------------------------------------------- rules


def list_rules(tenant_id: int) -> list[Rule]:
    return list(db.session.execute(sa.select(Rule).where(Rule.tenant_id == tenant_id).order_by(Rule.name)).scalars())


def get_rule(tenant_id: int, rule_id: int) -> Rule | None:
    return db.session.execute(sa.select(Rule).where(Rule.tenant_id == tenant_id, Rule.id == rule_id)
                              ).scalar_one_or_none()


def save_rule(tenant_id: int, fields: dict, rule: Rule | None = None) -> Rule:
    """Create a rule (or replace `rule`'s fields) from validated fields (`conditions.parse_rule`)."""
    if fields.get("channel_id") is not None and get_channel(tenant_id, fields["channel_id"]) is None:
        raise LookupError("channel_id")
    if rule is None:
        rule = Rule(tenant_id=tenant_id)
        db.session.add(rule)
    else:  # what it counted was for its old filter and condition
        db.session.execute(sa.delete(counters_table).where(counters_table.c.rule_id == rule.id))
    for key, value in fields.items():
        setattr(rule, key, value)
    _commit_or_conflict(f"a rule named {fields['name']!r} exists")
    forget_rules()
    return rule


def delete_rule(tenant_id: int, rule_id: int) -> bool:
    rule = get_rule(tenant_id, rule_id)
    if rule is None:
        return False
    db.session.delete(rule)
    db.session.commit()
    forget_rules()
    return True


def _commit_or_conflict(message: str) -> None:
    try:
        db.session.commit()
    except sa.exc.IntegrityError:
        db.session.rollback()
        raise RuleConflict(message) from None


# ------------------------------------------------------- compiled and cached


@dataclass
class LiveRule:
    """A rule as evaluation needs it: its parsed filter beside its columns."""

    id: int
    tenant_id: int
    tenant_slug: str
    name: str
    filter_text: str
    flt: ActivityFilter
    condition: str
    threshold: int | None
    window_seconds: int | None
    percent: float | None
    metric: str | None
    budget: float | None
    cooldown_seconds: int
    channel_id: int | None
    last_fired_at: datetime | None
    created_at: datetime = field(default=None)

    def cooling(self, now: datetime) -> bool:
        return bool(self.cooldown_seconds and self.last_fired_at
                    and now - self.last_fired_at < timedelta(seconds=self.cooldown_seconds))


class RuleCache:
    def __init__(self):
        self.by_tenant: dict[int, tuple[float, list[LiveRule]]] = {}
        self.lock = threading.Lock()


def _cache() -> RuleCache:
    return current_app.extensions.setdefault("activityweb.rules", RuleCache())


def forget_rules() -> None:
    cache = _cache()
    with cache.lock:
        cache.by_tenant.clear()


def _live_rules(conn, where) -> list[LiveRule]:
    tenants = Tenant.__table__
    query = (sa.select(rules_table, tenants.c.slug).join(tenants, tenants.c.id == rules_table.c.tenant_id)
             .where(rules_table.c.enabled.is_(True), where).order_by(rules_table.c.id))
    found = []
    for row in conn.execute(query).mappings():
        found.append(LiveRule(
            id=row["id"], tenant_id=row["tenant_id"], tenant_slug=row["slug"], name=row["name"],
            filter_text=row["filter"], flt=rule_filter(row["filter"]), condition=row["condition"],
            threshold=row["threshold"], window_seconds=row["window_seconds"], percent=row["percent"],
            metric=row["metric"], budget=row["budget"], cooldown_seconds=row["cooldown_seconds"],
            channel_id=row["channel_id"], last_fired_at=_aware(row["last_fired_at"]),
            created_at=_aware(row["created_at"])))
    return found


def _aware(moment):
    from ..models import UTCDateTime

    return UTCDateTime().process_result_value(moment, None) if isinstance(moment, datetime) else moment


def ingest_rules(conn, tenant_id: int) -> list[LiveRule]:
    """The tenant's enabled rules evaluated at ingest, from the cache when fresh."""
    cache = _cache()
    now = time.monotonic()
    cached = cache.by_tenant.get(tenant_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    found = [r for r in _live_rules(conn, rules_table.c.tenant_id == tenant_id) if r.condition in AT_INGEST]
    with cache.lock:
        cache.by_tenant[tenant_id] = (now + RULE_CACHE_SECONDS, found)
    return found


def scheduled_rules() -> list[LiveRule]:
    """Every tenant's heartbeat and digest rules (the worker's clock evaluates them)."""
    with db.engine.connect() as conn:
        return _live_rules(conn, rules_table.c.condition.in_(sorted(SCHEDULED)))


# ------------------------------------------------------------- at ingest


@dataclass
class Firing:
    rule: LiveRule
    reason: str
    events: list[dict]
    count: int


def fire_rules(conn, rows: list[dict]) -> int:
    """Ingest's hook: evaluate the new rows against their tenants' rules and
    write the firings to the outbox. Returns how many fired.

    A fault here is logged and never fails the ingest it rides on."""
    if not rows:
        return 0
    try:
        fired = _fire_rules(conn, rows)
    except Exception:
        log.exception("rules could not be evaluated for %d new events", len(rows))
        return 0
    if fired:
        from ..rules.setup import wake_worker

        wake_worker(current_app)
    return fired


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
    if conn.dialect.name != "postgresql":  # inside the insert's transaction
        return _decide_and_write(conn, counted, firings, now)
    # The insert has committed. Counting commits on its own before the
    # windows are read, so of concurrent writers the last to read sees every
    # count (none misses a crossing; a rule without cool-down may fire twice:
    # at least once). The firings' claims and messages are one statement.
    firings = _decide(conn, counted, firings, now)
    return _write_firings(conn, firings, now) if firings else 0


def _decide_and_write(conn, counted: list[tuple], firings: list[Firing], now: datetime) -> int:
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
                firings.append(Firing(rule, reason, [index.events[p] for p in recent[:10]], window.matches))
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
# it. Counters are a cache of the events, so their commit does not wait for
# the disk (set_config(..., true) holds for this statement's own transaction;
# a crash loses at most a fraction of a second of counts), which would
# otherwise cost ingest a second flush per batch.
_PG_COUNT = (
    "INSERT INTO rule_counters (rule_id, bucket, matches, failed, metric) "
    "SELECT u.* FROM unnest(%(rule_id)s::int[], %(bucket)s::bigint[], %(matches)s::int[], %(failed)s::int[], "
    "%(metric)s::float8[]) AS u, (SELECT set_config('synchronous_commit', 'off', true)) AS lazy_commit "
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


def _claim_seen(conn, rule: LiveRule, now: datetime, seen: datetime | None) -> bool:
    """Set a scheduled rule's last firing to now if it is still what the
    worker saw: of two workers firing one heartbeat at once, one wins."""
    query = sa.update(rules_table).where(rules_table.c.id == rule.id).values(last_fired_at=now)
    query = query.where(rules_table.c.last_fired_at.is_(None) if seen is None else rules_table.c.last_fired_at == seen)
    won = conn.execute(query).rowcount == 1
    if won:
        rule.last_fired_at = now  # this process's cache cools down too
    return won


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


def _write_firings(conn, firings: list[Firing], now: datetime) -> int:
    """Claim the firing rules (their cool-downs) and write the winners' messages, atomically."""
    rules = list({f.rule.id: f.rule for f in firings}.values())
    messages = [(f.rule, "firing", f.reason, firing_payload(
        f.rule, f.reason, f.count, [activity_json(public(e), f.rule.tenant_slug) for e in f.events], now))
        for f in firings]
    if conn.dialect.name == "postgresql":  # autocommit: one statement
        claims = [(r.id, now - timedelta(seconds=r.cooldown_seconds)) for r in rules]
        claimed = claim_and_enqueue_pg(conn, claims, messages, now)
    else:  # inside the insert's transaction
        claimed = _claim_many(conn, rules, now)
        enqueue(conn, [m for m in messages if m[0].id in claimed], now)
    for rule in rules:
        if rule.id in claimed:
            rule.last_fired_at = now  # this process's cache cools down too
    return sum(m[0].id in claimed for m in messages)


# ------------------------------------------------------------ on the clock


def last_match_time(rule: LiveRule) -> datetime | None:
    query = apply_filter(sa.select(sa.func.max(activities.c.occurred_at))
                         .where(activities.c.tenant_id == rule.tenant_id), rule.flt)
    return _aware(db.session.execute(query).scalar())


def matches_between(rule: LiveRule, start: datetime, end: datetime, limit: int = 1000) -> list[dict]:
    query = apply_filter(sa.select(activities).where(activities.c.tenant_id == rule.tenant_id,
                                                     activities.c.occurred_at >= start,
                                                     activities.c.occurred_at < end), rule.flt)
    rows = db.session.execute(query.order_by(activities.c.occurred_at.desc()).limit(limit)).mappings()
    return [public(row) for row in rows]


def fire_scheduled(rule: LiveRule, kind: str, reason: str, payload: dict | None, now: datetime,
                   fired_at: datetime | None = None) -> bool:
    """Record a heartbeat's or digest's firing, if no other worker did since
    this one read the rule (`rule.last_fired_at`). `fired_at` is what
    last_fired_at becomes (a digest: the end of the period it covered);
    without a payload the rule's clock moves on and nothing is sent."""
    with db.engine.begin() as conn:
        seen = rule.last_fired_at
        if not _claim_seen(conn, rule, fired_at or now, seen):
            return False
        if payload is not None:
            enqueue(conn, [(rule, kind, reason, payload)], now)
    return True

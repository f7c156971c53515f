"""Rules and channels: their rows, and evaluating rules as events are stored.

`fire_rules` is ingest's one hook (store/ingest.py): given the rows an insert
just stored, it matches them in memory against the tenant's rules (the
filter's own `matches`, no query per event), asks the database only for the
windows of rules that matched and are not cooling down, and writes each
firing to the outbox (`store/outbox.py`). On SQLite that is inside the
insert's transaction; on PostgreSQL (where the insert commits on its own)
right after it, in one transaction of its own.

A tenant's rules are cached per process for RULE_CACHE_SECONDS; a change
made in this process clears the cache at once.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from ..extensions import db
from ..filters import ActivityFilter
from ..models import Tenant, utcnow
from ..rules.conditions import AT_INGEST, FAILED_STATUSES, METRICS, SCHEDULED, Window, rule_filter, window_reason
from ..rules.models import OutboxMessage, Rule, RuleChannel
from ..serialize import activity_json
from .filtering import apply_filter
from .outbox import enqueue, firing_payload
from .tables import activities, public

log = logging.getLogger(__name__)
RULE_CACHE_SECONDS = 5.0
rules_table = Rule.__table__
channels_table = RuleChannel.__table__


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
    for tenant_id, events in by_tenant.items():
        for rule in ingest_rules(conn, tenant_id):
            if rule.cooling(now):
                continue
            matched = [e for e in events if rule.flt.matches(e)]
            if matched:
                firings.extend(_decide(conn, rule, matched, now))
    if not firings:
        return 0
    if conn.dialect.name == "postgresql":  # the insert has committed; these writes are one transaction
        with db.engine.begin() as tx:
            return _write_firings(tx, firings, now)
    return _write_firings(conn, firings, now)


def _decide(conn, rule: LiveRule, matched: list[dict], now: datetime) -> list[Firing]:
    if rule.condition == "every":
        if rule.cooldown_seconds:  # the first fires; the rest fall in its cool-down
            return [Firing(rule, "a matching event", matched[:1], 1)]
        return [Firing(rule, "a matching event", [e], 1) for e in matched]
    since = now - timedelta(seconds=rule.window_seconds)
    recent = [e for e in matched if e["occurred_at"] >= since]
    if not recent:
        return []  # late arrivals from before the window change nothing
    if rule.condition == "count" and len(recent) >= rule.threshold:
        window = Window(len(recent))  # this batch alone is enough: no query
    else:
        window = window_totals(conn, rule, since)
    reason = window_reason(rule, window)
    return [Firing(rule, reason, recent[:10], window.matches)] if reason else []


def window_totals(conn, rule: LiveRule, since: datetime) -> Window:
    """Matches of the rule's filter since `since`: how many, how many failed, the metric's sum."""
    columns = [sa.func.count()]
    if rule.condition == "failure_rate":
        columns.append(sa.func.count().filter(activities.c.status.in_(FAILED_STATUSES)))
    if rule.condition == "cost":
        columns.append(sa.func.coalesce(sa.func.sum(_metric_value(conn, METRICS[rule.metric].data_key)), 0))
    query = apply_filter(sa.select(*columns).where(activities.c.tenant_id == rule.tenant_id,
                                                   activities.c.occurred_at >= since), rule.flt)
    row = conn.execute(query).one()
    return Window(matches=row[0], failed=row[1] if rule.condition == "failure_rate" else 0,
                  metric=float(row[1]) if rule.condition == "cost" else 0.0)


def _metric_value(conn, key: str):
    """An event's `data[key]` if it is a number, else NULL, on either database."""
    if conn.dialect.name == "postgresql":
        value = activities.c.data.op("->")(sa.literal(key))
        return sa.case((sa.func.jsonb_typeof(value) == "number",
                        sa.cast(activities.c.data.op("->>")(sa.literal(key)), sa.Float)))
    path = f"$.{key}"
    return sa.case((sa.func.json_type(activities.c.data, path).in_(("integer", "real")),
                    sa.func.json_extract(activities.c.data, path)))


def _claim(conn, rule: LiveRule, now: datetime, seen: datetime | None = None, check_seen: bool = False) -> bool:
    """Set the rule's last firing to now, if its cool-down (or, for the
    scheduled ones, the state the worker saw) still allows it: of two
    processes firing one rule at once, one wins."""
    query = sa.update(rules_table).where(rules_table.c.id == rule.id).values(last_fired_at=now)
    if check_seen:
        query = query.where(rules_table.c.last_fired_at.is_(None) if seen is None
                            else rules_table.c.last_fired_at == seen)
    elif rule.cooldown_seconds:
        limit = now - timedelta(seconds=rule.cooldown_seconds)
        query = query.where(sa.or_(rules_table.c.last_fired_at.is_(None), rules_table.c.last_fired_at <= limit))
    won = conn.execute(query).rowcount == 1
    if won:
        rule.last_fired_at = now  # this process's cache cools down too
    return won


def _write_firings(conn, firings: list[Firing], now: datetime) -> int:
    claimed: dict[int, bool] = {}
    messages = []
    for firing in firings:
        rule = firing.rule
        if rule.id not in claimed:
            claimed[rule.id] = _claim(conn, rule, now)
        if claimed[rule.id]:
            events = [activity_json(public(e), rule.tenant_slug) for e in firing.events]
            messages.append((rule, "firing", firing.reason, firing_payload(rule, firing.reason, firing.count,
                                                                           events, now)))
    enqueue(conn, messages, now)
    return len(messages)


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
        if not _claim(conn, rule, fired_at or now, seen=seen, check_seen=True):
            return False
        if payload is not None:
            enqueue(conn, [(rule, kind, reason, payload)], now)
    return True

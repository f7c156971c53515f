"""Rules and channels: their rows, the per-process cache of a tenant's rules,
and what the worker's clock asks (heartbeats, digests).

Evaluating rules as events are stored is `store/firing.py`'s. A tenant's
rules are cached per process for RULE_CACHE_SECONDS; a change made in this
process clears the cache at once.
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
from ..rules.conditions import AT_INGEST, SCHEDULED, rule_filter
from ..rules.models import OutboxMessage, Rule, RuleChannel, RuleCounter
from .filtering import apply_filter
from .outbox import enqueue
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
    """Delete a channel with its log and waiting firings; its rules keep firing, recorded only."""
    return _delete(get_channel(tenant_id, channel_id))


def _delete(row) -> bool:
    """Delete a row found in the tenant (False if there was none); cached rules are reread."""
    if row is None:
        return False
    db.session.delete(row)
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
    """Delete a rule with its firings and counts."""
    return _delete(get_rule(tenant_id, rule_id))


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


# ------------------------------------------------------------ on the clock


def _claim_seen(conn, rule: LiveRule, now: datetime, seen: datetime | None) -> bool:
    """Set a scheduled rule's last firing to now if it is still what the
    worker saw: of two workers firing one heartbeat at once, one wins."""
    query = sa.update(rules_table).where(rules_table.c.id == rule.id).values(last_fired_at=now)
    query = query.where(rules_table.c.last_fired_at.is_(None) if seen is None else rules_table.c.last_fired_at == seen)
    won = conn.execute(query).rowcount == 1
    if won:
        rule.last_fired_at = now  # this process's cache cools down too
    return won


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

"""The outbox: firings owed to channels, and the log of every try at delivering them.

Written in the ingest transaction by `store.firing.insert_firing_rules`; read by the worker (`rules/worker.py`), which
claims what is due, sends it and records the attempt. A claimed message is
locked for LOCK_SECONDS: a worker that dies mid-send leaves it to the next
(at least once; the message id stays the same, so receivers dedupe).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..extensions import db
from ..ids import uuid7
from ..models import utcnow
from ..rules.models import DeliveryAttempt, OutboxMessage, RuleChannel
from ..serialize import iso

LOCK_SECONDS = 60
outbox = OutboxMessage.__table__
attempts_table = DeliveryAttempt.__table__
channels_table = RuleChannel.__table__


def message_id() -> str:
    """The Standard Webhooks `webhook-id` of a message: stable across its retries."""
    return "msg_" + uuid7().replace("-", "")


def firing_payload(rule, reason: str, count: int, events: list[dict], now: datetime) -> dict:
    """The body every channel renders from: Standard Webhooks' {type, timestamp, data}."""
    from ..rules.conditions import describe

    return {"type": "rule.fired", "timestamp": iso(now), "data": {
        "tenant": rule.tenant_slug,
        "rule": {"id": rule.id, "name": rule.name, "condition": rule.condition, "filter": rule.filter_text,
                 "description": describe(rule)},
        "reason": reason, "count": count, "events": events}}


def _rows(messages: list[tuple], now: datetime) -> list[dict]:
    return [{"id": message_id(), "tenant_id": rule.tenant_id, "rule_id": rule.id, "channel_id": rule.channel_id,
             "kind": kind, "created_at": now, "reason": reason[:500], "payload": payload,
             "status": "pending" if rule.channel_id else "logged", "attempts": 0, "next_attempt_at": now}
            for rule, kind, reason, payload in messages]


def enqueue(conn, messages: list[tuple], now: datetime) -> None:
    """Write (rule, kind, reason, payload) messages; a rule without a channel's are only logged."""
    rows = _rows(messages, now)
    if rows:
        conn.execute(sa.insert(outbox), rows)


# PostgreSQL, in the ingest transaction: claim the rules (each whose cool-down has
# passed) and write the claimed rules' messages in one statement, so a claim
# is never made without its message. Returns the rule of each message written.
CLAIM_AND_ENQUEUE_PG = (
    "WITH claimed AS (UPDATE rules SET last_fired_at = %(now)s "
    "FROM unnest(%(claim_id)s::int[], %(claim_limit)s::timestamptz[]) AS c(id, lim) "
    "WHERE rules.id = c.id AND (rules.last_fired_at IS NULL OR rules.last_fired_at <= c.lim) RETURNING rules.id) "
    "INSERT INTO outbox (id, tenant_id, rule_id, channel_id, kind, created_at, reason, payload, status, attempts, "
    "next_attempt_at) SELECT m.id, m.tenant_id, m.rule_id, m.channel_id, m.kind, %(now)s, m.reason, m.payload::jsonb, "
    "m.status, 0, %(now)s FROM unnest(%(id)s::text[], %(tenant_id)s::int[], %(rule_id)s::int[], %(channel_id)s::int[], "
    "%(kind)s::text[], %(reason)s::text[], %(payload)s::text[], %(status)s::text[]) "
    "AS m(id, tenant_id, rule_id, channel_id, kind, reason, payload, status) "
    "JOIN claimed ON claimed.id = m.rule_id RETURNING rule_id"
)


def claim_and_enqueue_params(rules: list, messages: list[tuple], now: datetime) -> dict:
    """CLAIM_AND_ENQUEUE_PG's parameters: claim `rules` (each if its cool-down
    has passed at `now`) and write (rule, kind, reason, payload) `messages`."""
    import json

    rows = _rows(messages, now)
    params = {"now": now, "claim_id": [r.id for r in rules],
              "claim_limit": [now - timedelta(seconds=r.cooldown_seconds) for r in rules]}
    for column in ("id", "tenant_id", "rule_id", "channel_id", "kind", "reason", "status"):
        params[column] = [row[column] for row in rows]
    params["payload"] = [json.dumps(row["payload"], separators=(",", ":"), ensure_ascii=False) for row in rows]
    return params


def claim_and_enqueue_pg(conn, rules: list, messages: list[tuple], now: datetime) -> set[int]:
    """Claim and write in one statement (see CLAIM_AND_ENQUEUE_PG); the ids of the rules claimed."""
    return set(conn.exec_driver_sql(CLAIM_AND_ENQUEUE_PG, claim_and_enqueue_params(rules, messages, now)).scalars())


@dataclass
class Due:
    """A claimed message with what sending it needs."""

    id: str
    tenant_id: int
    channel_id: int
    attempts: int
    payload: dict
    channel: dict


def claim_due(now: datetime | None = None, limit: int = 20) -> list[Due]:
    """Take up to `limit` messages that are due, on channels that are not paused, and lock them.

    One UPDATE that re-checks the lock claims them, so of two workers each
    message goes to one (SQLite: the statement holds the write lock;
    PostgreSQL: SKIP LOCKED, and the re-check after a concurrent claim)."""
    now = now or utcnow()
    free = sa.or_(outbox.c.locked_until.is_(None), outbox.c.locked_until < now)
    due = (sa.select(outbox.c.id).join(channels_table, channels_table.c.id == outbox.c.channel_id)
           .where(outbox.c.status == "pending", outbox.c.next_attempt_at <= now, free,
                  channels_table.c.paused_at.is_(None))
           .order_by(outbox.c.next_attempt_at).limit(limit))
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            due = due.with_for_update(of=outbox, skip_locked=True)
        ids = list(conn.execute(sa.update(outbox).where(outbox.c.id.in_(due.scalar_subquery()), free)
                                .values(locked_until=now + timedelta(seconds=LOCK_SECONDS))
                                .returning(outbox.c.id)).scalars())
        if not ids:
            return []
        rows = conn.execute(sa.select(outbox, channels_table.c.kind.label("channel_kind"),
                                      channels_table.c.target, channels_table.c.secret, channels_table.c.name)
                            .join(channels_table, channels_table.c.id == outbox.c.channel_id)
                            .where(outbox.c.id.in_(ids)).order_by(outbox.c.next_attempt_at)).mappings()
        return [Due(r["id"], r["tenant_id"], r["channel_id"], r["attempts"], r["payload"],
                    {"kind": r["channel_kind"], "target": r["target"], "secret": r["secret"], "name": r["name"]})
                for r in rows]


def record_attempt(tenant_id: int, channel_id: int, message: str | None, result, now: datetime) -> None:
    """Log one try (a message's, or a channel test's when `message` is None)."""
    db.session.execute(sa.insert(attempts_table).values(
        tenant_id=tenant_id, channel_id=channel_id, message_id=message, attempted_at=now, ok=result.ok,
        status_code=result.status, error=(result.error or None) and result.error[:500],
        duration_ms=int(result.seconds * 1000), response_excerpt=(result.body or "")[:500] or None))
    db.session.commit()


def delivered(due: Due, result, now: datetime) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.update(outbox).where(outbox.c.id == due.id).values(
            status="delivered", delivered_at=now, attempts=outbox.c.attempts + 1, locked_until=None,
            last_status_code=result.status, last_error=None))
        conn.execute(sa.update(channels_table).where(channels_table.c.id == due.channel_id).values(
            consecutive_failures=0, failing_since=None))


def failed(due: Due, result, now: datetime, retry_at: datetime | None, pause_after: int,
           pause_after_seconds: float) -> bool:
    """A try failed: retry at `retry_at` (None: out of attempts, dead). The
    channel is paused once it has failed `pause_after` times in a row over
    at least `pause_after_seconds`. Returns whether it was paused now."""
    with db.engine.begin() as conn:
        conn.execute(sa.update(outbox).where(outbox.c.id == due.id).values(
            status="pending" if retry_at else "dead", next_attempt_at=retry_at or now, locked_until=None,
            attempts=outbox.c.attempts + 1, last_status_code=result.status,
            last_error=(result.error or f"HTTP {result.status}")[:500]))
        channel = conn.execute(sa.update(channels_table).where(channels_table.c.id == due.channel_id).values(
            consecutive_failures=channels_table.c.consecutive_failures + 1,
            failing_since=sa.func.coalesce(channels_table.c.failing_since, now))
            .returning(channels_table.c.consecutive_failures, channels_table.c.failing_since,
                       channels_table.c.paused_at)).one()
        failing_for = (now - _aware(channel.failing_since)).total_seconds()
        if channel.paused_at is None and channel.consecutive_failures >= pause_after \
                and failing_for >= pause_after_seconds:
            reason = (f"{channel.consecutive_failures} deliveries in a row failed over {failing_for / 60:.0f} min; "
                      f"last: {(result.error or f'HTTP {result.status}')[:200]}")
            conn.execute(sa.update(channels_table).where(channels_table.c.id == due.channel_id)
                         .values(paused_at=now, pause_reason=reason))
            return True
    return False


def _aware(moment: datetime) -> datetime:
    from ..models import UTCDateTime

    return UTCDateTime().process_result_value(moment, None)


def redeliver(tenant_id: int, message: str) -> bool:
    """Send a message again (delivered or dead), under the same webhook id."""
    result = db.session.execute(sa.update(outbox).where(
        outbox.c.tenant_id == tenant_id, outbox.c.id == message, outbox.c.channel_id.is_not(None))
        .values(status="pending", next_attempt_at=utcnow(), locked_until=None))
    db.session.commit()
    return result.rowcount == 1


# ------------------------------------------------------------------- reading


def recent_firings(tenant_id: int, rule_id: int | None = None, channel_id: int | None = None,
                   limit: int = 20) -> list[dict]:
    query = sa.select(outbox).where(outbox.c.tenant_id == tenant_id)
    if rule_id is not None:
        query = query.where(outbox.c.rule_id == rule_id)
    if channel_id is not None:
        query = query.where(outbox.c.channel_id == channel_id)
    return [dict(r) for r in db.session.execute(query.order_by(outbox.c.created_at.desc(), outbox.c.id.desc())
                                                .limit(limit)).mappings()]


def get_message(tenant_id: int, message: str) -> dict | None:
    row = db.session.execute(sa.select(outbox).where(outbox.c.tenant_id == tenant_id, outbox.c.id == message)
                             ).mappings().one_or_none()
    return dict(row) if row else None


def delivery_log(tenant_id: int, channel_id: int, limit: int = 50) -> list[dict]:
    query = (sa.select(attempts_table, outbox.c.reason, outbox.c.status.label("message_status"))
             .outerjoin(outbox, outbox.c.id == attempts_table.c.message_id)
             .where(attempts_table.c.tenant_id == tenant_id, attempts_table.c.channel_id == channel_id)
             .order_by(attempts_table.c.attempted_at.desc(), attempts_table.c.id.desc()).limit(limit))
    return [dict(r) for r in db.session.execute(query).mappings()]


def pending_count(channel_id: int) -> int:
    return db.session.execute(sa.select(sa.func.count()).select_from(outbox).where(
        outbox.c.channel_id == channel_id, outbox.c.status == "pending")).scalar()


def prune(before: datetime) -> int:
    """Forget firings settled (delivered or only recorded) before `before`, with their
    attempts, and channel tests as old; pending and dead ones stay until dealt with."""
    deleted = db.session.execute(sa.delete(outbox).where(outbox.c.status.in_(("delivered", "logged")),
                                                         outbox.c.created_at < before)).rowcount
    db.session.execute(sa.delete(attempts_table).where(attempts_table.c.message_id.is_(None),
                                                       attempts_table.c.attempted_at < before))
    db.session.commit()
    return deleted

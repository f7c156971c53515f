"""The tables of rules: channels, rules, the outbox of firings, delivery attempts.

A firing is one outbox row: written at ingest (or by the worker for
heartbeats and digests) in the same statement that records it, so a firing
is never recorded without its delivery being owed. Its id is the Standard
Webhooks `webhook-id`, the same on every attempt and every redelivery, so a
receiver can drop repeats.
"""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from ..models import JSONType, UTCDateTime, utcnow


class RuleChannel(db.Model):
    """Where a rule's firings go: an outgoing webhook, a Slack incoming
    webhook, or an email address. The webhook signing secret is stored as
    given, like integration secrets: signing needs the secret itself."""

    __tablename__ = "rule_channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(16))  # webhook, slack, email
    target: Mapped[str] = mapped_column(sa.String(2000))  # a URL, or an email address
    secret: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Failing deliveries in a row, since when; past a limit the channel is
    # paused (its messages wait) until someone resumes it.
    consecutive_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pause_reason: Mapped[str | None] = mapped_column(sa.String(500))

    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_rule_channels_name"),)


class Rule(db.Model):
    """A filter in the feed's own language (a query string) and a condition
    (`rules/conditions.py` says what each kind needs)."""

    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(100))
    filter: Mapped[str] = mapped_column(sa.String(2000), default="")
    condition: Mapped[str] = mapped_column(sa.String(16))
    threshold: Mapped[int | None] = mapped_column()
    window_seconds: Mapped[int | None] = mapped_column()
    percent: Mapped[float | None] = mapped_column(sa.Float)
    metric: Mapped[str | None] = mapped_column(sa.String(50))
    budget: Mapped[float | None] = mapped_column(sa.Float)
    cooldown_seconds: Mapped[int] = mapped_column(default=0, server_default="0")
    channel_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rule_channels.id", ondelete="SET NULL"))
    enabled: Mapped[bool] = mapped_column(default=True, server_default=sa.true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The cool-down's clock (and a digest's: the end of the period last sent).
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "name", name="uq_rules_name"),
        sa.Index("ix_rules_tenant", "tenant_id", "enabled"),
    )


class OutboxMessage(db.Model):
    """One firing (or a digest), owed to its channel until delivered.

    `status`: pending (due at `next_attempt_at`), delivered, dead (out of
    attempts; "redeliver" makes it pending again) or logged (the rule has
    no channel)."""

    __tablename__ = "outbox"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)  # "msg_" + a UUIDv7's hex
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    rule_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rules.id", ondelete="CASCADE"))
    channel_id: Mapped[int | None] = mapped_column(sa.ForeignKey("rule_channels.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))  # firing, digest
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(sa.String(500))
    payload: Mapped[dict] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(sa.String(12))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A worker holds a message it is sending until then; after it (a worker
    # that died) another takes it: at least once.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # The worker's question: what is due now.
        sa.Index("ix_outbox_due", "next_attempt_at", postgresql_where=sa.column("status") == "pending",
                 sqlite_where=sa.column("status") == "pending"),
        sa.Index("ix_outbox_rule", "tenant_id", "rule_id", "created_at"),
        sa.Index("ix_outbox_channel", "channel_id", "created_at"),
    )


class DeliveryAttempt(db.Model):
    """One try at sending a message (or a channel's test): what the receiver answered, how fast."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(sa.ForeignKey("rule_channels.id", ondelete="CASCADE"))
    message_id: Mapped[str | None] = mapped_column(sa.String(40), sa.ForeignKey("outbox.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ok: Mapped[bool] = mapped_column()
    status_code: Mapped[int | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(sa.String(500))
    duration_ms: Mapped[int] = mapped_column()
    response_excerpt: Mapped[str | None] = mapped_column(sa.String(500))

    __table_args__ = (
        sa.Index("ix_delivery_attempts_channel", "channel_id", "attempted_at"),
        sa.Index("ix_delivery_attempts_message", "message_id"),
    )


class RuleCounter(db.Model):
    """A windowed rule's matches per time bucket, counted as events are stored.

    The sliding window's totals are then a sum over at most ~BUCKETS_PER_WINDOW
    small rows instead of a count over the events: evaluation stays cheap on
    ingest's path whatever the traffic. A bucket is window/600 seconds long
    (at least 1 s), keyed by its start in epoch seconds, so the window's edge
    is exact to one bucket. Rows older than the window are pruned by the worker.
    """

    __tablename__ = "rule_counters"

    rule_id: Mapped[int] = mapped_column(sa.ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True)
    bucket: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    matches: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    metric: Mapped[float] = mapped_column(sa.Float, default=0.0)

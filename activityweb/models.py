"""SQLAlchemy models. Every read and write goes through `store/`."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on both databases.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are
    stored as naive UTC text (which sorts correctly) and come back tagged UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# JSON on SQLite, JSONB (indexable, compact) on PostgreSQL.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# `type` is matched by prefix (`tool.*`); byte-order collation lets a plain
# btree range serve that on PostgreSQL whatever the database's locale.
TypeString = sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql")
# UUIDv7 text; PostgreSQL stores it in 16 bytes (its order is the text order).
IdType = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
# The kinds of an event's columns. Optional text by how long it may be
# (`schemas.ActivityIn` checks the same lengths).
Word = Annotated[str | None, mapped_column(sa.String(50))]  # a lower-case word: a status
Label = Annotated[str | None, mapped_column(sa.String(100))]  # an entity type, an environment
Key = Annotated[str | None, mapped_column(sa.String(200))]  # ids and names
Line = Annotated[str | None, mapped_column(sa.String(300))]  # what a person reads in one line
Prose = Annotated[str | None, mapped_column(sa.Text)]
Number = Annotated[int | None, mapped_column(sa.BigInteger)]
Priority = Annotated[str, mapped_column(sa.String(10), default="normal")]
Tags = Annotated[list, mapped_column(JSONType, default=list)]
Payload = Annotated[dict, mapped_column(JSONType, default=dict)]
Moment = Annotated[datetime, mapped_column(UTCDateTime)]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


DEFAULT_RETENTION_DAYS = 365


class Tenant(db.Model):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(64), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # How long events are kept: each gets expires_at = occurred_at + this when stored.
    retention_days: Mapped[int] = mapped_column(default=DEFAULT_RETENTION_DAYS,
                                                server_default=str(DEFAULT_RETENTION_DAYS))

    tokens = relationship("ApiToken", back_populates="tenant")


class User(db.Model):
    """A person who signs in to the dashboard. Passwords are hashed with
    werkzeug (scrypt); the email is stored lower-cased."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    memberships = relationship("Membership", back_populates="user", cascade="all, delete-orphan")


class Membership(db.Model):
    """A user's place in a tenant: `viewer` reads, `admin` also manages tokens."""

    __tablename__ = "memberships"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user = relationship("User", back_populates="memberships")
    tenant = relationship("Tenant")

    __table_args__ = (sa.UniqueConstraint("user_id", "tenant_id", name="uq_memberships_user_tenant"),)


class ApiToken(db.Model):
    """A bearer credential. The secret is shown once; only its SHA-256 is kept.

    Tokens are 256-bit random strings, so a fast hash is enough: there is no
    dictionary to guess from, unlike passwords.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    prefix: Mapped[str] = mapped_column(sa.String(16))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    scopes: Mapped[str] = mapped_column(sa.String(200))  # space separated
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    tenant = relationship("Tenant", back_populates="tokens")


class Activity(db.Model):
    """One immutable event: who did what to which thing, when, with what outcome."""

    __tablename__ = "activities"

    id: Mapped[str] = mapped_column(IdType, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    # What happened, by whom it is told, as a person reads it.
    type: Mapped[str] = mapped_column(TypeString)
    source: Mapped[str] = mapped_column(sa.String(50))
    source_id: Mapped[str] = mapped_column(sa.String(200))
    title: Mapped[str] = mapped_column(sa.String(300))
    summary: Mapped[Prose]
    # Who did it, to what.
    actor_id: Mapped[Key]
    actor_name: Mapped[Key]
    entity_type: Mapped[Label]
    entity_id: Mapped[Key]
    entity_name: Mapped[Line]
    # The outcome.
    status: Mapped[Word]
    priority: Mapped[Priority]
    duration_ms: Mapped[Number]
    # Project consoles.
    project: Mapped[Key]
    environment: Mapped[Label]
    request_id: Mapped[Key]
    # Timelines and links: a conversation's events sort by `sequence`.
    conversation_id: Mapped[Key]
    session_id: Mapped[Key]
    sequence: Mapped[Number]
    correlation_id: Mapped[Key]
    tags: Mapped[Tags]
    data: Mapped[Payload]
    # When it happened (the producer's clock) and when we received it.
    occurred_at: Mapped[Moment]
    received_at: Mapped[Moment]
    # occurred_at + the tenant's retention when stored; `flask prune` deletes
    # what has expired. Not part of the event's public shape.
    expires_at: Mapped[Moment]

    __table_args__ = (
        # The idempotency key (CloudEvents: source + id), per tenant. Its
        # (tenant_id, source) prefix also serves the `source` filter: there are
        # few sources, so their events are dense in the feed.
        sa.UniqueConstraint("tenant_id", "source", "source_id", name="uq_activities_source"),
        # Feed order: (occurred_at DESC, id DESC) within a tenant; btrees scan backwards.
        sa.Index("ix_activities_feed", "tenant_id", "occurred_at", "id"),
        # One index per selective filter, ending in occurred_at so a filtered
        # page is an index range scan that stops after `limit` rows (ties on
        # occurred_at are put in id order by an incremental sort). Every index
        # costs each insert, so dense filters (environment) use the feed
        # index, and sparse columns get partial indexes.
        sa.Index("ix_activities_type", "tenant_id", "type", "occurred_at"),
        sa.Index("ix_activities_status", "tenant_id", "status", "occurred_at"),
        sa.Index("ix_activities_priority", "tenant_id", "priority", "occurred_at"),
        *(
            sa.Index(
                f"ix_activities_{name}",
                "tenant_id",
                *cols,
                postgresql_where=sa.column(cols[0]).is_not(None),
                sqlite_where=sa.column(cols[0]).is_not(None),
            )
            for name, cols in (
                ("actor", ("actor_id", "occurred_at")),
                ("entity", ("entity_id", "entity_type", "occurred_at")),
                ("project", ("project", "occurred_at")),
                ("correlation", ("correlation_id", "occurred_at")),
                # Timelines read a conversation or session in sequence order.
                ("conversation", ("conversation_id", "sequence", "occurred_at")),
                ("session", ("session_id", "sequence", "occurred_at")),
            )
        ),
        # Pruning: a tenant's expired events, oldest expiry first.
        sa.Index("ix_activities_expiry", "tenant_id", "expires_at"),
        # Tag containment (`tags @> '["x"]'`) on PostgreSQL.
        sa.Index(
            "ix_activities_tags",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
    )


# Full-text search objects are made by hand in the migrations (they differ by
# database); they are not in the models, and autogenerate must leave them be.
HAND_MADE_SCHEMA = frozenset({"search_vector", "activities_fts", "ix_activities_search", "ix_activities_tags"})


def include_in_autogenerate(obj, name, type_, reflected, compare_to) -> bool:
    return not (name in HAND_MADE_SCHEMA or (name or "").startswith("activities_fts"))


# The fields an event shows in the API, in the order it shows them: its
# columns, without the tenant (the credential's) and the expiry (retention's).
# `schemas.ActivityIn` validates the same fields as they come in.
ACTIVITY_FIELDS = tuple(c.name for c in Activity.__table__.columns if c.name not in ("tenant_id", "expires_at"))


class ReadCursor(db.Model):
    """How far a reader has read a tenant's feed: every event received up to
    `read_up_to` (an activity id; UUIDv7 ids sort in receive order) is read.

    Read state is the reader's, not the event's: activities stay immutable.
    A reader is `user:<id>` (the dashboard), `token:<id>` (an API caller) or
    `local` (local mode's one reader); see `store.reader_of`.
    """

    __tablename__ = "read_cursors"

    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    reader: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    read_up_to: Mapped[str] = mapped_column(IdType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReadMark(db.Model):
    """One event a reader has read beyond their `ReadCursor`. Marks at or
    below the cursor say nothing more and are dropped when it moves."""

    __tablename__ = "read_marks"

    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    reader: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    activity_id: Mapped[str] = mapped_column(
        IdType, sa.ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True
    )

    # Deleting an activity (retention) finds its marks through this.
    __table_args__ = (sa.Index("ix_read_marks_activity", "activity_id"),)


class PruneRun(db.Model):
    """One `flask prune` pass over a tenant: what it deleted, so the feed can
    say that older events are gone and up to when."""

    __tablename__ = "prune_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted: Mapped[int] = mapped_column(sa.Integer)
    # The newest occurred_at among the deleted events.
    deleted_through: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retention_days: Mapped[int] = mapped_column(sa.Integer)

    # The feed asks for a tenant's latest run that deleted something.
    __table_args__ = (sa.Index("ix_prune_runs_tenant", "tenant_id", "finished_at"),)


class IntegrationSecret(db.Model):
    """The secret a tenant shares with one signed producer (GitHub, HubSpot, ...).

    Stored as given, not hashed: verifying an HMAC signature needs the secret
    itself, unlike a bearer token, which only needs to be recognised. Guard
    database backups accordingly. `name` tells a tenant's generic webhooks
    apart (`/webhook/<name>`); it is empty for the other integrations.
    """

    __tablename__ = "integration_secrets"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    integration: Mapped[str] = mapped_column(sa.String(32))
    name: Mapped[str] = mapped_column(sa.String(64), default="")
    secret: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    tenant = relationship("Tenant")

    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "integration", "name", name="uq_integration_secrets_tenant"),
        # A signed request names no tenant: its signature is checked against
        # every secret of its integration (see integrations/signing.py).
        sa.Index("ix_integration_secrets_integration", "integration", "name"),
    )


class UsagePoint(db.Model):
    """One data point of a Claude Code metric received over OpenTelemetry
    (`claude_code.cost.usage`, `claude_code.token.usage` and the others).

    Claude Code exports delta sums, so a session's cost is the sum of its
    points. `value` is an integer in the metric's unit times its scale
    (`costs.METRIC_SCALES`: cost in 1e-12 USD, time
    in microseconds), so sums are exact on both databases. `point_key`
    digests the point (metric, attributes, interval, value): a resent export
    inserts nothing.
    """

    __tablename__ = "usage_points"

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    point_key: Mapped[str] = mapped_column(sa.String(64))
    metric: Mapped[str] = mapped_column(sa.String(100))
    kind: Mapped[str] = mapped_column(sa.String(50), default="")  # the `type` (tokens) or `start_type` attribute
    session_id: Mapped[Key]
    model: Mapped[Key]
    actor_id: Mapped[Key]  # user.email, else user.account_uuid, else user.id
    query_source: Mapped[Label]
    day: Mapped[datetime] = mapped_column(sa.Date)
    occurred_at: Mapped[Moment]
    value: Mapped[int] = mapped_column(sa.BigInteger)

    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "point_key", name="uq_usage_points_key"),
        sa.Index("ix_usage_points_session", "tenant_id", "session_id", "metric"),
        sa.Index("ix_usage_points_day", "tenant_id", "metric", "day"),
    )

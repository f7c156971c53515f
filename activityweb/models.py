"""SQLAlchemy models. Every read and write goes through `store/`."""
from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Annotated

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on both databases. PostgreSQL stores `timestamptz`; SQLite has
    no time zones, so values are stored as naive UTC text (which sorts correctly) and come back UTC."""

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


class CommitOrder(sa.types.UserDefinedType):
    """An event's transaction: `xid8` on PostgreSQL, an integer on SQLite
    (migration 0007). Python sees an int; it is bound as text, which
    PostgreSQL reads as xid8 (there is no int8 = xid8 operator)."""

    cache_ok = True

    def get_col_spec(self, **kw):
        return "xid8"

    def bind_processor(self, dialect):
        if dialect.name == "postgresql":
            return lambda value: None if value is None else str(value)
        return None

    def result_processor(self, dialect, coltype):
        return lambda value: None if value is None else int(value)


TxidType = sa.BigInteger().with_variant(CommitOrder(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


DEFAULT_RETENTION_DAYS = 365
_TOOL_START = sa.and_(  # a tool call's start, as the header's running calls find them (store/reading.py)
    sa.column("entity_type") == "tool", sa.column("status") == "started", sa.column("correlation_id").is_not(None))
# Outcomes most events have: the status index leaves them out (see Activity).
DENSE_STATUSES = ("success", "started")


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
    # Sessions carry the version they began under; signing out increments it
    # (auth.sign_out), which ends every session of the user, copies included.
    session_version: Mapped[int] = mapped_column(sa.Integer, default=0, server_default="0")

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
    # Where the event stands in commit order (migration 0007): with `id`, the
    # position live delivery reads after. Not part of the event's public shape.
    txid: Mapped[int] = mapped_column(TxidType)

    __table_args__ = (
        # The idempotency key (CloudEvents: source + id), per tenant; on PostgreSQL in activity_keys (0017).
        sa.UniqueConstraint("tenant_id", "source", "source_id", name="uq_activities_source"),
        # Feed order: (occurred_at DESC, id DESC) within a tenant; btrees scan backwards.
        sa.Index("ix_activities_feed", "tenant_id", "occurred_at", "id"),
        # Why each index stays: measured with EXPLAIN at 1M events (bench/scale.py
        # prints the plans), each serves a filter of the feed or a read no other
        # index does. A selective filter's index ends in occurred_at: its page is a range scan that stops
        # after `limit` rows. Every index costs each insert and ~40 B an event, so dense filters use the
        # feed index and stop as soon as a page is full: environment and project
        # (a handful of values each), priority `normal` and status
        # `success`/`started` (most events). The rare values of priority and
        # status get small partial indexes. Conversations, sessions and
        # correlations are short runs of events: an index of the id alone
        # stores it once per run (btree deduplication, ~9 B an event instead
        # of ~80), and a run is sorted in memory.
        sa.Index("ix_activities_type", "tenant_id", "type", "occurred_at"),
        # A rare source's page, without walking the feed past the common ones (migration 0014).
        sa.Index("ix_activities_source", "tenant_id", "source", "occurred_at"),
        sa.Index("ix_activities_status", "tenant_id", "status", "occurred_at",
                 postgresql_where=sa.column("status").not_in(DENSE_STATUSES),
                 sqlite_where=sa.column("status").not_in(DENSE_STATUSES)),
        sa.Index("ix_activities_priority", "tenant_id", "priority", "occurred_at",
                 postgresql_where=sa.column("priority") != "normal", sqlite_where=sa.column("priority") != "normal"),
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
                ("correlation", ("correlation_id",)),
                # Timelines read a conversation or session, sorted by sequence.
                ("conversation", ("conversation_id",)),
                ("session", ("session_id",)),
            )
        ),
        # The header's unread count and running calls (ids after the cursor), per tenant (0016); on
        # PostgreSQL the primary key (tenant_id, id, occurred_at) serves it (0017).
        sa.Index("ix_activities_received", "tenant_id", "id"),
        sa.Index("ix_activities_tool_starts", "tenant_id", "id", postgresql_where=_TOOL_START,
                 sqlite_where=_TOOL_START),
        # Pruning: a tenant's expired events, oldest expiry first.
        sa.Index("ix_activities_expiry", "tenant_id", "expires_at"),
        # Live delivery and replay: a tenant's events after a position, in commit order.
        # Without the id (0018): a transaction's few rows are read again to pass the id.
        sa.Index("ix_activities_position", "tenant_id", "txid"),
        # Tag containment (`tags @> '["x"]'`) on PostgreSQL.
        sa.Index(
            "ix_activities_tags",
            "tags",
            postgresql_using="gin",
            postgresql_ops={"tags": "jsonb_path_ops"},
        ).ddl_if(dialect="postgresql"),
    )


# Made by hand in the migrations, not in the models, so autogenerate leaves them be: full-text search
# (it differs by database), SQLite's `live_clock` (0007) and PostgreSQL's time partitions and
# idempotency keys (0017), which replace the unique constraint and the receipt-order index there.
HAND_MADE_SCHEMA = frozenset({"live_clock", "search_vector", "activities_fts", "ix_activities_search",
                              "ix_activities_tags", "activity_keys"})
NOT_ON_POSTGRESQL = frozenset({"uq_activities_source", "ix_activities_received"})


def include_in_autogenerate(obj, name, type_, reflected, compare_to, dialect: str = "sqlite") -> bool:
    if dialect == "postgresql" and (name in NOT_ON_POSTGRESQL or (name or "").startswith("activities_")):
        return False  # the partitions, and what migration 0017 replaced
    return not (name in HAND_MADE_SCHEMA or (name or "").startswith("activities_fts"))


# The fields an event shows in the API, in the order it shows them: its
# columns, without the tenant (the credential's) and the expiry (retention's).
# `schemas.ActivityIn` validates the same fields as they come in.
ACTIVITY_FIELDS = tuple(c.name for c in Activity.__table__.columns if c.name not in ("tenant_id", "expires_at", "txid"))


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
    # No foreign key: a partitioned `activities` (migration 0017) has no
    # unique id alone to refer to. Retention deletes the marks it orphans.
    activity_id: Mapped[str] = mapped_column(IdType, primary_key=True)

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


# Duration histogram of the rollups: fixed log-scale buckets, four per
# doubling, from 1 ms to 2^24 ms (4.7 h). Bucket 0 holds 0 ms, bucket k
# (1..96) [2^((k-1)/4), 2^(k/4)) ms, the last everything longer. Fixed edges
# make histograms merge by adding counts, which concurrent upserts and
# retention's recomputation do exactly; a percentile read from them is in
# the right bucket, so within 19 % of the exact value (less after log
# interpolation inside the bucket). Bounds are whole milliseconds (durations
# are integers), the same in Python and in SQL.
DURATION_BUCKETS = 98
DURATION_BOUNDS = tuple(math.ceil(2 ** (k / 4)) for k in range(DURATION_BUCKETS - 1))
DURATION_COLUMNS = tuple(f"d{k}" for k in range(DURATION_BUCKETS))
# Concurrent writers each take a shard of their own (see store/rollups.py),
# so no two wait on one hot row; reads sum over shards.
ROLLUP_SHARDS = 8
# The key of a rollup row, in the order its primary key (and every upsert) takes it.
ROLLUP_KEY = ("tenant_id", "hour", "type", "source", "status", "priority", "tool", "shard")


def _rollup_table(name: str, period: str) -> sa.Table:
    """A rollup table: counts per `period` (the start of its hour or day) and key."""
    return sa.Table(
        name, db.metadata,
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(period, UTCDateTime, primary_key=True),
        sa.Column("type", TypeString, primary_key=True),
        sa.Column("source", sa.String(50), primary_key=True),
        sa.Column("status", sa.String(50), primary_key=True),
        sa.Column("priority", sa.String(10), primary_key=True),
        sa.Column("tool", sa.String(200), primary_key=True),
        sa.Column("shard", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("timed", sa.BigInteger, nullable=False),  # events with a duration_ms
        sa.Column("duration_max", sa.BigInteger),
        *(sa.Column(name, sa.Integer, nullable=False, server_default="0") for name in DURATION_COLUMNS),
    )


class ActivityRollup(db.Model):
    """Counts of a tenant's events per hour and (type, source, status,
    priority, tool), kept by ingest in the same transaction as the events,
    so stats read a few rows per hour instead of every event.

    `status` is '' for no status (a key column cannot be NULL); `tool` is the
    entity_id of events about a tool (entity_type `tool`), else ''. `shard`
    splits a hot key between concurrent writers. `d0`..`d97` count the
    durations in each bucket of DURATION_BOUNDS.
    """

    __table__ = _rollup_table("activity_rollups", "hour")


class ActivityRollupDaily(db.Model):
    """The same counts per UTC day, for the days before `RollupState.daily_before`."""

    __table__ = _rollup_table("activity_rollups_daily", "day")


class RollupState(db.Model):
    """One row: the daily rollups hold every (UTC) day before `daily_before`."""

    __tablename__ = "rollup_state"

    id: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True, autoincrement=False)
    daily_before: Mapped[datetime] = mapped_column(UTCDateTime)


class SavedView(db.Model):
    """A named filter of one reader's (the same reader keys as `ReadCursor`),
    shown in the feed's sidebar. `query` is the filter's query string, as
    `ActivityFilter.to_args` prints it: a view reopens as the same URL."""

    __tablename__ = "saved_views"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    reader: Mapped[str] = mapped_column(sa.String(64))
    name: Mapped[str] = mapped_column(sa.String(100))
    query: Mapped[str] = mapped_column(sa.String(4000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("tenant_id", "reader", "name", name="uq_saved_views_reader_name"),)


class TokenReveal(db.Model):
    """A new API token's secret, kept for the one page that shows it after
    the create's redirect (post/redirect/get), then deleted. Keyed by the
    SHA-256 of a random key that only the creator's session holds, and
    expiring within minutes; the session cookie never holds the secret."""

    __tablename__ = "token_reveals"

    key_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    token_id: Mapped[int] = mapped_column(sa.ForeignKey("api_tokens.id", ondelete="CASCADE"))
    secret: Mapped[str] = mapped_column(sa.String(100))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


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

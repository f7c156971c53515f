"""Hourly rollups of the events, which stats read instead of every event; leaner indexes.

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-02

`activity_rollups` counts a tenant's events per hour and (type, source,
status, priority, tool), with a fixed log-scale histogram of durations in
d0..d97 (see models.DURATION_BOUNDS and store/rollups.py). On PostgreSQL a
statement trigger on activities keeps it in each insert's transaction (its
SQL comes from store/rollups.py); this migration fills it from the
events already stored, with the statement `flask rollups rebuild` uses (one
grouped pass over activities).

Indexes (measured at 1M events; see the comment in models.Activity): the
project index goes (a dense filter, served by the feed index); priority and
status index only their rare values; conversation, session and correlation
index the id alone, which btree deduplication stores once per run. 1M
events: 664 -> ~430 B of index per event.
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
DURATION_COLUMNS = tuple(f"d{k}" for k in range(98))
# (name, columns after tenant_id, partial condition) before and after.
OLD_INDEXES = [
    ("ix_activities_project", ["project", "occurred_at"], "project IS NOT NULL"),
    ("ix_activities_status", ["status", "occurred_at"], None),
    ("ix_activities_priority", ["priority", "occurred_at"], None),
    ("ix_activities_correlation", ["correlation_id", "occurred_at"], "correlation_id IS NOT NULL"),
    ("ix_activities_conversation", ["conversation_id", "sequence", "occurred_at"], "conversation_id IS NOT NULL"),
    ("ix_activities_session", ["session_id", "sequence", "occurred_at"], "session_id IS NOT NULL"),
]
NEW_INDEXES = [
    ("ix_activities_status", ["status", "occurred_at"], "status NOT IN ('success', 'started')"),
    ("ix_activities_priority", ["priority", "occurred_at"], "priority != 'normal'"),
    ("ix_activities_correlation", ["correlation_id"], "correlation_id IS NOT NULL"),
    ("ix_activities_conversation", ["conversation_id"], "conversation_id IS NOT NULL"),
    ("ix_activities_session", ["session_id"], "session_id IS NOT NULL"),
]


def _replace_indexes(drop, create):
    for name, _, _ in drop:
        op.drop_index(name, table_name="activities")
    for name, columns, where in create:
        condition = sa.text(where) if where else None
        op.create_index(name, "activities", ["tenant_id", *columns], postgresql_where=condition,
                        sqlite_where=condition)


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    type_string = sa.String(100, collation="C") if postgres else sa.String(100)
    op.create_table(
        "activity_rollups",
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("hour", TIME, nullable=False),
        sa.Column("type", type_string, nullable=False),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("status", sa.String(50), nullable=False),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("timed", sa.BigInteger(), nullable=False),
        sa.Column("duration_max", sa.BigInteger()),
        *(sa.Column(name, sa.Integer(), nullable=False, server_default="0") for name in DURATION_COLUMNS),
        sa.PrimaryKeyConstraint("tenant_id", "hour", "type", "source", "status", "priority", "tool", "shard"),
    )
    from activityweb.store.rollups import pg_trigger_sql, recompute

    if postgres:  # SQLite's writers add their own counts (store/rollups.py)
        op.execute(pg_trigger_sql(daily=False))  # 0015 adds the daily rollups
    recompute(op.get_bind(), None, daily=False)
    _replace_indexes(OLD_INDEXES, NEW_INDEXES)


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER activities_rollup ON activities")
        op.execute("DROP FUNCTION activities_rollup()")
    _replace_indexes(NEW_INDEXES, OLD_INDEXES)
    op.drop_table("activity_rollups")

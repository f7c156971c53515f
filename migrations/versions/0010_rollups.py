"""Hourly rollups of the events, which stats read instead of every event.

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-02

`activity_rollups` counts a tenant's events per hour and (type, source,
status, priority, tool), with a fixed log-scale histogram of durations in
d0..d97 (see models.DURATION_BOUNDS and store/rollups.py). Ingest keeps it
in the same transaction as the events; this migration fills it from the
events already stored, with the statement `flask rollups rebuild` uses (one
grouped pass over activities).
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
DURATION_COLUMNS = tuple(f"d{k}" for k in range(98))


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
    from activityweb.store.rollups import recompute

    recompute(op.get_bind(), None)


def downgrade():
    op.drop_table("activity_rollups")

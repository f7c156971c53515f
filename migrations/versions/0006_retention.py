"""Retention: a period per tenant, an expiry per event, and a record of prunes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

`tenants.retention_days` (default 365) decides `activities.expires_at` =
occurred_at + retention, set when an event is stored. Existing events are
given theirs here, from their tenant's period: one UPDATE that rewrites
every row once (on a large table, run it in a quiet hour). SQLite cannot
add a NOT NULL column without a default, so there the column carries a
far-future default that the backfill replaces at once; the app always sets
the value itself. `ix_activities_expiry` serves `flask prune`, which records
each pass in `prune_runs`.
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
NEVER = "9999-12-31 23:59:59.999999"


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("tenants", sa.Column("retention_days", sa.Integer(), nullable=False, server_default="365"))
    if postgres:
        op.add_column("activities", sa.Column("expires_at", TIME, nullable=True))
        op.execute("UPDATE activities SET expires_at = activities.occurred_at + make_interval(days => t.retention_days) "
                   "FROM tenants t WHERE t.id = activities.tenant_id")
        op.alter_column("activities", "expires_at", nullable=False)
    else:
        op.add_column("activities", sa.Column("expires_at", TIME, nullable=False, server_default=NEVER))
        # SQLite keeps times as 'YYYY-MM-DD HH:MM:SS.ffffff' text: shift the
        # date and time, keep the fraction.
        op.execute("UPDATE activities SET expires_at = strftime('%Y-%m-%d %H:%M:%S', occurred_at, "
                   "'+' || (SELECT retention_days FROM tenants WHERE tenants.id = activities.tenant_id) || ' days')"
                   " || substr(occurred_at, 20)")
    op.create_index("ix_activities_expiry", "activities", ["tenant_id", "expires_at"])
    op.create_table(
        "prune_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("deleted_through", TIME),
        sa.Column("retention_days", sa.Integer(), nullable=False),
    )
    op.create_index("ix_prune_runs_tenant", "prune_runs", ["tenant_id", "finished_at"])


def downgrade():
    op.drop_index("ix_prune_runs_tenant", table_name="prune_runs")
    op.drop_table("prune_runs")
    op.drop_index("ix_activities_expiry", table_name="activities")
    # SQLite (3.35+) drops a plain column in place, keeping rowids, which the
    # full-text index relies on; alembic's batch mode would copy the table.
    op.execute("ALTER TABLE activities DROP COLUMN expires_at")
    op.execute("ALTER TABLE tenants DROP COLUMN retention_days")

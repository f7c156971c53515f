"""Usage: Claude Code's cost and token metrics received over OpenTelemetry.

Revision ID: 0012
Revises: 0006
Create Date: 2026-12-02

One row per delta data point (`models.UsagePoint`); values are scaled
integers so sums are exact. `uq_usage_points_key` makes a resent export a
no-op; the two indexes serve a session's totals and the stats by day.
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "usage_points",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("point_key", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(50), nullable=False),
        sa.Column("session_id", sa.String(200)),
        sa.Column("model", sa.String(200)),
        sa.Column("actor_id", sa.String(200)),
        sa.Column("query_source", sa.String(100)),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("tenant_id", "point_key", name="uq_usage_points_key"),
    )
    op.create_index("ix_usage_points_session", "usage_points", ["tenant_id", "session_id", "metric"])
    op.create_index("ix_usage_points_day", "usage_points", ["tenant_id", "metric", "day"])


def downgrade():
    op.drop_index("ix_usage_points_day", table_name="usage_points")
    op.drop_index("ix_usage_points_session", table_name="usage_points")
    op.drop_table("usage_points")

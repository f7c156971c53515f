"""Rules: channels, rules, the outbox of firings and the delivery log.

Revision ID: 0013
Revises: 0006
Create Date: 2026-12-02

`rules` hold a filter in the feed's language and a condition; `outbox` holds
each firing until its channel has it (its id is the Standard Webhooks
webhook-id, stable across retries); `delivery_attempts` is the per-channel
log; `rule_counters` hold windowed rules' matches per time bucket. See activityweb/rules/models.py.
"""
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from alembic import op

revision = "0013"
down_revision = "0010"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def _tenant():
    return sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False)


def upgrade():
    op.create_table(
        "rule_channels",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("target", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200)),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failing_since", TIME),
        sa.Column("paused_at", TIME),
        sa.Column("pause_reason", sa.String(500)),
        sa.UniqueConstraint("tenant_id", "name", name="uq_rule_channels_name"),
    )
    op.create_table(
        "rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("filter", sa.String(2000), nullable=False),
        sa.Column("condition", sa.String(16), nullable=False),
        sa.Column("threshold", sa.Integer()),
        sa.Column("window_seconds", sa.Integer()),
        sa.Column("percent", sa.Float()),
        sa.Column("metric", sa.String(50)),
        sa.Column("budget", sa.Float()),
        sa.Column("cooldown_seconds", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("rule_channels.id", ondelete="SET NULL")),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_fired_at", TIME),
        sa.UniqueConstraint("tenant_id", "name", name="uq_rules_name"),
    )
    op.create_index("ix_rules_tenant", "rules", ["tenant_id", "enabled"])
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(40), primary_key=True),
        _tenant(),
        sa.Column("rule_id", sa.Integer(), sa.ForeignKey("rules.id", ondelete="CASCADE")),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("rule_channels.id", ondelete="CASCADE")),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("payload", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("locked_until", TIME),
        sa.Column("last_status_code", sa.Integer()),
        sa.Column("last_error", sa.String(500)),
        sa.Column("delivered_at", TIME),
    )
    op.create_index("ix_outbox_due", "outbox", ["next_attempt_at"], postgresql_where=sa.text("status = 'pending'"),
                    sqlite_where=sa.text("status = 'pending'"))
    op.create_index("ix_outbox_rule", "outbox", ["tenant_id", "rule_id", "created_at"])
    op.create_index("ix_outbox_channel", "outbox", ["channel_id", "created_at"])
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column("channel_id", sa.Integer(), sa.ForeignKey("rule_channels.id", ondelete="CASCADE"), nullable=False),
        sa.Column("message_id", sa.String(40), sa.ForeignKey("outbox.id", ondelete="CASCADE")),
        sa.Column("attempted_at", TIME, nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer()),
        sa.Column("error", sa.String(500)),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("response_excerpt", sa.String(500)),
    )
    op.create_index("ix_delivery_attempts_channel", "delivery_attempts", ["channel_id", "attempted_at"])
    op.create_index("ix_delivery_attempts_message", "delivery_attempts", ["message_id"])
    op.create_table(
        "rule_counters",
        sa.Column("rule_id", sa.Integer(), sa.ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("bucket", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("matches", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("metric", sa.Float(), nullable=False),
    )


def downgrade():
    op.drop_table("rule_counters")
    op.drop_table("delivery_attempts")
    op.drop_table("outbox")
    op.drop_table("rules")
    op.drop_table("rule_channels")

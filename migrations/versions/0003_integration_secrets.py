"""Integration secrets: the shared secrets signed producers sign requests with.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26

One row per tenant, integration (github, hubspot, salesforce, webhook) and
name (the generic webhook's `<name>`; empty otherwise). Secrets are stored as
given: HMAC verification needs them, so they cannot be hashed like API tokens.
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "integration_secrets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("integration", sa.String(32), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "integration", "name", name="uq_integration_secrets_tenant"),
    )
    op.create_index("ix_integration_secrets_integration", "integration_secrets", ["integration", "name"])


def downgrade():
    op.drop_index("ix_integration_secrets_integration", table_name="integration_secrets")
    op.drop_table("integration_secrets")

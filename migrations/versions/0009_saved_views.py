"""Saved views (a named filter per reader) and one-time token reveals.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-02

`saved_views`: the feed sidebar's named filters, one list per reader (the
reader keys of `read_cursors`). `token_reveals`: a just-created API token's
secret, held server-side for the one page the create redirects to, then
deleted (post/redirect/get without the secret in the session cookie).
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0013"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "saved_views",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("reader", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("query", sa.String(4000), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.UniqueConstraint("tenant_id", "reader", "name", name="uq_saved_views_reader_name"),
    )
    op.create_table(
        "token_reveals",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("token_id", sa.Integer(), sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
    )


def downgrade():
    op.drop_table("token_reveals")
    op.drop_table("saved_views")

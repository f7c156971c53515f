"""Sessions: a version per user, so signing out ends every copy of a session.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02

A session cookie carries the user's `session_version` from when they signed
in; every request compares it with the row. Signing out increments it, so a
cookie copied before the sign-out (or held by another browser) stops working
at once instead of living out its 14 days.
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_version")

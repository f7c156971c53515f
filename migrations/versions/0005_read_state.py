"""Read state per reader: a "read up to" cursor and single read marks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Read state belongs to each reader (a user, an API token, or local mode's one
reader), never to the immutable activity row. `read_cursors.read_up_to` is an
activity id: ids are UUIDv7, made on receipt, so "every event received up to
this one" is an id comparison the primary key serves. `read_marks` holds the
events read beyond the cursor; their primary key serves the "is it marked"
lookup, and `ix_read_marks_activity` lets deleting an activity find its marks.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
ID = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")


def upgrade():
    op.create_table(
        "read_cursors",
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("reader", sa.String(64), primary_key=True),
        sa.Column("read_up_to", ID, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
    )
    op.create_table(
        "read_marks",
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("reader", sa.String(64), primary_key=True),
        sa.Column("activity_id", ID, sa.ForeignKey("activities.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_read_marks_activity", "read_marks", ["activity_id"])


def downgrade():
    op.drop_index("ix_read_marks_activity", table_name="read_marks")
    op.drop_table("read_marks")
    op.drop_table("read_cursors")

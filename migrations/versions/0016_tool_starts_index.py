"""A partial index of tool calls' starts, which the unread badge checks for an outcome.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03

Every page's header looks for the reader's unread tool calls still running
among the newest unread starts (store/reading.py). Starts are 2 % of the
events: through the id index that walk read about 50 rows a start (170 ms
at 10M events, most of it pages fetched from the OS cache). This index holds
only the starts, about 1 B an event. Built CONCURRENTLY on PostgreSQL.
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

NAME = "ix_activities_tool_starts"
WHERE = "entity_type = 'tool' AND status = 'started' AND correlation_id IS NOT NULL"


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")  # an INVALID one from a build cut short
            op.execute(f"CREATE INDEX CONCURRENTLY {NAME} ON activities (tenant_id, id) WHERE {WHERE}")
    else:
        op.create_index(NAME, "activities", ["tenant_id", "id"], sqlite_where=sa.text(WHERE))


def downgrade():
    op.drop_index(NAME, table_name="activities")

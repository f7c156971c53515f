"""Two indexes for what every page's header asks: a tenant's events in receipt order, and its tool starts.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03

Ids are UUIDv7, made on receipt. The header counts the reader's unread
events (after their cursor: id > read_up_to) and names their running tool
calls (the newest unread starts without an outcome). The primary key is the
id alone, so the planner walked it through every other tenant's newer
events: with 100,000 of them in another tenant the count took 290 ms and the
running calls 370 ms, on every page.

- ix_activities_received (tenant_id, id): the count seeks to the cursor.
- ix_activities_tool_starts (tenant_id, id) WHERE the event is a tool call's
  start: the running calls read only starts, newest first.

Built CONCURRENTLY on PostgreSQL.
"""
import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

TOOL_START = "entity_type = 'tool' AND status = 'started' AND correlation_id IS NOT NULL"
INDEXES = [("ix_activities_received", None), ("ix_activities_tool_starts", TOOL_START)]


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name, where in INDEXES:
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # an INVALID one from a build cut short
                op.execute(f"CREATE INDEX CONCURRENTLY {name} ON activities (tenant_id, id)"
                           + (f" WHERE {where}" if where else ""))
    else:
        for name, where in INDEXES:
            op.create_index(name, "activities", ["tenant_id", "id"], sqlite_where=sa.text(where) if where else None)


def downgrade():
    for name, _ in INDEXES:
        op.drop_index(name, table_name="activities")

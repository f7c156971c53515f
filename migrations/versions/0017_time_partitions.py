"""Time partitions on PostgreSQL: `activities` by month of occurred_at, idempotency keys in a table of their own.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

Retention can then drop an expired month whole (store/partitions.py)
instead of deleting it row by row, and a month's indexes are a month's size.

A unique index on a partitioned table must include the partition key, so:
- the idempotency key (tenant, source, source_id) moves to `activity_keys`,
  one row per event: `activity_key(...)`, 16 bytes of md5, and the event's
  id. Ingest inserts the key first, in the same statement, and stores the
  event only when its key was new (store/ingest.py); concurrent duplicates
  wait on the key's index as they waited on the unique constraint. The
  tenant is in the hash, not a column: a foreign key to tenants would cost
  each inserted key a lookup (5 ms of a 1,000-event batch's 56);
- the primary key becomes (tenant_id, id, occurred_at). Ids stay unique by
  construction (UUIDv7); leading with the tenant, the key also serves what
  ix_activities_received did (a tenant's events by id), so that goes;
- read_marks can no longer reference an event by its id alone: its foreign
  key goes, and retention deletes the marks of what it deletes.

The table is rebuilt: a new partitioned table takes every row, then the
indexes and triggers of the old one (read from the catalog, so they are
exactly what the earlier migrations made), and the old table is dropped.
The rows' commit positions (txid) are kept: live clients resume across it.
It takes the write lock on `activities` for the copy.

SQLite stays one table with its unique constraint.
"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from activityweb.store import partitions

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# Months older than this many before today go to activities_before whole.
OLDEST_MONTHS = 24

KEY_FUNCTION = """
    CREATE OR REPLACE FUNCTION activity_key(tenant integer, source text, source_id text) RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT md5(tenant::text || ':' || length(source)::text || ':' || source || source_id)::uuid $$
"""


def _definitions(conn, skip: set[str]) -> list[str]:
    """CREATE statements of the indexes and triggers on `activities`, but `skip`."""
    indexes = conn.exec_driver_sql(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'activities'::regclass AND NOT i.indisprimary AND NOT i.indisunique").all()
    triggers = conn.exec_driver_sql(
        "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'activities'::regclass"
        " AND NOT tgisinternal").all()
    return [sql for name, sql in indexes + triggers if name not in skip]


def _rebuild_read_marks(foreign_key: bool) -> None:
    """SQLite: read_marks made again, with or without its foreign key to activities."""
    activity = [sa.ForeignKey("activities.id", ondelete="CASCADE")] if foreign_key else []
    op.create_table(
        "read_marks_new",
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("reader", sa.String(64), primary_key=True),
        sa.Column("activity_id", sa.String(36), *activity, primary_key=True),
    )
    op.execute("INSERT INTO read_marks_new SELECT tenant_id, reader, activity_id FROM read_marks")
    op.drop_table("read_marks")
    op.rename_table("read_marks_new", "read_marks")
    op.create_index("ix_read_marks_activity", "read_marks", ["activity_id"])


def upgrade():
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        _rebuild_read_marks(foreign_key=False)  # like PostgreSQL's, so retention deletes marks the same way
        return
    now = datetime.now(timezone.utc)
    op.execute("LOCK TABLE activities IN SHARE ROW EXCLUSIVE MODE")
    oldest = conn.exec_driver_sql("SELECT min(occurred_at) FROM activities").scalar()
    floor = partitions.add_months(partitions.month_start(now), -OLDEST_MONTHS)
    first = max(partitions.month_start(oldest), floor) if oldest else partitions.month_start(now)
    definitions = _definitions(conn, skip={"ix_activities_received"})

    op.execute(KEY_FUNCTION)
    op.execute("""
        CREATE TABLE activity_keys (key uuid PRIMARY KEY, activity_id uuid NOT NULL)
    """)
    op.execute("INSERT INTO activity_keys SELECT activity_key(tenant_id, source, source_id), id FROM activities")

    partitions.create_partitioned_table(conn, "activities_by_month", first, now)
    columns = ", ".join(partitions.stored_columns(conn))
    op.execute(f"INSERT INTO activities_by_month ({columns}) SELECT {columns} FROM activities")
    op.execute("DROP TABLE activities CASCADE")  # with read_marks' foreign key to it
    op.execute("ALTER TABLE activities_by_month RENAME TO activities")
    op.execute("ALTER TABLE activities ADD CONSTRAINT activities_pkey PRIMARY KEY (tenant_id, id, occurred_at)")
    op.execute("ALTER TABLE activities ADD CONSTRAINT activities_tenant_id_fkey FOREIGN KEY (tenant_id)"
               " REFERENCES tenants (id) ON DELETE CASCADE")
    for sql in definitions:
        op.execute(sql)
    op.execute("ANALYZE activities")


def downgrade():
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        op.execute("DELETE FROM read_marks WHERE activity_id NOT IN (SELECT id FROM activities)")
        _rebuild_read_marks(foreign_key=True)
        return
    op.execute("LOCK TABLE activities IN SHARE ROW EXCLUSIVE MODE")
    definitions = _definitions(conn, skip=set())
    op.execute("CREATE TABLE activities_whole (LIKE activities INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE)")
    columns = ", ".join(partitions.stored_columns(conn))
    op.execute(f"INSERT INTO activities_whole ({columns}) SELECT {columns} FROM activities")
    op.execute("DROP TABLE activities CASCADE")
    op.execute("DROP TABLE activity_keys")
    op.execute("DROP FUNCTION activity_key(integer, text, text)")
    op.execute("ALTER TABLE activities_whole RENAME TO activities")
    op.execute("ALTER TABLE activities ADD CONSTRAINT activities_pkey PRIMARY KEY (id)")
    op.execute("ALTER TABLE activities ADD CONSTRAINT activities_tenant_id_fkey FOREIGN KEY (tenant_id)"
               " REFERENCES tenants (id) ON DELETE CASCADE")
    op.execute("ALTER TABLE activities ADD CONSTRAINT uq_activities_source UNIQUE (tenant_id, source, source_id)")
    for sql in definitions:
        op.execute(sql)
    op.execute("CREATE INDEX ix_activities_received ON activities (tenant_id, id)")
    op.execute("DELETE FROM read_marks WHERE activity_id NOT IN (SELECT id FROM activities)")
    op.execute("ALTER TABLE read_marks ADD CONSTRAINT read_marks_activity_id_fkey FOREIGN KEY (activity_id)"
               " REFERENCES activities (id) ON DELETE CASCADE")

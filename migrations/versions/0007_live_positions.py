"""Live positions: every event records where it stands in commit order.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

`activities.txid` is the event's place in the log that live delivery and
replay read: "rows after my position (txid, id)".

- PostgreSQL: the inserting transaction, `xid8` from `pg_current_xact_id()`
  (the column default, so every writer gets it). Readers read only below
  the horizon `pg_snapshot_xmin(pg_current_snapshot())`: every transaction
  under it has ended, so nothing can later appear behind a reader.
- SQLite: writers are serialised, so an increasing integer taken inside the
  write transaction is commit-ordered. It comes from the one-row
  `live_clock` table (store/ingest.py bumps it first thing in each insert
  transaction, and by `flask seed` per chunk). Rows that existed before
  get 0.

`ix_activities_position` (tenant_id, txid, id) serves the tail read. Adding
the column rewrites the table on PostgreSQL (a volatile default); existing
rows all get this migration's transaction.
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE activities ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()")
    else:
        op.add_column("activities", sa.Column("txid", sa.BigInteger(), nullable=False, server_default="0"))
        op.create_table("live_clock", sa.Column("id", sa.Integer(), primary_key=True),
                        sa.Column("value", sa.BigInteger(), nullable=False))
        op.execute("INSERT INTO live_clock (id, value) VALUES (1, 0)")
    op.create_index("ix_activities_position", "activities", ["tenant_id", "txid", "id"])


def downgrade():
    op.drop_index("ix_activities_position", table_name="activities")
    if op.get_bind().dialect.name != "postgresql":
        op.drop_table("live_clock")
    op.execute("ALTER TABLE activities DROP COLUMN txid")

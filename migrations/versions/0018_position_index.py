"""The position index without the id: (tenant_id, txid).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04

`ix_activities_position` (tenant_id, txid, id) took 50 bytes an event at 1M
seeded events (after REINDEX). On (tenant_id, txid) it takes 31 when every
event has a transaction of its own and 7 when events share one (a batch, a
seed chunk): the btree keeps a repeated key once. The tail read "after
(txid, id)" seeks to the txid and reads that one transaction's rows again
to pass the id: few on the live path (concurrent single POSTs share a
commit), a batch's at most. EXPLAIN ANALYZE at 1M, seed transactions of
10,000 rows, a 500-row read after a position: 3.8 -> 7.9 ms.

On PostgreSQL the new index is made ON ONLY the partitioned table, built
CONCURRENTLY on each partition and attached, so writers are not blocked; a
run cut short can be run again, and partitions are not changed meanwhile.

(Dropping the stored `search_vector` for an expression index was measured
too and not taken: 99 bytes an event, but a search for a word in 1 event of
250 walked the feed computing each row's tsvector, 9 -> 113 ms at 1M.)
"""
from alembic import op

from activityweb.store import partitions

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index("ix_activities_position", table_name="activities")
        op.create_index("ix_activities_position", "activities", ["tenant_id", "txid"])
        return
    bind = op.get_bind()
    # Re-runnable: a run cut short inside the autocommit block has committed
    # the rename, the parent index and some partitions' indexes already.
    if bind.exec_driver_sql("SELECT to_regclass('ix_activities_position_0007')").scalar() is None:
        op.execute("ALTER INDEX ix_activities_position RENAME TO ix_activities_position_0007")
        op.execute("CREATE INDEX ix_activities_position ON ONLY activities (tenant_id, txid)")
    with op.get_context().autocommit_block():
        # Partitions made, moved or dropped meanwhile (store/partitions.py) would
        # race the loop: hold their lock, session-wide, for its length.
        op.execute(f"SELECT pg_advisory_lock({partitions.LOCK_KEY})")
        try:
            done = set(bind.exec_driver_sql(
                "SELECT x.indrelid::regclass::text FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid"
                " WHERE i.inhparent = 'ix_activities_position'::regclass AND x.indisvalid").scalars())
            for part in (p.name for p in partitions.partitions(bind) if p.name not in done):
                index = f"{part}_position"
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {index}")  # an INVALID one from a build cut short
                op.execute(f"CREATE INDEX CONCURRENTLY {index} ON {part} (tenant_id, txid)")
                op.execute(f"ALTER INDEX ix_activities_position ATTACH PARTITION {index}")
        finally:
            op.execute(f"SELECT pg_advisory_unlock({partitions.LOCK_KEY})")
    op.execute("DROP INDEX IF EXISTS ix_activities_position_0007")


def downgrade():
    op.drop_index("ix_activities_position", table_name="activities")
    op.create_index("ix_activities_position", "activities", ["tenant_id", "txid", "id"])

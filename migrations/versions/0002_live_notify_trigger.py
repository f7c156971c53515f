"""Live fan-out on PostgreSQL: NOTIFY from a statement trigger on activities.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Every statement that inserts activities sends, inside its own transaction,
`NOTIFY activityweb` with the new ids (PostgreSQL delivers it only on commit).
Doing it in the database rather than in Python saves the ingest path a round
trip and covers every writer. Payloads carry at most 150 ids (~6 KB, under
the 8000-byte cap); `live.PostgresHub` reads them. A session that sets
`activityweb.quiet = on` (bulk seeding) sends nothing. SQLite has no NOTIFY:
there the in-process hub fans out after commit.
"""
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
        CREATE FUNCTION activities_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          chunk record;
        BEGIN
          IF coalesce(current_setting('activityweb.quiet', true), '') = 'on' THEN
            RETURN NULL;
          END IF;
          FOR chunk IN
            SELECT tenant_id, json_agg(id ORDER BY id) AS ids
            FROM (
              SELECT tenant_id, id,
                     (row_number() OVER (PARTITION BY tenant_id ORDER BY id) - 1) / 150 AS part
              FROM new_rows
            ) numbered
            GROUP BY tenant_id, part
          LOOP
            PERFORM pg_notify('activityweb', json_build_object('t', chunk.tenant_id, 'ids', chunk.ids)::text);
          END LOOP;
          RETURN NULL;
        END
        $$
    """)
    op.execute("""
        CREATE TRIGGER activities_notify AFTER INSERT ON activities
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION activities_notify()
    """)


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS activities_notify ON activities")
    op.execute("DROP FUNCTION IF EXISTS activities_notify()")

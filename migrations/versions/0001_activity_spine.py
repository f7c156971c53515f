"""The activity spine: tenants, API tokens, activities and their indexes.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Full-text search differs by database: PostgreSQL gets a generated tsvector
column with a GIN index, SQLite an FTS5 table kept in step by triggers. Both
index the same words (runs of letters and digits) so that a search gives the
same answer on either.
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TIME = sa.DateTime(timezone=True)
ID = sa.String(36).with_variant(postgresql.UUID(as_uuid=False), "postgresql")
TYPE = sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql")

# (index name, columns after tenant_id, column that must be non-null for a partial index)
FILTER_INDEXES = [
    ("ix_activities_type", ["type", "occurred_at"], None),
    ("ix_activities_status", ["status", "occurred_at"], None),
    ("ix_activities_priority", ["priority", "occurred_at"], None),
    ("ix_activities_actor", ["actor_id", "occurred_at"], "actor_id"),
    ("ix_activities_entity", ["entity_id", "entity_type", "occurred_at"], "entity_id"),
    ("ix_activities_project", ["project", "occurred_at"], "project"),
    ("ix_activities_correlation", ["correlation_id", "occurred_at"], "correlation_id"),
    ("ix_activities_conversation", ["conversation_id", "sequence", "occurred_at"], "conversation_id"),
    ("ix_activities_session", ["session_id", "sequence", "occurred_at"], "session_id"),
]

SEARCH_TEXT = (
    "coalesce(title, '') || ' ' || coalesce(summary, '') || ' ' || "
    "coalesce(actor_name, '') || ' ' || coalesce(entity_name, '')"
)


def upgrade():
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("slug", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_used_at", TIME),
        sa.Column("revoked_at", TIME),
    )
    op.create_index("ix_api_tokens_tenant_id", "api_tokens", ["tenant_id"])
    op.create_table(
        "activities",
        sa.Column("id", ID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", TYPE, nullable=False),
        sa.Column("source", sa.String(50), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("summary", sa.Text()),
        sa.Column("actor_id", sa.String(200)),
        sa.Column("actor_name", sa.String(200)),
        sa.Column("entity_type", sa.String(100)),
        sa.Column("entity_id", sa.String(200)),
        sa.Column("entity_name", sa.String(300)),
        sa.Column("status", sa.String(50)),
        sa.Column("priority", sa.String(10), nullable=False),
        sa.Column("duration_ms", sa.BigInteger()),
        sa.Column("project", sa.String(200)),
        sa.Column("environment", sa.String(100)),
        sa.Column("request_id", sa.String(200)),
        sa.Column("conversation_id", sa.String(200)),
        sa.Column("session_id", sa.String(200)),
        sa.Column("sequence", sa.BigInteger()),
        sa.Column("correlation_id", sa.String(200)),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("data", JSON, nullable=False),
        sa.Column("occurred_at", TIME, nullable=False),
        sa.Column("received_at", TIME, nullable=False),
        sa.UniqueConstraint("tenant_id", "source", "source_id", name="uq_activities_source"),
    )
    op.create_index("ix_activities_feed", "activities", ["tenant_id", "occurred_at", "id"])
    for name, columns, not_null in FILTER_INDEXES:
        where = sa.text(f"{not_null} IS NOT NULL") if not_null else None
        op.create_index(name, "activities", ["tenant_id", *columns], postgresql_where=where, sqlite_where=where)

    if op.get_bind().dialect.name == "postgresql":
        op.create_index("ix_activities_tags", "activities", ["tags"], postgresql_using="gin",
                        postgresql_ops={"tags": "jsonb_path_ops"})
        op.execute(
            "ALTER TABLE activities ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
            f"to_tsvector('simple'::regconfig, regexp_replace({SEARCH_TEXT}, '[^[:alnum:]]+', ' ', 'g'))"
            ") STORED"
        )
        op.execute("CREATE INDEX ix_activities_search ON activities USING gin (search_vector)")
    else:
        # External-content FTS5 over the activities rowid. Activities are
        # immutable, so insert and delete triggers keep it in step. (A manual
        # VACUUM may renumber rowids: rebuild with
        # INSERT INTO activities_fts(activities_fts) VALUES ('rebuild').)
        op.execute(
            "CREATE VIRTUAL TABLE activities_fts USING fts5("
            "title, summary, actor_name, entity_name, content='activities', content_rowid='rowid', "
            "tokenize=\"unicode61 remove_diacritics 0 separators '_'\")"
        )
        op.execute(
            "CREATE TRIGGER activities_fts_insert AFTER INSERT ON activities BEGIN "
            "INSERT INTO activities_fts(rowid, title, summary, actor_name, entity_name) "
            "VALUES (new.rowid, new.title, new.summary, new.actor_name, new.entity_name); END"
        )
        op.execute(
            "CREATE TRIGGER activities_fts_delete AFTER DELETE ON activities BEGIN "
            "INSERT INTO activities_fts(activities_fts, rowid, title, summary, actor_name, entity_name) "
            "VALUES ('delete', old.rowid, old.title, old.summary, old.actor_name, old.entity_name); END"
        )


def downgrade():
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS activities_fts_delete")
        op.execute("DROP TRIGGER IF EXISTS activities_fts_insert")
        op.execute("DROP TABLE IF EXISTS activities_fts")
    op.drop_table("activities")
    op.drop_index("ix_api_tokens_tenant_id", table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("tenants")

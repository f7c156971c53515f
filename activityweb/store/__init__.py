"""Every read and write of the database, one module per concern.

Callers hand in validated values (`schemas.py`, `filters.py`) and a tenant id
taken from the credential; every query here is scoped by that tenant. No SQL
lives outside this package (a test checks): the edges and the services call
the names below.

- `database`: engine settings, the dialect, giving a connection back
- `tables`: the tables read with SQLAlchemy Core and the public shape of a row
- `ingest`: posted events, idempotently, concurrent posts sharing one commit
- `bulk`: generated events by COPY (`flask seed`)
- `filtering`: a filter as SQL
- `feed`: keyset pages, one event, exports
- `replay`: what live delivery reads: events after a position, in commit order
- `conversations`: timelines and the recently active conversations
- `reading`: read state, per reader
- `stats`: counts, series and durations of a filter
- `rollups`: the hourly counts ingest keeps and stats read
- `retention`: expiry and pruning
- `partitions`: PostgreSQL's monthly partitions of the events, made ahead and dropped once expired
- `accounts`: tenants, API tokens, users and memberships, integration secrets
- `saved_views`: a reader's named filters; a new token's secret, held for one showing
"""
from . import accounts, partitions, sessions, usage
from .accounts import (
    create_tenant,
    find_tenant,
    get_or_create_tenant,
    list_secrets,
    list_tenants,
    list_tokens,
    memberships_of,
    tenant_by_id,
)
from .bulk import bulk_load
from .conversations import (
    CONVERSATION_MAX_EVENTS,
    ConversationPage,
    ConversationQuery,
    conversation,
    conversation_names,
    conversation_projects,
    conversation_timeline,
    list_conversations,
    occurred_times,
)
from .database import applied_migrations, autocommit_connection, dialect, init_app, release
from .feed import Page, count_activities, get_activity, list_activities, stream_activities
from .filtering import apply_filter
from .ingest import IngestBatcher, Stored, add_activities, write_activities
from .reading import (UNREAD_COUNT_CAP, Reader, mark_all_read, mark_call_read, mark_read, reader_of, start_reading,
                      unread_count, unread_running_calls)
from . import replay
from .rollups import compact_rollups
from .rollups import rebuild as rebuild_rollups
from .retention import PRUNE_BATCH, Pruned, last_prune, prune, retention_periods, set_retention
from .saved_views import delete_view, hold_secret, save_view, saved_views, saved_views_max, take_secret
from .stats import Durations, SeriesPoint, Stats, activity_stats
from .tables import FEED_ORDER, activities, public, read_cursors, read_marks

__all__ = [
    "accounts", "partitions", "sessions", "usage", "create_tenant", "find_tenant", "get_or_create_tenant", "list_secrets", "list_tenants", "list_tokens",
    "memberships_of", "tenant_by_id",
    "CONVERSATION_MAX_EVENTS", "FEED_ORDER", "PRUNE_BATCH", "UNREAD_COUNT_CAP",
    "Durations", "IngestBatcher", "Page", "Pruned", "Reader", "SeriesPoint", "Stats", "Stored",
    "activities", "activity_stats", "add_activities", "applied_migrations", "apply_filter", "autocommit_connection",
    "bulk_load", "ConversationPage", "ConversationQuery", "conversation", "conversation_names", "conversation_projects",
    "list_conversations", "conversation_timeline", "count_activities", "dialect", "get_activity",
    "init_app", "last_prune", "list_activities", "mark_all_read", "mark_call_read", "mark_read", "occurred_times",
    "prune", "public", "read_cursors", "read_marks", "reader_of", "rebuild_rollups", "compact_rollups", "release",
    "replay", "start_reading",
    "retention_periods", "set_retention", "delete_view", "hold_secret", "save_view", "saved_views", "saved_views_max",
    "take_secret", "stream_activities", "unread_count", "unread_running_calls", "write_activities",
]

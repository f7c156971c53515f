"""Every read and write of activities.

Callers hand in validated values (see `schemas.py`) and a tenant id taken from
the credential; every query here is scoped by that tenant. Activity rows are
read and written with SQLAlchemy Core: the feed reads many rows and the ingest
path writes many, and neither needs ORM identity tracking.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import json
import queue
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import live
from .extensions import db
from .ids import is_uuid, uuid7, uuid7_floor, uuid7_time
from .models import ACTIVITY_FIELDS, Activity, PruneRun, ReadCursor, ReadMark, Tenant, utcnow
from .errors import InvalidQuery
from .schemas import ActivityFilter
from .timeline import ConversationSummary, Timeline

activities = Activity.__table__
read_cursors = ReadCursor.__table__
read_marks = ReadMark.__table__
_FEED_ORDER = (activities.c.occurred_at.desc(), activities.c.id.desc())


def _dialect() -> str:
    return db.engine.dialect.name


# ------------------------------------------------------------------ writes


@dataclass
class Stored:
    """The outcome of one posted event: the stored row, and whether it was already there."""

    activity: dict
    duplicate: bool


@functools.cache
def _insert_statement(dialect: str):
    """Built once: SQLAlchemy then reuses its compiled form for every POST."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(activities)
        .on_conflict_do_nothing(index_elements=["tenant_id", "source", "source_id"])
        .returning(activities.c.id)
    )


def add_activities(tenant_id: int, events: list[dict]) -> list[Stored]:
    """Store events idempotently; returns one `Stored` per input, in order.

    Concurrent calls in this process share one INSERT and one commit (see
    `IngestBatcher`). A repeat of (tenant, source, source_id), earlier or
    concurrent, inserts nothing and is answered with the row that won. Live
    subscribers hear of new rows only once they are committed.
    """
    from flask import current_app

    batcher = current_app.extensions.get("activityweb.ingest")
    if batcher is None:
        batcher = current_app.extensions.setdefault("activityweb.ingest", IngestBatcher())
    return batcher.submit(tenant_id, events)


def write_activities(jobs: list[tuple[int, list[dict]]]) -> list[list[Stored]]:
    """Store the events of several submissions (any tenants) in one multi-row
    INSERT ... ON CONFLICT DO NOTHING; one list of `Stored` per submission."""
    now = utcnow()
    job_rows: list[list[dict]] = []
    first_by_key: dict[tuple[int, str, str], dict] = {}
    for tenant_id, events in jobs:
        rows = []
        for event in events:
            activity_id = uuid7()
            row = dict(event)
            row["id"] = activity_id
            row["tenant_id"] = tenant_id
            row["source_id"] = event.get("source_id") or activity_id
            row["occurred_at"] = event.get("occurred_at") or now
            row["received_at"] = now
            rows.append(row)
            first_by_key.setdefault((tenant_id, row["source"], row["source_id"]), row)
        job_rows.append(rows)

    unique_rows = list(first_by_key.values())
    existing: dict[tuple[int, str, str], dict] = {}
    with _ingest_connection() as conn:
        inserted = _insert_rows(conn, unique_rows)
        missing: dict[int, list[tuple[str, str]]] = {}
        for (tenant_id, source, source_id), row in first_by_key.items():
            if row["id"] not in inserted:
                missing.setdefault(tenant_id, []).append((source, source_id))
        for tenant_id, keys in missing.items():
            for key, found in _rows_by_source_key(conn, tenant_id, keys).items():
                existing[(tenant_id, *key)] = found
    new_by_tenant: dict[int, list[dict]] = {}
    for row in unique_rows:
        if row["id"] in inserted:
            new_by_tenant.setdefault(row["tenant_id"], []).append(_public(row))
    for tenant_id, new_rows in new_by_tenant.items():
        live.delivered(tenant_id, new_rows)

    results = []
    for rows in job_rows:
        stored = []
        for row in rows:
            key = (row["tenant_id"], row["source"], row["source_id"])
            winner = first_by_key[key]
            if winner["id"] in inserted:
                stored.append(Stored(_public(winner), duplicate=row is not winner))
            else:
                stored.append(Stored(existing[key], duplicate=True))
        results.append(stored)
    return results


class _Job:
    __slots__ = ("tenant_id", "events", "result", "error", "lead", "wake")

    def __init__(self, tenant_id: int, events: list[dict]):
        self.tenant_id = tenant_id
        self.events = events
        self.result: list[Stored] | None = None
        self.error: BaseException | None = None
        self.lead = False
        self.wake = threading.Event()


class IngestBatcher:
    """Concurrent POSTs in one process share one INSERT and one commit.

    A commit costs a disk flush (about 2,000 a second per connection here);
    batching concurrent requests makes that cost per batch, not per event.
    No thread of its own and no added delay: the first request to arrive
    writes whatever is pending (its own events at least); requests that
    arrive meanwhile wait, and the next one in line writes their batch. A
    lone request is written at once, as before.
    """

    def __init__(self, max_rows: int = 1000):
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._pending: list[_Job] = []
        self._busy = False

    def submit(self, tenant_id: int, events: list[dict]) -> list[Stored]:
        job = _Job(tenant_id, events)
        with self._lock:
            self._pending.append(job)
            if not self._busy:
                self._busy = job.lead = True
        if not job.lead:
            job.wake.wait()
        if job.lead:
            self._write_next_batch()
        if job.error is not None:
            raise job.error
        return job.result

    def _write_next_batch(self) -> None:
        with self._lock:
            batch, rows = [], 0
            while self._pending and (not batch or rows + len(self._pending[0].events) <= self.max_rows):
                job = self._pending.pop(0)
                batch.append(job)
                rows += len(job.events)
        try:
            self._write(batch)
        finally:
            with self._lock:
                if self._pending:
                    nxt = self._pending[0]
                    nxt.lead = True
                    nxt.wake.set()
                else:
                    self._busy = False
            for job in batch:
                job.lead = False
                job.wake.set()

    @staticmethod
    def _write(batch: list[_Job]) -> None:
        try:
            for job, result in zip(batch, write_activities([(j.tenant_id, j.events) for j in batch])):
                job.result = result
        except Exception:
            if len(batch) == 1:
                batch[0].error = sys.exc_info()[1]
                return
            # One submission may poison the statement: write each alone, so
            # only its own request fails.
            for job in batch:
                try:
                    job.result = write_activities([(job.tenant_id, job.events)])[0]
                except Exception as exc:
                    job.error = exc


# PostgreSQL: every row in one statement with one array parameter per column.
# The text never changes (psycopg prepares it after a few uses) and a
# 1,000-row batch binds 27 arrays, not 27,000 scalars.
_PG_COLUMN_TYPES = {
    "id": "uuid", "tenant_id": "int", "duration_ms": "bigint", "sequence": "bigint",
    "tags": "jsonb", "data": "jsonb", "occurred_at": "timestamptz", "received_at": "timestamptz",
}
# Each row's expiry comes from its tenant's retention in the same statement.
_PG_COLUMNS = ("tenant_id",) + ACTIVITY_FIELDS
_PG_INSERT = (
    f"INSERT INTO activities ({', '.join(_PG_COLUMNS)}, expires_at) "
    "SELECT " + ", ".join(
        f"t.{c}::jsonb" if _PG_COLUMN_TYPES.get(c) == "jsonb" else f"t.{c}" for c in _PG_COLUMNS
    )
    + ", t.occurred_at + make_interval(days => tenants.retention_days)"
    + " FROM unnest(" + ", ".join(
        f"%({c})b::{'text' if _PG_COLUMN_TYPES.get(c, 'text') == 'jsonb' else _PG_COLUMN_TYPES.get(c, 'text')}[]"
        for c in _PG_COLUMNS
    )
    + f") AS t({', '.join(_PG_COLUMNS)}) JOIN tenants ON tenants.id = t.tenant_id "
    "ON CONFLICT (tenant_id, source, source_id) DO NOTHING RETURNING id"
)


def _insert_rows(conn, rows: list[dict]) -> set[str]:
    """Insert rows, skipping idempotency-key conflicts; returns the ids inserted."""
    if conn.dialect.name != "postgresql":
        keep = retention_periods(conn, {row["tenant_id"] for row in rows})
        for row in rows:
            row["expires_at"] = row["occurred_at"] + keep[row["tenant_id"]]
        return {r[0] for r in conn.execute(_insert_statement(conn.dialect.name), rows)}
    params = {}
    for column in _PG_COLUMNS:
        values = [row[column] for row in rows]
        if column in ("tags", "data"):
            values = [json.dumps(v, separators=(",", ":"), ensure_ascii=False) for v in values]
        params[column] = values
    return {str(r[0]) for r in conn.exec_driver_sql(_PG_INSERT, params)}


@contextlib.contextmanager
def _ingest_connection():
    """The connection an insert runs on, committed when the block ends.

    On PostgreSQL the INSERT is one statement whatever the batch size, so it
    runs in autocommit as its own transaction: a POST costs one round trip
    instead of BEGIN, INSERT, COMMIT. (Its NOTIFY comes from a trigger in the
    same statement; see migration 0002.) A repeat's stored row is read after
    that commit, which is what a concurrent winner needs anyway.
    """
    engine = db.engine
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn
    else:
        with engine.begin() as conn:
            yield conn


def _chunks(iterable, size: int):
    it = iter(iterable)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def bulk_load(tenant_id: int, events, *, chunk_size: int = 10_000, connections: int = 2) -> int:
    """Load many trusted, generated events fast (`flask seed`); no live publish.

    PostgreSQL gets COPY over `connections` connections at once: index upkeep
    in the server, not Python, is the bottleneck, and two backends use both
    cores. SQLite gets the multi-row insert, one transaction per chunk.
    Generated events carry fresh source ids, so the idempotency check of
    `add_activities` is not needed here.
    """
    keep = retention_periods(db.session.connection(), {tenant_id})[tenant_id]
    if _dialect() != "postgresql":
        loaded = 0
        statement = _insert_statement("sqlite")
        for chunk in _chunks(events, 1000):
            now = utcnow()
            rows = [{**e, "id": uuid7(), "tenant_id": tenant_id, "received_at": now,
                     "expires_at": e["occurred_at"] + keep} for e in chunk]
            db.session.execute(statement, rows)
            db.session.commit()
            loaded += len(rows)
        return loaded
    db.session.commit()  # our own connections below must see the tenant
    loaded = _copy_in_parallel(tenant_id, events, chunk_size, connections, keep)
    # Fresh statistics, or the planner picks plans for the empty table it last saw.
    db.session.execute(sa.text("ANALYZE activities"))
    db.session.commit()
    return loaded


def _copy_text(value: str | None) -> str:
    """A string in PostgreSQL's COPY text format (most need no escaping)."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _copy_number(value) -> str:
    return "\\N" if value is None else str(value)


def _copy_json(value) -> str:
    return _copy_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _copy_time(value: datetime) -> str:
    return value.isoformat()


_COPY_FORMATS = {"tags": _copy_json, "data": _copy_json, "occurred_at": _copy_time,
                 "duration_ms": _copy_number, "sequence": _copy_number}
_COPY_COLUMNS = ("tenant_id", "received_at", "id") + tuple(c for c in ACTIVITY_FIELDS if c not in ("id", "received_at"))
_COPY_FIELDS = [(c, _COPY_FORMATS.get(c, _copy_text)) for c in _COPY_COLUMNS[3:]]
_COPY_COLUMNS += ("expires_at",)  # computed per event, after the fields


def _copy_in_parallel(tenant_id: int, events, chunk_size: int, connections: int, keep: timedelta) -> int:
    sql = f"COPY activities ({', '.join(_COPY_COLUMNS)}) FROM STDIN"
    chunks: queue.Queue = queue.Queue(maxsize=connections * 2)
    failures: list[BaseException] = []

    engine = db.engine  # the threads have no app context

    def writer():
        try:
            raw = engine.raw_connection()
        except BaseException as exc:
            failures.append(exc)
            raw = None
        try:
            conn = raw.driver_connection if raw else None
            while (chunk := chunks.get()) is not None:
                if failures:
                    continue
                try:
                    with conn.cursor() as cursor:
                        # Seed data is not news: the live NOTIFY trigger stays quiet.
                        cursor.execute("SET LOCAL activityweb.quiet = 'on'")
                        with cursor.copy(sql) as copy:
                            copy.write(chunk)
                    conn.commit()
                except BaseException as exc:  # report to the producer, keep draining
                    conn.rollback()
                    failures.append(exc)
        finally:
            if raw is not None:
                raw.close()

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    loaded = 0
    try:
        for chunk in _chunks(events, chunk_size):
            if failures:
                break
            prefix = f"{tenant_id}\t{utcnow().isoformat()}\t"
            lines = [
                prefix + uuid7() + "\t" + "\t".join([fmt(e[c]) for c, fmt in _COPY_FIELDS])
                + "\t" + _copy_time(e["occurred_at"] + keep) for e in chunk
            ]
            chunks.put(("\n".join(lines) + "\n").encode())
            loaded += len(chunk)
    finally:
        for _ in threads:
            chunks.put(None)
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return loaded


def _rows_by_source_key(conn, tenant_id: int, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    found = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        query = sa.select(activities).where(
            activities.c.tenant_id == tenant_id,
            sa.tuple_(activities.c.source, activities.c.source_id).in_(chunk),
        )
        for row in conn.execute(query).mappings():
            found[(row["source"], row["source_id"])] = _public(row)
    return found


def _public(row) -> dict:
    """A row as the API and templates see it: the documented fields, no tenant id."""
    return {name: row[name] for name in ACTIVITY_FIELDS}


# ------------------------------------------------------------------- reads


class Reader:
    """Whose read state a request sees, in one tenant (see `reader_of`)."""

    def __init__(self, tenant_id: int, key: str):
        self.tenant_id = tenant_id
        self.key = key

    @functools.cached_property
    def read_up_to(self) -> str | None:
        """Every event received up to this id is read (ids are UUIDv7, made
        on receipt, so id order is receive order); None: nothing is."""
        return db.session.execute(
            sa.select(read_cursors.c.read_up_to)
            .where(read_cursors.c.tenant_id == self.tenant_id, read_cursors.c.reader == self.key)
        ).scalar_one_or_none()

    def cursor_moved(self) -> None:
        """Read the cursor again when next needed."""
        self.__dict__.pop("read_up_to", None)


def reader_of(principal) -> Reader:
    """A signed-in user reads as themselves, an API token as itself; local
    mode has one reader, shared by the dashboard and token-less API calls."""
    if principal.user_id is not None:
        key = f"user:{principal.user_id}"
    elif principal.token_id is not None:
        key = f"token:{principal.token_id}"
    elif principal.local:
        key = "local"
    else:
        raise ValueError("this principal has no read state")
    return Reader(principal.tenant_id, key)


@dataclass
class Page:
    items: list[dict]
    # The keyset position (occurred_at, id) the next page starts after; None on the last page.
    next_after: tuple[datetime, str] | None
    reader: Reader | None = None

    @functools.cached_property
    def unread(self) -> set[str]:
        """Ids of the items the page's reader has not read (looked up when first asked)."""
        return unread_among(self.reader, [a["id"] for a in self.items]) if self.reader else set()


def apply_filter(query, flt: ActivityFilter, reader: Reader | None = None):
    """Narrow a select over `activities` by a filter. Must agree with
    `ActivityFilter.matches`. `read` needs the reader it is relative to."""
    c = activities.c
    if flt.type:
        exact = [t for t in flt.type if not t.endswith(".*")]
        clauses = [c.type.in_(exact)] if exact else []
        for prefix in (t[:-1] for t in flt.type if t.endswith(".*")):
            # 'tool.' <= type < 'tool/' ('/' follows '.'): a btree range, unlike LIKE.
            clauses.append(sa.and_(c.type >= prefix, c.type < prefix[:-1] + "/"))
        query = query.where(sa.or_(*clauses))
    for name, column in (
        ("source", c.source), ("actor", c.actor_id), ("entity_type", c.entity_type),
        ("entity_id", c.entity_id), ("status", c.status), ("priority", c.priority),
        ("project", c.project), ("environment", c.environment),
        ("conversation_id", c.conversation_id), ("session_id", c.session_id),
        ("correlation_id", c.correlation_id),
    ):
        values = getattr(flt, name)
        if len(values) == 1:
            query = query.where(column == values[0])
        elif values:
            query = query.where(column.in_(values))
    if flt.tag:
        query = query.where(_has_any_tag(flt.tag))
    if flt.since:
        query = query.where(c.occurred_at >= flt.since)
    if flt.until:
        query = query.where(c.occurred_at < flt.until)
    if flt.q:
        query = query.where(_full_text(flt.terms))
    if flt.read is not None:
        if reader is None:
            raise ValueError("filtering on read state needs a reader")
        query = query.where(sa.not_(_unread(reader)) if flt.read else _unread(reader))
    return query


def _has_any_tag(tags: tuple[str, ...]):
    if _dialect() == "postgresql":
        tags_jsonb = sa.type_coerce(activities.c.tags, postgresql.JSONB)
        return sa.or_(*(tags_jsonb.contains([t]) for t in tags))
    each = sa.func.json_each(activities.c.tags).table_valued("value")
    return sa.exists().where(each.c.value.in_(tags))


def _full_text(terms: list[str]):
    """Every word of the search box as a prefix (search as you type).

    Terms are alphanumeric (`schemas.search_terms`), so neither query syntax can be injected.
    """
    if _dialect() == "postgresql":
        tsquery = " & ".join(f"{t}:*" for t in terms)
        return sa.literal_column("activities.search_vector").op("@@")(
            sa.func.to_tsquery(sa.literal_column("'simple'::regconfig"), tsquery)
        )
    match = " ".join(f'"{t}"*' for t in terms)
    fts = sa.table("activities_fts")
    matching = sa.select(sa.literal_column("rowid")).select_from(fts).where(
        sa.literal_column("activities_fts").op("MATCH")(match)
    )
    return sa.literal_column("activities.rowid").in_(matching)


def list_activities(
    tenant_id: int,
    flt: ActivityFilter,
    *,
    limit: int = 50,
    after: tuple[datetime, str] | None = None,
    reader: Reader | None = None,
) -> Page:
    """One keyset page in feed order, starting after the (occurred_at, id)
    `after`; with a reader, the page knows which of its items they have not read."""
    query = apply_filter(sa.select(activities).where(activities.c.tenant_id == tenant_id), flt, reader)
    if after:
        moment, last_id = after
        c = activities.c
        # The first condition is what an index on (..., occurred_at) can seek
        # to; the row comparison then breaks ties on id.
        query = query.where(
            c.occurred_at <= moment,
            sa.tuple_(c.occurred_at, c.id) < sa.tuple_(sa.literal(moment, c.occurred_at.type), sa.literal(last_id, c.id.type)),
        )
    rows = db.session.execute(query.order_by(*_FEED_ORDER).limit(limit + 1)).mappings().all()
    items = [_public(r) for r in rows[:limit]]
    next_after = (items[-1]["occurred_at"], items[-1]["id"]) if len(rows) > limit else None
    return Page(items, next_after, reader)


def get_activity(tenant_id: int, activity_id: str) -> dict | None:
    if not is_uuid(activity_id):
        return None
    row = db.session.execute(
        sa.select(activities).where(activities.c.tenant_id == tenant_id, activities.c.id == activity_id)
    ).mappings().first()
    return _public(row) if row else None


def activities_by_ids(tenant_id: int, ids: list[str]) -> list[dict]:
    """Rows of one tenant by id, in receive (id) order; the live hub re-reads with this."""
    if not ids:
        return []
    query = (
        sa.select(activities)
        .where(activities.c.tenant_id == tenant_id, activities.c.id.in_(ids))
        .order_by(activities.c.id)
    )
    return [_public(r) for r in db.session.execute(query).mappings()]


# Ids are made before commit, so an event committed just after a reader's
# newest one can carry a smaller id; replay reaches this far back.
REPLAY_OVERLAP = timedelta(seconds=5)


def missed_since(tenant_id: int, flt: ActivityFilter, since_id: str, limit: int | None = None) -> tuple[list[dict], bool]:
    """Events received after the event `since_id` (minus the overlap), in
    receive order, matching `flt`; and whether `limit` cut the list short.

    Used by live streams, which then wait for a long time: the database
    session is handed back before returning. Missed events are new, so
    unread by everyone: a `read` filter passes all of them or none.
    """
    since = uuid7_time(since_id)
    if since is None or flt.read:
        return [], False
    flt = replace(flt, read=None)
    floor = uuid7_floor(since - REPLAY_OVERLAP)
    base = apply_filter(
        sa.select(activities).where(activities.c.tenant_id == tenant_id, activities.c.id > floor), flt
    ).order_by(activities.c.id)
    events: list[dict] = []
    try:
        while True:
            page_size = 1000 if limit is None else min(1000, limit + 1 - len(events))
            query = base if not events else base.where(activities.c.id > events[-1]["id"])
            rows = [_public(r) for r in db.session.execute(query.limit(page_size)).mappings()]
            events.extend(rows)
            if len(rows) < page_size or (limit is not None and len(events) > limit):
                break
    finally:
        db.session.remove()
    if limit is not None and len(events) > limit:
        return events[:limit], True
    return events, False


def count_activities(tenant_id: int) -> int:
    return db.session.execute(
        sa.select(sa.func.count()).select_from(activities).where(activities.c.tenant_id == tenant_id)
    ).scalar_one()


# ----------------------------------------------------------- conversations

# The most events one timeline shows; a longer conversation says so.
CONVERSATION_MAX_EVENTS = 5000
# How many of the newest conversation events `recent_conversations` reads to
# find the most recently active conversations.
RECENT_CONVERSATION_SCAN = 10_000


def conversation(tenant_id: int, conversation_id: str, limit: int = CONVERSATION_MAX_EVENTS) -> tuple[list[dict], bool]:
    """The events of one conversation in timeline order (`sequence`, then
    time, then receipt; `ix_activities_conversation` serves it), and whether
    `limit` cut them short."""
    c = activities.c
    query = (
        sa.select(activities)
        .where(c.tenant_id == tenant_id, c.conversation_id == conversation_id)
        .order_by(c.sequence.asc().nulls_last(), c.occurred_at, c.id)
        .limit(limit + 1)
    )
    events = [_public(r) for r in db.session.execute(query).mappings()]
    return events[:limit], len(events) > limit


def occurred_times(tenant_id: int, source: str, keys: set[tuple[str, str]]) -> dict[tuple[str, str], datetime]:
    """When the newest event of each (type, correlation_id) from `source`
    occurred, for the keys that have one: how finishes find their starts."""
    if not keys:
        return {}
    c = activities.c
    rows = db.session.execute(
        sa.select(c.type, c.correlation_id, sa.func.max(c.occurred_at))
        .where(c.tenant_id == tenant_id, c.source == source,
               c.correlation_id.in_({key for _, key in keys}), c.type.in_({kind for kind, _ in keys}))
        .group_by(c.type, c.correlation_id))
    return {(kind, key): at for kind, key, at in rows if (kind, key) in keys}


def conversation_timeline(tenant_id: int, conversation_id: str) -> Timeline | None:
    """The conversation as a timeline, or None if the tenant has no event in it."""
    events, truncated = conversation(tenant_id, conversation_id)
    return Timeline.of(conversation_id, events, truncated) if events else None


def recent_conversations(tenant_id: int, flt: ActivityFilter, limit: int = 20) -> list[ConversationSummary]:
    """The conversations most recently active among the events `flt` matches,
    newest first, each summarised over all of its events.

    Finds them among the newest RECENT_CONVERSATION_SCAN matching events (a
    bounded read of the feed index) rather than grouping the whole table.
    """
    c = activities.c
    newest = apply_filter(
        sa.select(c.conversation_id, c.occurred_at).where(c.tenant_id == tenant_id, c.conversation_id.is_not(None)),
        flt,
    ).order_by(*_FEED_ORDER).limit(RECENT_CONVERSATION_SCAN).subquery()
    ids = [row[0] for row in db.session.execute(
        sa.select(newest.c.conversation_id).group_by(newest.c.conversation_id)
        .order_by(sa.func.max(newest.c.occurred_at).desc()).limit(limit)
    )]
    if not ids:
        return []
    in_these = sa.and_(c.tenant_id == tenant_id, c.conversation_id.in_(ids))
    totals = db.session.execute(
        sa.select(c.conversation_id, sa.func.count(), sa.func.min(c.occurred_at), sa.func.max(c.occurred_at),
                  sa.func.count().filter(c.status == "failed"), sa.func.max(c.project))
        .where(in_these).group_by(c.conversation_id)
    ).all()
    prompts: dict[str, str] = {}
    for conversation_id, summary, title in db.session.execute(
        sa.select(c.conversation_id, c.summary, c.title).where(in_these, c.entity_type == "prompt")
        .order_by(c.conversation_id, c.sequence.asc().nulls_last(), c.occurred_at, c.id)
    ):
        prompts.setdefault(conversation_id, summary or title)
    by_id = {
        row[0]: ConversationSummary(*row, first_prompt=prompts.get(row[0]))
        for row in totals
    }
    return [by_id[i] for i in ids if i in by_id]


# -------------------------------------------------------------- read state
#
# An event is unread by a reader when it was received after their cursor
# (`Reader.read_up_to`) and they have not marked it. Marking everything moves
# the cursor; marking what a filter shows marks each of those events.

# The unread count stops here: "999+" needs no exact count of a big backlog.
UNREAD_COUNT_CAP = 999


def _unread(reader: Reader):
    """Unread by `reader`: after their cursor and not marked read."""
    c = activities.c
    marked = sa.exists().where(read_marks.c.tenant_id == reader.tenant_id, read_marks.c.reader == reader.key,
                               read_marks.c.activity_id == c.id)
    if reader.read_up_to is None:
        return ~marked
    return sa.and_(c.id > reader.read_up_to, ~marked)


def unread_among(reader: Reader, ids: list[str]) -> set[str]:
    """Which of these events (of the reader's tenant) the reader has not read."""
    # UUIDv7 text sorts as the database sorts the ids.
    after_cursor = [i for i in ids if reader.read_up_to is None or i > reader.read_up_to]
    if not after_cursor:
        return set()
    marked = db.session.execute(
        sa.select(read_marks.c.activity_id).where(
            read_marks.c.tenant_id == reader.tenant_id, read_marks.c.reader == reader.key,
            read_marks.c.activity_id.in_(after_cursor))
    ).scalars()
    return set(after_cursor) - set(marked)


def unread_count(reader: Reader) -> int:
    """How many events the reader has not read, up to UNREAD_COUNT_CAP + 1."""
    unread = sa.select(activities.c.id).where(activities.c.tenant_id == reader.tenant_id, _unread(reader))
    return db.session.execute(
        sa.select(sa.func.count()).select_from(unread.limit(UNREAD_COUNT_CAP + 1).subquery())
    ).scalar_one()


def _upsert(table):
    return (postgresql.insert if _dialect() == "postgresql" else sqlite.insert)(table)


def mark_read(reader: Reader, activity_id: str) -> dict | None:
    """Mark one event read; returns it, or None if the tenant has no such event."""
    activity = get_activity(reader.tenant_id, activity_id)
    if activity is not None and (reader.read_up_to is None or activity_id > reader.read_up_to):
        db.session.execute(_upsert(read_marks).values(
            tenant_id=reader.tenant_id, reader=reader.key, activity_id=activity_id).on_conflict_do_nothing())
        db.session.commit()
    return activity


def mark_all_read(reader: Reader, flt: ActivityFilter, up_to: str | None = None) -> None:
    """Mark read every event `flt` matches that was received up to the event
    `up_to` (default: the newest now), so what arrives meanwhile stays unread.

    With no filter that is the cursor moving; otherwise each matching unread
    event is marked, in one INSERT ... SELECT.
    """
    c = activities.c
    up_to = up_to or db.session.execute(  # the newest received (PostgreSQL has no max(uuid))
        sa.select(c.id).where(c.tenant_id == reader.tenant_id).order_by(c.id.desc()).limit(1)).scalar()
    if up_to is None:
        return
    flt = replace(flt, read=None)  # a read event is already marked; an unread one is what we mark
    if flt.is_empty():
        _move_cursor(reader, up_to)
    else:
        unread = apply_filter(
            sa.select(sa.literal(reader.tenant_id), sa.literal(reader.key), c.id)
            .where(c.tenant_id == reader.tenant_id, c.id <= up_to, _unread(reader)),
            flt,
        )
        db.session.execute(_upsert(read_marks).from_select(["tenant_id", "reader", "activity_id"], unread)
                           .on_conflict_do_nothing())
    db.session.commit()


def _move_cursor(reader: Reader, up_to: str) -> None:
    """Move the reader's cursor forward to `up_to` (never back) and drop the marks it now covers."""
    insert = _upsert(read_cursors).values(tenant_id=reader.tenant_id, reader=reader.key, read_up_to=up_to,
                                          updated_at=utcnow())
    current = read_cursors.c.read_up_to
    db.session.execute(insert.on_conflict_do_update(
        index_elements=["tenant_id", "reader"],
        set_={"read_up_to": sa.case((current < insert.excluded.read_up_to, insert.excluded.read_up_to),
                                    else_=current),
              "updated_at": insert.excluded.updated_at},
    ))
    db.session.execute(sa.delete(read_marks).where(
        read_marks.c.tenant_id == reader.tenant_id, read_marks.c.reader == reader.key,
        read_marks.c.activity_id <= up_to))
    reader.cursor_moved()


# ------------------------------------------------------------------- stats

# Time series points at most; a finer bucket over a longer span is refused.
MAX_BUCKETS = 2000
# An automatic bucket is an hour up to this span, a day beyond it.
HOURLY_UP_TO = timedelta(days=3)
TOP = 10


@dataclass
class Durations:
    """`duration_ms` of some events: how many have one, p50 and p95
    (interpolated, as PostgreSQL's percentile_cont), the longest."""

    count: int
    p50: float | None
    p95: float | None
    max: int | None


@dataclass
class SeriesPoint:
    at: datetime
    count: int
    failed: int
    by_source: dict[str, int]


@dataclass
class Stats:
    total: int
    first_at: datetime | None
    last_at: datetime | None
    by_type: list[tuple[str, int]]
    by_source: list[tuple[str, int]]
    by_status: list[tuple[str | None, int]]
    by_priority: list[tuple[str, int]]
    bucket: str
    series: list[SeriesPoint]
    top_actors: list[tuple[str, str | None, int]]
    top_entities: list[tuple[str | None, str, str | None, int]]
    durations: Durations
    tools: list[tuple[str, Durations]]

    @property
    def failed(self) -> int:
        return dict(self.by_status).get("failed", 0)

    @property
    def succeeded(self) -> int:
        return dict(self.by_status).get("success", 0)

    @property
    def failure_rate(self) -> float | None:
        """Failed ÷ (failed + succeeded): events still running or of no outcome do not count."""
        finished = self.failed + self.succeeded
        return self.failed / finished if finished else None


def activity_stats(tenant_id: int, flt: ActivityFilter, bucket: str = "auto", reader: Reader | None = None) -> Stats:
    """Counts, a time series, top lists and durations of the events `flt` matches.

    `bucket` is `hour`, `day` or `auto` (hours up to HOURLY_UP_TO of span);
    one that makes more than MAX_BUCKETS points is a 400. Each figure is one
    grouped query over the filtered events.
    """
    c = activities.c

    def matching(*columns):
        return apply_filter(sa.select(*columns).where(c.tenant_id == tenant_id), flt, reader)

    def counts(column, limit=None):
        query = matching(column, sa.func.count().label("n")).group_by(column).order_by(sa.desc("n"), column)
        return [tuple(row) for row in db.session.execute(query.limit(limit))]

    total, first_at, last_at = db.session.execute(
        matching(sa.func.count(), sa.func.min(c.occurred_at), sa.func.max(c.occurred_at))).one()
    start, end = flt.since or first_at, flt.until or last_at
    bucket = _bucket_for(bucket, start, end)
    actor = sa.func.max(c.actor_name)
    entity = sa.func.max(c.entity_name)
    return Stats(
        total=total, first_at=first_at, last_at=last_at,
        by_type=counts(c.type, 20), by_source=counts(c.source), by_status=counts(c.status),
        by_priority=counts(c.priority), bucket=bucket,
        series=_series(matching, bucket, start, end) if total else [],
        top_actors=[tuple(r) for r in db.session.execute(
            matching(c.actor_id, actor, sa.func.count().label("n")).where(c.actor_id.is_not(None))
            .group_by(c.actor_id).order_by(sa.desc("n"), c.actor_id).limit(TOP))],
        top_entities=[tuple(r) for r in db.session.execute(
            matching(c.entity_type, c.entity_id, entity, sa.func.count().label("n")).where(c.entity_id.is_not(None))
            .group_by(c.entity_type, c.entity_id).order_by(sa.desc("n"), c.entity_id).limit(TOP))],
        durations=_durations(matching(c.duration_ms).where(c.duration_ms.is_not(None))),
        tools=_tool_durations(matching),
    )


def _bucket_for(asked: str, start: datetime | None, end: datetime | None) -> str:
    span = (end - start) if start and end else timedelta(0)
    bucket = asked if asked != "auto" else ("hour" if span <= HOURLY_UP_TO else "day")
    if span / _BUCKET_STEP[bucket] > MAX_BUCKETS:
        raise InvalidQuery("bucket", f"{span.days} days by the {bucket} is over {MAX_BUCKETS:,} points; "
                          "use a larger bucket or a shorter since/until")
    return bucket


_BUCKET_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
_SQLITE_BUCKET_FORMAT = {"hour": "%Y-%m-%d %H:00:00", "day": "%Y-%m-%d 00:00:00"}


def _truncate(moment: datetime, bucket: str) -> datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if bucket == "day" else moment


def _series(matching, bucket: str, start: datetime, end: datetime) -> list[SeriesPoint]:
    """Events per bucket (UTC) from `start` to `end`, empty buckets included."""
    c = activities.c
    if _dialect() == "postgresql":
        at = sa.func.date_trunc(bucket, sa.func.timezone("UTC", c.occurred_at))
    else:
        at = sa.func.strftime(_SQLITE_BUCKET_FORMAT[bucket], c.occurred_at)
    at = at.label("at")
    rows = db.session.execute(
        matching(at, c.source, sa.func.count(), sa.func.count().filter(c.status == "failed")).group_by(at, c.source))
    points: dict[datetime, SeriesPoint] = {}
    step = _BUCKET_STEP[bucket]
    moment = _truncate(start, bucket)
    while moment <= end:
        points[moment] = SeriesPoint(moment, 0, 0, {})
        moment += step
    for when, source, count, failed in rows:
        # PostgreSQL answers a naive UTC timestamp, SQLite the text we formatted.
        when = (when if isinstance(when, datetime) else datetime.fromisoformat(when)).replace(tzinfo=timezone.utc)
        point = points.setdefault(when, SeriesPoint(when, 0, 0, {}))
        point.count += count
        point.failed += failed
        point.by_source[source] = count
    return sorted(points.values(), key=lambda p: p.at)


def _durations(values) -> Durations:
    """Summary of a one-column select of non-null `duration_ms`.

    PostgreSQL computes percentile_cont; SQLite has none, so the two values
    around each rank are read with ORDER BY ... LIMIT 2 OFFSET and
    interpolated the same way (no value list is held in memory).
    """
    column = values.selected_columns[0]
    summary = values.with_only_columns(sa.func.count(), sa.func.max(column))
    if _dialect() == "postgresql":
        count, longest, p50, p95 = db.session.execute(summary.add_columns(
            sa.func.percentile_cont(0.5).within_group(column), sa.func.percentile_cont(0.95).within_group(column))).one()
        return Durations(count, _ms(p50), _ms(p95), longest)
    count, longest = db.session.execute(summary).one()

    def percentile(p: float) -> float | None:
        if not count:
            return None
        rank = p * (count - 1)
        around = db.session.execute(values.order_by(column).limit(2).offset(int(rank))).scalars().all()
        low, high = around[0], around[-1]
        return low + (high - low) * (rank - int(rank))

    return Durations(count, _ms(percentile(0.5)), _ms(percentile(0.95)), longest)


def _tool_durations(matching) -> list[tuple[str, Durations]]:
    """`Durations` of the TOP most timed tools, in one grouped query
    (PostgreSQL), or two on SQLite: the counts, then only the rows at the
    ranks the percentiles need, numbered per tool by a window function."""
    c = activities.c
    timed = matching(c.entity_id).where(c.entity_type == "tool", c.duration_ms.is_not(None))
    grouped = (timed.add_columns(sa.func.count().label("n"), sa.func.max(c.duration_ms))
               .group_by(c.entity_id).order_by(sa.desc("n"), c.entity_id).limit(TOP))
    if _dialect() == "postgresql":
        rows = db.session.execute(grouped.add_columns(
            sa.func.percentile_cont(0.5).within_group(c.duration_ms),
            sa.func.percentile_cont(0.95).within_group(c.duration_ms)))
        return [(tool, Durations(n, _ms(p50), _ms(p95), longest)) for tool, n, longest, p50, p95 in rows]
    tops = db.session.execute(grouped).all()
    if not tops:
        return []
    wanted = {(tool, rank) for tool, n, _ in tops for p in (0.5, 0.95)
              for rank in (int(p * (n - 1)) + 1, min(int(p * (n - 1)) + 2, n))}
    ranked = timed.where(c.entity_id.in_([tool for tool, _, _ in tops])).add_columns(
        c.duration_ms, sa.func.row_number().over(partition_by=c.entity_id, order_by=c.duration_ms).label("rank"),
    ).subquery()
    at = {(tool, rank): value for tool, value, rank in db.session.execute(
        sa.select(ranked.c.entity_id, ranked.c.duration_ms, ranked.c.rank)
        .where(sa.tuple_(ranked.c.entity_id, ranked.c.rank).in_(sorted(wanted))))}

    def percentile(tool: str, n: int, p: float) -> float:
        rank = p * (n - 1)
        low, high = at[(tool, int(rank) + 1)], at[(tool, min(int(rank) + 2, n))]
        return low + (high - low) * (rank - int(rank))

    return [(tool, Durations(n, _ms(percentile(tool, n, 0.5)), _ms(percentile(tool, n, 0.95)), longest))
            for tool, n, longest in tops]


def _ms(value: float | None) -> float | None:
    """Interpolated milliseconds, to the microsecond (both databases agree to there)."""
    return None if value is None else round(value, 3)


# ------------------------------------------------------------------ export

# Rows fetched from the database at a time while exporting.
EXPORT_CHUNK = 2000


def stream_activities(tenant_id: int, flt: ActivityFilter, reader: Reader | None = None,
                      chunk: int = EXPORT_CHUNK) -> Iterator[dict]:
    """Every event `flt` matches, in feed order, read as it is consumed.

    Memory stays flat however many match: `yield_per` streams the result (a
    server-side cursor on PostgreSQL; SQLite's cursor steps through rows by
    itself) and holds `chunk` rows at a time. The read runs in one
    transaction, so the export is a consistent snapshot; it holds a database
    connection until the caller has consumed it or closed the generator.
    """
    query = apply_filter(sa.select(activities).where(activities.c.tenant_id == tenant_id), flt, reader)
    result = db.session.execute(query.order_by(*_FEED_ORDER).execution_options(yield_per=chunk))
    try:
        for row in result.mappings():
            yield _public(row)
    finally:
        result.close()


# --------------------------------------------------------------- retention
#
# Every event gets expires_at = occurred_at + its tenant's retention when it
# is stored; `prune` deletes expired events in small batches, each its own
# short transaction, so writers wait for one batch at most.

tenants = Tenant.__table__
prune_runs = PruneRun.__table__
PRUNE_BATCH = 1000


def retention_periods(conn, tenant_ids) -> dict[int, timedelta]:
    """How long each tenant keeps its events."""
    rows = conn.execute(sa.select(tenants.c.id, tenants.c.retention_days).where(tenants.c.id.in_(tenant_ids)))
    return {tenant_id: timedelta(days=days) for tenant_id, days in rows}


@dataclass
class Pruned:
    deleted: int
    deleted_through: datetime | None  # the newest occurred_at among them
    batches: int


def prune(tenant_id: int, *, batch_size: int = PRUNE_BATCH, now: datetime | None = None,
          pause: float = 0.0) -> Pruned:
    """Delete the tenant's events that expired by `now`, `batch_size` per
    transaction (`pause` seconds between), and record the pass in prune_runs."""
    started = utcnow()
    now = now or started
    c = activities.c
    expired = (sa.select(c.id).where(c.tenant_id == tenant_id, c.expires_at <= now)
               .order_by(c.expires_at).limit(batch_size))
    result = Pruned(0, None, 0)
    while True:
        gone = db.session.execute(sa.delete(activities).where(c.id.in_(expired)).returning(c.occurred_at)).scalars().all()
        db.session.commit()
        if gone:
            result.batches += 1
            result.deleted += len(gone)
            result.deleted_through = max(gone + [result.deleted_through or gone[0]])
        if len(gone) < batch_size:
            break
        time.sleep(pause)
    db.session.execute(sa.insert(prune_runs).values(
        tenant_id=tenant_id, started_at=started, finished_at=utcnow(), deleted=result.deleted,
        deleted_through=result.deleted_through,
        retention_days=sa.select(tenants.c.retention_days).where(tenants.c.id == tenant_id).scalar_subquery()))
    db.session.commit()
    return result


def last_prune(tenant_id: int):
    """The tenant's latest prune that deleted something (a row of prune_runs), or None."""
    return db.session.execute(
        sa.select(prune_runs).where(prune_runs.c.tenant_id == tenant_id, prune_runs.c.deleted > 0)
        .order_by(prune_runs.c.finished_at.desc()).limit(1)
    ).first()


def set_retention(tenant_id: int, days: int, *, restamp: bool = False, batch_size: int = PRUNE_BATCH) -> int:
    """Keep the tenant's events `days` days from now on; with `restamp`, give
    its stored events the new expiry too (in batches). Returns how many were restamped."""
    db.session.execute(sa.update(tenants).where(tenants.c.id == tenant_id).values(retention_days=days))
    db.session.commit()
    c = activities.c
    restamped, after = 0, None
    while restamp:
        batch = db.session.execute(
            sa.select(c.id).where(c.tenant_id == tenant_id, *([c.id > after] if after else []))
            .order_by(c.id).limit(batch_size)).scalars().all()
        if not batch:
            break
        db.session.execute(sa.update(activities).where(c.id.in_(batch)).values(expires_at=_expiry(days)))
        db.session.commit()
        restamped += len(batch)
        after = batch[-1]
    return restamped


def _expiry(days: int):
    """occurred_at + `days`, in SQL."""
    occurred = activities.c.occurred_at
    if _dialect() == "postgresql":
        return occurred + sa.literal(timedelta(days=days), sa.Interval())
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' text: shift it, keep the fraction.
    return sa.func.strftime("%Y-%m-%d %H:%M:%S", occurred, f"+{int(days)} days").op("||")(sa.func.substr(occurred, 20))

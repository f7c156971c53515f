"""Ingest: storing posted events idempotently, concurrent posts sharing one commit.

Live readers are woken only once the rows are committed (`live.committed`):
they then read them in commit order (see `replay.py`). Each row records its
transaction (`txid`, migration 0007): on PostgreSQL a column default, on
SQLite the `live_clock`, bumped first thing in the insert transaction.
"""
from __future__ import annotations

import contextlib
import functools
import json
import threading
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from flask import current_app

from .. import live
from ..errors import database_away
from ..extensions import db
from ..ids import uuid7
from ..models import ACTIVITY_FIELDS, utcnow
from . import rollups
from .database import autocommit_connection, pipeline
from .firing import insert_firing_rules
from .partitions import KEY_SQL, EnsureTimer
from .retention import retention_periods
from .tables import activities, activity_key, activity_keys, public


# The time partitions this process writes into exist ahead (partitions.py).
_MONTHS_AHEAD = EnsureTimer()


@dataclass
class Stored:
    """The outcome of one posted event: the stored row, and whether it was already there."""

    activity: dict
    duplicate: bool


@functools.cache
def insert_statement(dialect: str):
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
    batcher = current_app.extensions.get("activityweb.ingest")
    if batcher is None:
        batcher = current_app.extensions.setdefault("activityweb.ingest", IngestBatcher())
    return batcher.submit(tenant_id, events)


def write_activities(jobs: list[tuple[int, list[dict]]]) -> list[list[Stored]]:
    """Store the events of several submissions (any tenants) in one multi-row
    INSERT ... ON CONFLICT DO NOTHING; one list of `Stored` per submission."""
    if db.engine.dialect.name == "postgresql":
        _MONTHS_AHEAD.check()
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
        inserted = insert_firing_rules(conn, unique_rows, _insert_rows)  # and the rules' firings, in one transaction
        missing: dict[int, list[tuple[str, str]]] = {}
        for (tenant_id, source, source_id), row in first_by_key.items():
            if row["id"] not in inserted:
                missing.setdefault(tenant_id, []).append((source, source_id))
        for tenant_id, keys in missing.items():
            for key, found in _rows_by_source_key(conn, tenant_id, keys).items():
                existing[(tenant_id, *key)] = found
        orphans = [row for key, row in first_by_key.items() if row["id"] not in inserted and key not in existing]
        if orphans and conn.dialect.name == "postgresql":  # keys whose event is gone (deleted by hand): they are stale, so the events are new
            _forget_keys(conn, orphans)
            inserted |= insert_firing_rules(conn, orphans, _insert_rows)
    live.committed({row["tenant_id"] for row in unique_rows if row["id"] in inserted})

    results = []
    for rows in job_rows:
        stored = []
        for row in rows:
            key = (row["tenant_id"], row["source"], row["source_id"])
            winner = first_by_key[key]
            if winner["id"] in inserted:
                stored.append(Stored(public(winner), duplicate=row is not winner))
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
        except Exception as exc:
            if len(batch) == 1 or database_away(exc):
                # Alone, or the database is away: each would fail the same way,
                # one connect timeout after another.
                for job in batch:
                    job.error = exc
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
# Its idempotency key goes first into activity_keys (partitioned `activities`
# cannot hold a unique key without the month in it, see store/partitions.py):
# only the events whose key was new are stored. A concurrent duplicate waits
# on the key's index entry, and finds it taken once the first one commits.
_PG_COLUMNS = ("tenant_id",) + ACTIVITY_FIELDS
_PG_INSERT = (
    "WITH t AS MATERIALIZED (SELECT * FROM unnest(" + ", ".join(
        f"%({c})b::{'text' if _PG_COLUMN_TYPES.get(c, 'text') == 'jsonb' else _PG_COLUMN_TYPES.get(c, 'text')}[]"
        for c in _PG_COLUMNS
    )
    + f") AS t({', '.join(_PG_COLUMNS)})), "
    "fresh AS (INSERT INTO activity_keys (key, activity_id) SELECT "
    + KEY_SQL.format(tenant="t.tenant_id", source="t.source", source_id="t.source_id")
    + ", t.id FROM t ON CONFLICT (key) DO NOTHING RETURNING activity_id) "
    f"INSERT INTO activities ({', '.join(_PG_COLUMNS)}, expires_at) "
    "SELECT " + ", ".join(
        f"t.{c}::jsonb" if _PG_COLUMN_TYPES.get(c) == "jsonb" else f"t.{c}" for c in _PG_COLUMNS
    )
    + ", t.occurred_at + make_interval(days => tenants.retention_days)"
    " FROM t JOIN fresh ON fresh.activity_id = t.id JOIN tenants ON tenants.id = t.tenant_id RETURNING id"
)


BUMP_CLOCK = sa.text("UPDATE live_clock SET value = value + 1 WHERE id = 1 RETURNING value")


def _insert_rows(conn, rows: list[dict], begin: bool = False) -> set[str]:
    """Insert rows, skipping idempotency-key conflicts; returns the ids inserted.

    `begin` (PostgreSQL, whose ingest connection is in autocommit): open a
    transaction with this insert, for writes that must commit with it (rules'
    firings). BEGIN goes in one pipeline with the INSERT: one wait, not two."""
    if conn.dialect.name != "postgresql":
        # The transaction's place in commit order: SQLite serialises writers,
        # so bumping the clock first holds the write lock until commit.
        txid = conn.execute(BUMP_CLOCK).scalar_one()
        keep = retention_periods(conn, {row["tenant_id"] for row in rows})
        for row in rows:
            row["expires_at"] = row["occurred_at"] + keep[row["tenant_id"]]
            row["txid"] = txid
        inserted = {r[0] for r in conn.execute(insert_statement(conn.dialect.name), rows)}
        # In this transaction, the rollups count what it commits (PostgreSQL: a trigger, see rollups.py).
        tally = rollups.Tally()
        for row in rows:
            if row["id"] in inserted:
                tally.add(row, row["tenant_id"])
        rollups.add_tally(conn, tally)
        return inserted
    params = {}
    for column in _PG_COLUMNS:
        values = [row[column] for row in rows]
        if column in ("tags", "data"):
            values = [json.dumps(v, separators=(",", ":"), ensure_ascii=False) for v in values]
        params[column] = values
    if not begin:
        return {str(r[0]) for r in conn.exec_driver_sql(_PG_INSERT, params)}
    with pipeline(conn) as raw:
        raw.execute("BEGIN")
        cursor = raw.execute(_PG_INSERT, params)
    return {str(r[0]) for r in cursor}


@contextlib.contextmanager
def _ingest_connection():
    """The connection an insert runs on, committed when the block ends.

    On PostgreSQL the INSERT is one statement whatever the batch size, so it
    runs in autocommit as its own transaction: a POST costs one round trip
    instead of BEGIN, INSERT, COMMIT. (Its NOTIFY comes from a trigger in the
    same statement; see migration 0002.) A repeat's stored row is read after
    that commit, which is what a concurrent winner needs anyway.
    """
    if db.engine.dialect.name == "postgresql":
        with autocommit_connection() as conn:
            yield conn
    else:
        with db.engine.begin() as conn:
            yield conn


def _forget_keys(conn, rows: list[dict]) -> None:
    """Delete the keys of these rows that no stored event has (PostgreSQL's key table)."""
    c = activities.c
    for row in rows:
        conn.execute(sa.delete(activity_keys).where(
            activity_keys.c.key == activity_key(row["tenant_id"], row["source"], row["source_id"]),
            ~sa.exists().where(c.tenant_id == row["tenant_id"], c.id == activity_keys.c.activity_id)))


def _rows_by_source_key(conn, tenant_id: int, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    found = {}
    c = activities.c
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        if conn.dialect.name == "postgresql":  # through the key table (see partitions.py)
            query = sa.select(activities).join(activity_keys, activity_keys.c.activity_id == c.id).where(
                c.tenant_id == tenant_id, activity_keys.c.key.in_([activity_key(tenant_id, *k) for k in chunk]))
        else:
            query = sa.select(activities).where(c.tenant_id == tenant_id, sa.tuple_(c.source, c.source_id).in_(chunk))
        for row in conn.execute(query).mappings():
            found[(row["source"], row["source_id"])] = public(row)
    return found

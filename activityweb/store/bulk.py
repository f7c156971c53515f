"""Bulk loading of trusted, generated events (`flask seed`): COPY on PostgreSQL."""
from __future__ import annotations

import itertools
import json
import queue
import threading
from datetime import datetime, timedelta

import sqlalchemy as sa

from ..extensions import db
from ..ids import uuid7
from ..models import ACTIVITY_FIELDS, utcnow
from . import partitions, rollups
from .database import dialect
from .ingest import BUMP_CLOCK, insert_statement
from .retention import retention_periods


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
    if dialect() != "postgresql":
        loaded = 0
        statement = insert_statement("sqlite")
        for chunk in _chunks(events, 1000):
            now = utcnow()
            txid = db.session.execute(BUMP_CLOCK).scalar_one()  # each chunk's place in the live log
            rows = [{**e, "id": uuid7(), "tenant_id": tenant_id, "received_at": now, "txid": txid,
                     "expires_at": e["occurred_at"] + keep} for e in chunk]
            db.session.execute(statement, rows)
            tally = rollups.Tally()
            for row in rows:
                tally.add(row, tenant_id)
            rollups.add_tally(db.session.connection(), tally)
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
    with engine.connect() as conn:
        keyed = partitions.is_partitioned(conn)
    # Partitioned, the idempotency keys have a table of their own (partitions.py): a duplicate fails the chunk.
    keys_sql = ("INSERT INTO activity_keys (key, activity_id) SELECT "
                + partitions.KEY_SQL.format(tenant="%(t)s::int", source="s", source_id="i")
                + ", id FROM unnest(%(s)s::text[], %(i)s::text[], %(id)s::uuid[]) AS u(s, i, id)")

    # The rollups trigger counts each chunk in its COPY's transaction.
    def writer():
        try:
            raw = engine.raw_connection()
        except BaseException as exc:
            failures.append(exc)
            raw = None
        try:
            conn = raw.driver_connection if raw else None
            while (item := chunks.get()) is not None:
                if failures:
                    continue
                chunk, keys = item
                try:
                    with conn.cursor() as cursor:
                        # Seed data is not news: the live NOTIFY trigger stays quiet.
                        cursor.execute("SET LOCAL activityweb.quiet = 'on'")
                        with cursor.copy(sql) as copy:
                            copy.write(chunk)
                        if keyed:
                            cursor.execute(keys_sql, keys)
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
            ids = [uuid7() for _ in chunk]
            lines = [
                prefix + activity_id + "\t" + "\t".join([fmt(e[c]) for c, fmt in _COPY_FIELDS])
                + "\t" + _copy_time(e["occurred_at"] + keep) for activity_id, e in zip(ids, chunk)
            ]
            keys = {"t": tenant_id, "s": [e["source"] for e in chunk], "i": [e["source_id"] for e in chunk], "id": ids}
            chunks.put((("\n".join(lines) + "\n").encode(), keys))
            loaded += len(chunk)
    finally:
        for _ in threads:
            chunks.put(None)
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return loaded


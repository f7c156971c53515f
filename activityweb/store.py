"""Every read and write of activities.

Callers hand in validated values (see `schemas.py`) and a tenant id taken from
the credential; every query here is scoped by that tenant. Activity rows are
read and written with SQLAlchemy Core: the feed reads many rows and the ingest
path writes many, and neither needs ORM identity tracking.
"""
from __future__ import annotations

import itertools
import json
import queue
import threading
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from . import live
from .extensions import db
from .ids import is_uuid, uuid7
from .models import ACTIVITY_FIELDS, Activity, utcnow
from .schemas import ActivityFilter, encode_cursor

activities = Activity.__table__
_FEED_ORDER = (activities.c.occurred_at.desc(), activities.c.id.desc())


def _dialect() -> str:
    return db.engine.dialect.name


# ------------------------------------------------------------------ writes


@dataclass
class Stored:
    """The outcome of one posted event: the stored row, and whether it was already there."""

    activity: dict
    duplicate: bool


def _insert_statement(dialect: str):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert(activities)
        .on_conflict_do_nothing(index_elements=["tenant_id", "source", "source_id"])
        .returning(activities.c.id)
    )


def add_activities(tenant_id: int, events: list[dict], *, publish: bool = True) -> list[Stored]:
    """Store events idempotently and commit; returns one `Stored` per input, in order.

    All new rows go in one multi-row INSERT ... ON CONFLICT DO NOTHING: a
    repeat of (tenant, source, source_id), earlier or concurrent, inserts
    nothing and is answered with the row that won. Live subscribers hear of
    the new rows only once the transaction has committed.
    """
    now = utcnow()
    rows: list[dict] = []
    first_by_key: dict[tuple[str, str], dict] = {}
    for event in events:
        activity_id = uuid7()
        row = dict(event)
        row["id"] = activity_id
        row["tenant_id"] = tenant_id
        row["source_id"] = event.get("source_id") or activity_id
        row["occurred_at"] = event.get("occurred_at") or now
        row["received_at"] = now
        rows.append(row)
        first_by_key.setdefault((row["source"], row["source_id"]), row)

    unique_rows = list(first_by_key.values())
    session = db.session
    try:
        inserted = {r[0] for r in session.execute(_insert_statement(_dialect()), unique_rows)}
        existing: dict[tuple[str, str], dict] = {}
        missing = [key for key, row in first_by_key.items() if row["id"] not in inserted]
        if missing:
            existing = _rows_by_source_key(tenant_id, missing)
        if publish and inserted:
            live.announce(session, tenant_id, [r["id"] for r in unique_rows if r["id"] in inserted])
        session.commit()
    except BaseException:
        session.rollback()
        raise
    if publish and inserted:
        live.delivered(tenant_id, [_public(r) for r in unique_rows if r["id"] in inserted])

    results = []
    for row in rows:
        key = (row["source"], row["source_id"])
        winner = first_by_key[key]
        if winner["id"] in inserted:
            results.append(Stored(_public(winner), duplicate=row is not winner))
        else:
            results.append(Stored(existing[key], duplicate=True))
    return results


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
    if _dialect() != "postgresql":
        loaded = 0
        statement = _insert_statement("sqlite")
        for chunk in _chunks(events, 1000):
            now = utcnow()
            rows = [{**e, "id": uuid7(), "tenant_id": tenant_id, "received_at": now} for e in chunk]
            db.session.execute(statement, rows)
            db.session.commit()
            loaded += len(rows)
        return loaded
    db.session.commit()  # our own connections below must see the tenant
    loaded = _copy_in_parallel(tenant_id, events, chunk_size, connections)
    # Fresh statistics, or the planner picks plans for the empty table it last saw.
    db.session.execute(sa.text("ANALYZE activities"))
    db.session.commit()
    return loaded


_COPY_COLUMNS = ("tenant_id", "received_at", "id") + tuple(c for c in ACTIVITY_FIELDS if c not in ("id", "received_at"))
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


def _copy_in_parallel(tenant_id: int, events, chunk_size: int, connections: int) -> int:
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
                    with conn.cursor() as cursor, cursor.copy(sql) as copy:
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
                prefix + uuid7() + "\t" + "\t".join([fmt(e[c]) for c, fmt in _COPY_FIELDS]) for e in chunk
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


def _rows_by_source_key(tenant_id: int, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    found = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        query = sa.select(activities).where(
            activities.c.tenant_id == tenant_id,
            sa.tuple_(activities.c.source, activities.c.source_id).in_(chunk),
        )
        for row in db.session.execute(query).mappings():
            found[(row["source"], row["source_id"])] = _public(row)
    return found


def _public(row) -> dict:
    """A row as the API and templates see it: the documented fields, no tenant id."""
    return {name: row[name] for name in ACTIVITY_FIELDS}


# ------------------------------------------------------------------- reads


@dataclass
class Page:
    items: list[dict]
    next_cursor: str | None


def apply_filter(query, flt: ActivityFilter):
    """Narrow a select over `activities` by a filter. Must agree with `ActivityFilter.matches`."""
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
) -> Page:
    """One keyset page in feed order, starting after the (occurred_at, id) `after`."""
    query = apply_filter(sa.select(activities).where(activities.c.tenant_id == tenant_id), flt)
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
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(last["occurred_at"], last["id"])
    return Page(items, next_cursor)


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


def count_activities(tenant_id: int) -> int:
    return db.session.execute(
        sa.select(sa.func.count()).select_from(activities).where(activities.c.tenant_id == tenant_id)
    ).scalar_one()

"""A filter as SQL: the WHERE clauses of every read the feed's filter narrows."""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..schemas import ActivityFilter
from .database import dialect
from .tables import activities


def apply_filter(query, flt: ActivityFilter, reader=None):
    """Narrow a select over `activities` by a filter. Must agree with
    `ActivityFilter.matches`. `read` needs the reader it is relative to
    (a `reading.Reader`)."""
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
        query = query.where(sa.not_(reader.unread()) if flt.read else reader.unread())
    return query


def _has_any_tag(tags: tuple[str, ...]):
    if dialect() == "postgresql":
        tags_jsonb = sa.type_coerce(activities.c.tags, postgresql.JSONB)
        return sa.or_(*(tags_jsonb.contains([t]) for t in tags))
    each = sa.func.json_each(activities.c.tags).table_valued("value")
    return sa.exists().where(each.c.value.in_(tags))


def _full_text(terms: list[str]):
    """Every word of the search box as a prefix (search as you type).

    Terms are alphanumeric (`schemas.search_terms`), so neither query syntax can be injected.
    """
    if dialect() == "postgresql":
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


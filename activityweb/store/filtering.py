"""A filter as SQL: each kind of field the filter declares (`filters.py`) gets its clause here.

`apply_filter` narrows any select over `activities` field by field, so it
agrees with `ActivityFilter.matches`, the same table evaluated in memory
(`tests/test_filter_table.py` checks both on both databases).
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..filters import ActivityFilter, AnyTag, Moment, OneOf, ReadState, Search, TypeName, Within, search_terms, split_types
from .database import dialect
from .tables import activities


def apply_filter(query, flt: ActivityFilter, reader=None):
    """Narrow a select over `activities` by a filter. `read` needs the reader
    it is relative to (a `reading.Reader`)."""
    for declared, value in flt.active:
        query = query.where(CLAUSES[type(declared.kind)](declared.kind, value, reader))
    return query


def _one_of(kind: OneOf, values: tuple[str, ...], _reader):
    column = activities.c[kind.column]
    return column == values[0] if len(values) == 1 else column.in_(values)


def _type_name(kind: TypeName, values: tuple[str, ...], _reader):
    column = activities.c[kind.column]
    included, excluded = split_types(values)
    clause = _types(column, included) if included else sa.true()
    return sa.and_(clause, sa.not_(_types(column, excluded))) if excluded else clause


def _types(column, patterns: list[str]):
    exact = [t for t in patterns if not t.endswith(".*")]
    clauses = [column.in_(exact)] if exact else []
    for prefix in (t[:-1] for t in patterns if t.endswith(".*")):
        # 'tool.' <= type < 'tool/' ('/' follows '.'): a btree range, unlike LIKE.
        clauses.append(sa.and_(column >= prefix, column < prefix[:-1] + "/"))
    return sa.or_(*clauses)


def _any_tag(kind: AnyTag, tags: tuple[str, ...], _reader):
    column = activities.c[kind.column]
    if dialect() == "postgresql":
        tags_jsonb = sa.type_coerce(column, postgresql.JSONB)
        return sa.or_(*(tags_jsonb.contains([t]) for t in tags))
    each = sa.func.json_each(column).table_valued("value")
    return sa.exists().where(each.c.value.in_(tags))


def _moment(kind: Moment, moment, _reader):
    column = activities.c[kind.column]
    return column >= moment if kind.after else column < moment


def _within(kind: Within, value: str, _reader):
    # Now, at the query: the range stays relative however old the link is.
    return activities.c[kind.column] >= kind.start(value)


def _search(kind: Search, text: str, _reader):
    """Every word of the search box as a prefix (search as you type), over
    the full-text index of `kind.columns` (made by the migrations).

    Terms are alphanumeric (`filters.search_terms`), so neither query syntax can be injected.
    """
    terms = search_terms(text)
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


def _read_state(_kind: ReadState, read: bool, reader):
    if reader is None:
        raise ValueError("filtering on read state needs a reader")
    return sa.not_(reader.unread()) if read else reader.unread()


# The clause of each kind of field, by the kind's class.
CLAUSES = {OneOf: _one_of, TypeName: _type_name, AnyTag: _any_tag, Moment: _moment, Search: _search,
           ReadState: _read_state, Within: _within}

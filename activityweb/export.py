"""Exports: the events a filter matches, as CSV or NDJSON, streamed.

The API (`/api/v1/activities/export`), the dashboard (`/export`, with the
session) and `flask export` all write through here, so the three agree.
Rows come from `store.stream_activities` as they are sent and leave in
chunks of about CHUNK_BYTES: memory stays flat for a million rows.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Iterable, Iterator

from flask import Response, stream_with_context

from . import store
from .errors import InvalidQuery
from .filters import ActivityFilter
from .models import ACTIVITY_FIELDS, utcnow
from .serialize import activity_json

FORMATS = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
# Each line of NDJSON is an event exactly as the list endpoint shows it; CSV
# has the same fields as columns.
CSV_COLUMNS = ("id", "tenant", *ACTIVITY_FIELDS[1:])
CHUNK_BYTES = 64 * 1024
# A spreadsheet runs a cell that starts with one of these as a formula; such
# cells get a leading apostrophe (OWASP's advice for CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def parse_format(args) -> str:
    fmt = args.get("format", "").strip() or "csv"
    if fmt not in FORMATS:
        raise InvalidQuery("format", f"is one of {', '.join(FORMATS)}")
    return fmt


def csv_cell(value) -> str:
    """One CSV cell: JSON for tags and data, empty for null, formulas defused."""
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_lines(events: Iterable[dict], slug: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for activity in events:
        shown = activity_json(activity, slug)
        writer.writerow([csv_cell(shown[column]) for column in CSV_COLUMNS])
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def ndjson_lines(events: Iterable[dict], slug: str) -> Iterator[str]:
    lines, size = [], 0
    for activity in events:
        line = json.dumps(activity_json(activity, slug), ensure_ascii=False, separators=(",", ":")) + "\n"
        lines.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield "".join(lines)
            lines, size = [], 0
    yield "".join(lines)


WRITERS = {"csv": csv_lines, "ndjson": ndjson_lines}


def exported(tenant_id: int, slug: str, flt: ActivityFilter, fmt: str, reader=None) -> Iterator[str]:
    """The export of what `flt` matches in a tenant, in chunks of text
    (`reader`: whose read state a `read` filter means)."""
    return WRITERS[fmt](store.stream_activities(tenant_id, flt, reader), slug)


def export_response(principal, flt: ActivityFilter, fmt: str) -> Response:
    """A streamed download of `exported`."""
    name = f"activities-{principal.tenant_slug}-{utcnow():%Y%m%dT%H%M%SZ}.{fmt}"
    chunks = exported(principal.tenant_id, principal.tenant_slug, flt, fmt, store.reader_of(principal))
    return Response(stream_with_context(chunks), content_type=FORMATS[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})

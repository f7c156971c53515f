"""GET /api/v1/activities/export: what the list's filters match, as CSV or NDJSON."""
from flask import g, request

from ..auth import require
from ..export import export_response, parse_format
from ..filters import parse_filter
from . import bp


@bp.get("/activities/export")
@require("read")
def export_activities():
    flt = parse_filter(request.args, extra_keys=frozenset({"format"}))
    return export_response(g.principal, flt, parse_format(request.args))

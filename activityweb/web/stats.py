"""The stats page: the shape of what the feed's filter matches, drawn."""
from __future__ import annotations

from flask import request

from .. import store
from ..auth import web_principal
from ..errors import InvalidQuery
from ..filters import ActivityFilter, parse_filter
from ..schemas import parse_bucket
from . import bp, charts
from .reading import web_reader
from .views import render_page_or_partial


@bp.get("/stats")
def stats():
    principal = web_principal()
    try:
        flt = parse_filter(request.args, strict=False)
        found = store.activity_stats(principal.tenant_id, flt, parse_bucket(request.args),
                                     reader=web_reader())
    except InvalidQuery as exc:  # a half-typed filter: say what is wrong where the charts would be
        return render_page_or_partial("stats/index.html", "stats/_results.html", 400, flt=ActivityFilter(),
                                      stats=None, error=exc)
    usage = store.usage.usage_report(principal.tenant_id, flt.since, flt.until, bucket=found.bucket)
    return render_page_or_partial("stats/index.html", "stats/_results.html", flt=flt, stats=found, error=None,
                                  usage=usage,
                                  charts=charts.for_stats(found), top=charts.top_lists(found, flt))

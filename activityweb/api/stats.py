"""GET /api/v1/activities/stats: the shape of what the feed's filters match."""
from flask import g, jsonify, request

from .. import store
from ..auth import require
from ..filters import parse_filter
from ..schemas import parse_bucket
from ..serialize import StatsOut
from . import bp


@bp.get("/activities/stats")
@require("read")
def activity_stats():
    flt = parse_filter(request.args, extra_keys=frozenset({"bucket"}))
    stats = store.activity_stats(g.principal.tenant_id, flt, parse_bucket(request.args),
                                 reader=store.reader_of(g.principal))
    return jsonify(StatsOut.of(stats).model_dump())

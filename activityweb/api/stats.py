"""GET /api/v1/activities/stats: the shape of what the feed's filters match."""
from flask import g, jsonify, request

from .. import store
from ..auth import require
from ..filters import parse_filter
from ..schemas import parse_bucket
from ..serialize import iso
from . import bp


@bp.get("/activities/stats")
@require("read")
def activity_stats():
    flt = parse_filter(request.args, extra_keys=frozenset({"bucket"}))
    stats = store.activity_stats(g.principal.tenant_id, flt, parse_bucket(request.args),
                                 reader=store.reader_of(g.principal))
    return jsonify(stats_json(stats))


def stats_json(stats: store.Stats) -> dict:
    def counts(pairs):
        return [{"value": value, "count": count} for value, count in pairs]

    def durations(d: store.Durations) -> dict:
        return {"count": d.count, "p50": d.p50, "p95": d.p95, "max": d.max}

    return {
        "total": stats.total,
        "first_at": iso(stats.first_at),
        "last_at": iso(stats.last_at),
        "by_type": counts(stats.by_type),
        "by_source": counts(stats.by_source),
        "by_status": counts(stats.by_status),
        "by_priority": counts(stats.by_priority),
        "failures": {"failed": stats.failed, "succeeded": stats.succeeded, "rate": stats.failure_rate},
        "series": {"bucket": stats.bucket, "points": [
            {"at": iso(p.at), "count": p.count, "failed": p.failed, "by_source": p.by_source} for p in stats.series]},
        "top_actors": [{"id": i, "name": name, "count": n} for i, name, n in stats.top_actors],
        "top_entities": [{"type": t, "id": i, "name": name, "count": n} for t, i, name, n in stats.top_entities],
        "duration_ms": durations(stats.durations),
        "tools": [{"tool": tool, **durations(d)} for tool, d in stats.tools],
    }

"""GET /api/v1/usage/stats: Claude Code's cost and tokens (from OpenTelemetry) over a period."""
from flask import g, jsonify, request

from .. import store
from ..auth import require
from ..errors import ApiError
from ..integrations.shaping import parse_moment
from . import bp


@bp.get("/usage/stats")
@require("read")
def usage_stats():
    for key in request.args:
        if key not in ("since", "until", "bucket"):
            raise ApiError(400, "invalid_parameter", f"Unknown parameter `{key}`; usage takes since, until and bucket.",
                           [{"field": key, "message": "unknown parameter"}])
    since, until = (_moment(name) for name in ("since", "until"))
    bucket = request.args.get("bucket", "day")
    if bucket not in ("day", "hour"):
        raise ApiError(400, "invalid_parameter", "`bucket` is day or hour.", [{"field": "bucket", "message": "day or hour"}])
    return jsonify(store.usage.usage_report(g.principal.tenant_id, since, until, bucket).as_json())


def _moment(name: str):
    text = request.args.get(name)
    if text is None:
        return None
    moment = parse_moment(text)
    if moment is None:
        raise ApiError(400, "invalid_parameter", f"`{name}` is an RFC 3339 time with an offset.",
                       [{"field": name, "message": "not a time"}])
    return moment

"""Read state: each caller's own, per token (see `store.reader_of`)."""
from flask import g, jsonify, request

from .. import store
from ..auth import require
from ..errors import found
from ..filters import parse_filter
from ..schemas import parse_up_to
from . import bp


@bp.patch("/activities/<activity_id>/read")
@require("read")
def mark_read(activity_id: str):
    reader = store.reader_of(g.principal)
    found(store.mark_read(reader, activity_id), f"No activity {activity_id!r} in this tenant.")
    return jsonify({"id": activity_id, "read": True, "unread_count": store.unread_count(reader)})


@bp.post("/activities/read-all")
@require("read")
def mark_all_read():
    flt = parse_filter(request.args, extra_keys=frozenset({"up_to"}))
    reader = store.reader_of(g.principal)
    store.mark_all_read(reader, flt, up_to=parse_up_to(request.args))
    return jsonify({"unread_count": store.unread_count(reader)})

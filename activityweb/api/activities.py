"""Activities: ingest, list, get. Views parse and answer; `store` does the work."""
from flask import current_app, g, jsonify, request

from .. import store
from ..auth import require
from ..errors import found
from ..filters import parse_filter
from ..schemas import parse_events, parse_limit
from ..serialize import activity_json, next_cursor, parse_cursor
from . import bp


@bp.post("/activities")
@require("ingest")
def create_activities():
    events, is_batch = parse_events(request.get_data(cache=False), current_app.config["MAX_BATCH"])
    results = store.add_activities(g.principal.tenant_id, events)
    slug = g.principal.tenant_slug
    if not is_batch:
        result = results[0]
        body = activity_json(result.activity, slug)
        if result.duplicate:
            body["duplicate"] = True
            return jsonify(body), 200
        return jsonify(body), 201
    return batch_answer(results, slug)


def batch_answer(results: list[store.Stored], slug: str):
    """`{"items", "created", "duplicates"}`: 201 if anything was new, else 200."""
    items = [{**activity_json(r.activity, slug), "duplicate": r.duplicate} for r in results]
    created = sum(not r.duplicate for r in results)
    body = {"items": items, "created": created, "duplicates": len(results) - created}
    return jsonify(body), 201 if created else 200


@bp.get("/activities")
@require("read")
def list_activities():
    flt = parse_filter(request.args)
    page = store.list_activities(g.principal.tenant_id, flt, limit=parse_limit(request.args),
                                 after=parse_cursor(request.args), reader=store.reader_of(g.principal))
    slug = g.principal.tenant_slug
    return jsonify({"items": [activity_json(a, slug) for a in page.items], "next_cursor": next_cursor(page)})


@bp.get("/activities/<activity_id>")
@require("read")
def get_activity(activity_id: str):
    activity = found(store.get_activity(g.principal.tenant_id, activity_id),
                     f"No activity {activity_id!r} in this tenant.")
    return jsonify(activity_json(activity, g.principal.tenant_slug))

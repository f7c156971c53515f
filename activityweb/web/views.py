"""Pages. Each URL renders a whole page, or for htmx (HX-Request) the partial
the page includes, so there is one source of truth per piece."""
from __future__ import annotations

from flask import abort, make_response, render_template, request

from .. import store
from ..auth import web_principal
from ..errors import InvalidQuery
from ..export import export_response, parse_format
from ..filters import ActivityFilter, parse_filter
from ..ids import uuid7_floor
from ..models import utcnow
from ..serialize import parse_cursor
from . import bp
from .reading import web_reader

PAGE_SIZE = 50


def render_page_or_partial(page_template: str, partial: str, status: int = 200, **context):
    """The whole page, or for an htmx request the partial the page includes."""
    template = partial if request.headers.get("HX-Request") else page_template
    response = make_response(render_template(template, **context), status)
    response.vary.add("HX-Request")
    return response


@bp.get("/")
def feed():
    principal = web_principal()
    try:
        flt = parse_filter(request.args, strict=False)
        after = parse_cursor(request.args)
    except InvalidQuery as exc:
        # A half-typed filter: show what is wrong where the results would be.
        return render_page_or_partial("feed/index.html", "feed/_results.html", 400, flt=ActivityFilter(),
                                      page=None, error=exc, live_since=None, pruned=None)
    reader = web_reader()
    page = store.list_activities(principal.tenant_id, flt, limit=PAGE_SIZE, after=after, reader=reader)
    # Retention: the first page says when older events were deleted, and up to when.
    pruned = None if after else store.last_prune(principal.tenant_id)
    context = dict(flt=flt, page=page, unread_ids=reader.unread_among([a["id"] for a in page.items]), error=None,
                   live_since=uuid7_floor(utcnow()), after=after, pruned=pruned)
    partial = "feed/_page.html" if after else "feed/_results.html"
    return render_page_or_partial("feed/index.html", partial, **context)


@bp.get("/export")
def export():
    """What the feed shows for its filter, as a download: the API's export, with the session."""
    flt = parse_filter(request.args, strict=False)
    return export_response(web_principal(), flt, parse_format(request.args))


@bp.get("/activities/<activity_id>")
def activity(activity_id: str):
    """One event. A GET changes nothing (a prefetch, a crawler or another
    site's <img> must not mark anything read): the page, once shown, marks it
    read with a POST (CSRF-checked), as opening a mail does."""
    principal = web_principal()
    found = store.get_activity(principal.tenant_id, activity_id)
    if found is None:
        abort(404, "No such activity in this tenant.")
    return render_template("activities/detail.html", a=found, unread=bool(web_reader().unread_among([found["id"]])))

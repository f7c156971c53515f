"""Pages. Each URL renders a whole page, or for htmx (HX-Request) the partial
the page includes, so there is one source of truth per piece."""
from __future__ import annotations

from flask import abort, make_response, render_template, request

from .. import live, store
from ..auth import web_principal
from ..errors import InvalidQuery
from ..export import export_response, parse_format
from ..filters import ActivityFilter, parse_filter
from ..ids import uuid7_floor
from ..models import utcnow
from ..serialize import parse_cursor
from . import bp
from ..grouping import group_by_day
from .grouped import grouping_of
from .present import feed_url
from .reading import web_reader
from .saved_views import views_of_reader

PAGE_SIZE = 50
# "Load more" records how many pages the feed shows (depth=N in the URL); a
# reload or a back from an event renders that many again, up to this.
MAX_DEPTH = 20


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
                                      page=None, error=exc, live_since=None, page_since=None, pruned=None, depth=1,
                                      saved=[], grouping=None)
    depth = min(max(request.args.get("depth", 1, type=int) or 1, 1), MAX_DEPTH)
    reader = web_reader()
    # Before the page's read: its socket resumes from there (an event committed
    # in between comes again, and the page swaps it in place by id).
    live_since = live.position_now()
    # The first page comes back `depth` pages deep; a later page is one page.
    limit = PAGE_SIZE if after else PAGE_SIZE * depth
    page = store.list_activities(principal.tenant_id, flt, limit=limit, after=after, reader=reader)
    # Retention: the first page says when older events were deleted, and up to when.
    pruned = None if after else store.last_prune(principal.tenant_id)
    ids = [a["id"] for a in page.items]
    context = dict(flt=flt, page=page, unread_ids=reader.unread_among(ids), error=None,
                   live_since=live_since, page_since=uuid7_floor(utcnow()), after=after, pruned=pruned, depth=depth,
                   session_names=store.conversation_names(principal.tenant_id,
                                                          {a["conversation_id"] for a in page.items}))
    context["grouping"] = grouping = grouping_of()
    if grouping:
        context["days"] = group_by_day(page.items)
    partial = "feed/_page.html" if after else "feed/_results.html"
    if not request.headers.get("HX-Request"):
        context["saved"] = views_of_reader()  # the sidebar, on the page only
    response = render_page_or_partial("feed/index.html", partial, **context)
    if after and request.headers.get("HX-Request"):
        # The address bar keeps the depth (not the cursor): back from an event shows every page loaded.
        response.headers["HX-Replace-Url"] = feed_url(flt, depth=depth, group=grouping)
    return response


@bp.get("/export")
def export():
    """What the feed shows for its filter, as a download: the API's export, with the session."""
    flt = parse_filter(request.args, strict=False)
    return export_response(web_principal(), flt, parse_format(request.args))


@bp.get("/activities/<activity_id>")
def activity(activity_id: str):
    """One event. A GET changes nothing (a prefetch, a crawler or another
    site's <img> must not mark anything read): the page, once shown, marks it
    read with a POST (CSRF-checked, `reading.mark_read`, which reads the tool
    call's other event too), as opening a mail does."""
    principal = web_principal()
    found = store.get_activity(principal.tenant_id, activity_id)
    if found is None:
        abort(404, "No such activity in this tenant.")
    names = store.conversation_names(principal.tenant_id, [found["conversation_id"]]) if found["conversation_id"] else {}
    return render_template("activities/detail.html", a=found, session_names=names,
                           unread=bool(web_reader().unread_among([found["id"]])))

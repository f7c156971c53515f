"""Read state on the dashboard: mark one event or what the filter shows as
read. The header's unread count is `context.py`'s, kept live by `insight_sockets`."""
from __future__ import annotations

import json

from flask import abort, g, redirect, render_template, request

from .. import store
from ..auth import web_principal
from ..filters import parse_filter
from ..schemas import parse_up_to
from . import bp
from .present import call_key, feed_url


def web_reader() -> store.Reader:
    """The dashboard user's read state, one per request, so the page and the
    header's unread count share one read of its "read up to" cursor."""
    if "web_reader" not in g:
        g.web_reader = store.reader_of(web_principal())
        store.start_reading(g.web_reader)  # a first visit: what came before it is not "unread"
    return g.web_reader


def unread_state(reader: store.Reader) -> dict:
    """The header's unread count (of feed rows) and the running calls among
    them: their outcome, arriving live, takes the same row and adds nothing
    (reading/_unread.html hands both to the page)."""
    return {"unread_count": store.unread_count(reader),
            "running_calls": [call_key(a) for a in store.unread_running_calls(reader)]}


def read_row(reader: store.Reader, activity_id: str) -> dict | None:
    """Mark an event read, and with a tool call's row, the call's other event too."""
    activity = store.mark_read(reader, activity_id)
    if activity is not None and call_key(activity):
        store.mark_call_read(reader, activity)
    return activity


@bp.post("/activities/<activity_id>/read")
def mark_read(activity_id: str):
    reader = web_reader()
    activity = read_row(reader, activity_id)
    if activity is None:
        abort(404, "No such activity in this tenant.")
    return render_template("reading/_marked.html", a=activity, unread=False, **unread_state(reader))


@bp.post("/read-all")
def mark_all_read():
    """Marks what the feed shows for its filter, up to the newest event the page has."""
    reader = web_reader()
    flt = parse_filter(request.args, strict=False)
    up_to = parse_up_to(request.form)
    store.mark_all_read(reader, flt, up_to)
    if not request.headers.get("HX-Request"):
        return redirect(feed_url(flt))
    body = render_template("reading/_unread.html", oob=True, **unread_state(reader))
    return body, {"HX-Trigger": json.dumps({"activityweb:read-all": {"upTo": up_to or ""}})}

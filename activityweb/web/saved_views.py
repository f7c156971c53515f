"""Saved views: a person's named filters, listed in the feed's sidebar.

A view is the feed's query string (the filter, as `to_args` prints it), so
opening one is opening that URL; saving under an existing name replaces it.
"""
from __future__ import annotations

from urllib.parse import urlencode

from flask import abort, flash, redirect, request, url_for

from .. import store
from ..filters import parse_filter
from . import bp
from .present import feed_url
from .reading import web_reader

MAX_NAME_CHARS = 100


@bp.post("/views")
def save_view():
    reader = web_reader()
    flt = parse_filter(request.args, strict=False)
    name = " ".join(request.form.get("name", "").split())[:MAX_NAME_CHARS]
    if not name:
        flash("A saved view needs a name.", "error")
        return redirect(feed_url(flt))
    if flt.is_empty():
        flash("Set a filter first: a saved view is a filter with a name.", "error")
        return redirect(feed_url(flt))
    if store.save_view(reader.tenant_id, reader.key, name, urlencode(flt.to_args())) is None:
        flash(f"You have {store.saved_views_max()} saved views already; delete one first.", "error")
    return redirect(feed_url(flt), 303)


@bp.post("/views/<id:view_id>/delete")
def delete_view(view_id: int):
    reader = web_reader()
    if not store.delete_view(reader.tenant_id, reader.key, view_id):
        abort(404, "No such saved view of yours.")
    return redirect(request.form.get("back") if (request.form.get("back") or "").startswith("/?")
                    else url_for("web.feed"), 303)


def views_of_reader() -> list[dict]:
    """The reader's saved views, each with the URL that opens it."""
    reader = web_reader()
    return [{**view, "url": url_for("web.feed") + "?" + view["query"]}
            for view in store.saved_views(reader.tenant_id, reader.key)]

"""What every page's header shows, worked out once per request in one
context processor: who is looking, their unread count, and the tenants
they can switch to. Templates read these values; none runs a query.

The view decides who is looking (`auth.web_principal`, which every
dashboard view calls first); this reads that answer. The header's figures
are for pages only: an htmx partial, a socket's message and an error page
(the database may be what failed) ask nothing of the database here.
"""
from __future__ import annotations

from flask import g, request

from .. import live, store
from . import bp
from .reading import unread_state, web_reader


@bp.app_context_processor
def page_context() -> dict:
    principal = g.get("web_principal")
    if principal is None or g.get("error_page"):
        return {}
    if not _is_page():
        return {"principal": principal}
    if "page_header" not in g:
        g.page_header = {"unread_badge": _unread_badge(),
                         "tenant_choices": store.memberships_of(principal.user_id) if principal.user_id else []}
    return {"principal": principal, **g.page_header}


def _is_page() -> bool:
    return not request.headers.get("HX-Request") and request.headers.get("Upgrade", "").lower() != "websocket"


def _unread_badge() -> dict:
    """The header's unread count, and the receive point after which its
    socket counts arrivals (taken after the count: an event it misses is
    one too few, never one counted twice)."""
    state = unread_state(web_reader())
    return {"count": state["unread_count"], "running_calls": state["running_calls"], "since": live.position_now()}

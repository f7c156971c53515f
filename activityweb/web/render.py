"""Rendering events for live messages, once per event per process.

A burst reaches many sockets; each event's HTML (`feed/_event.html`, the
partial the page uses) is rendered once here and reused for every socket and
filter that receives it.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from flask import render_template
from markupsafe import Markup

from .present import call_key

_CACHE_SIZE = 4096
_cache: "OrderedDict[str, Markup]" = OrderedDict()
_lock = threading.Lock()


def event_html(activity: dict) -> Markup:
    key = activity["id"]
    with _lock:
        html = _cache.get(key)
        if html is not None:
            _cache.move_to_end(key)
            return html
    # An event arriving live is unread by every reader, so one rendering serves all.
    html = Markup(render_template("feed/_event.html", a=activity, unread=True))
    with _lock:
        _cache[key] = html
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return html


def live_message(events: list[dict]) -> str:
    """One WebSocket message for a batch: newest first, prepended to the feed.
    A tool call's start and outcome share a row (`present.call_key`); when a
    batch has both, only the outcome is sent, so the row ends done."""
    outcomes = {key for a in events if (key := call_key(a)) and a.get("status") != "started"}
    shown = [a for a in events if not (a.get("status") == "started" and call_key(a) in outcomes)]
    items = [event_html(a) for a in sorted(shown, key=lambda a: a["id"], reverse=True)]
    return render_template("feed/_live.html", items=items)

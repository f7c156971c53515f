"""How an activity looks on the page: family, icon, times, durations, links.

Template filters and globals only; they read an activity dict and never the
database.
"""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from urllib.parse import urlsplit

from flask import url_for

from ..filters import FIELDS, ActivityFilter
from ..serialize import iso, next_cursor
from ..store import UNREAD_COUNT_CAP

# First match wins: (type prefix, family, icon). The family names a CSS class
# (colour) and a group people recognise at a glance. Icons are plain symbols
# that common fonts have, so they render without an icon font or emoji.
FAMILIES = (
    ("claude.tool.", "tool", "⚒"),
    ("claude.prompt.", "prompt", "❝"),
    ("claude.", "agent", "◈"),
    ("tool.", "tool", "⚒"),
    ("deployment.", "deploy", "▲"),
    ("deploy.", "deploy", "▲"),
    ("project.", "project", "▣"),
    ("database.", "project", "◫"),
    ("endpoints.", "project", "⇄"),
    ("github.", "git", "◆"),
    ("lead.", "lead", "★"),
    ("deal.", "lead", "$"),
    ("contact.", "lead", "☺"),
    ("system.", "system", "⚙"),
)
SOURCE_FAMILIES = {
    "claude_code": ("agent", "◈"), "github": ("git", "◆"), "hubspot": ("lead", "★"),
    "salesforce": ("lead", "★"), "system": ("system", "⚙"),
}
DEFAULT_FAMILY = ("event", "●")


def family_of(activity: dict) -> tuple[str, str]:
    kind = activity["type"]
    for prefix, family, icon in FAMILIES:
        if kind.startswith(prefix):
            return family, icon
    return SOURCE_FAMILIES.get(activity["source"], DEFAULT_FAMILY)


def is_important(activity: dict) -> bool:
    return activity["priority"] in ("high", "critical") or activity.get("status") == "failed"


# The one rule for "5 min ago". The server renders it (`relative_time`); the
# browser only refreshes the text as time passes, from this same data, which
# every page carries (base.html's <meta name="relative-time">; applied by
# static/relative-time.js). Steps: [below this many seconds ago, the text,
# the unit {n} counts in seconds, "nearest" (half up) or "floor"]. Older
# than the last step: the date in UTC, with its year if not this year's.
RELATIVE_TIME = {
    "future": "in the future",
    "steps": [
        [45, "just now", 1, "floor"],
        [3600, "{n} min ago", 60, "nearest"],
        [86400, "{n} h ago", 3600, "nearest"],
        [2 * 86400, "yesterday", 1, "floor"],
        [7 * 86400, "{n} days ago", 86400, "floor"],
    ],
    "months": ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
}


def relative_time(moment: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return RELATIVE_TIME["future"]
    for below, text, unit, rounding in RELATIVE_TIME["steps"]:
        if seconds < below:
            count = math.floor(seconds / unit + (0.5 if rounding == "nearest" else 0))
            return text.replace("{n}", str(max(count, 1)))
    moment, now = moment.astimezone(timezone.utc), now.astimezone(timezone.utc)
    day = f"{RELATIVE_TIME['months'][moment.month - 1]} {moment.day}"
    return day if moment.year == now.year else f"{day}, {moment.year}"


def absolute_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(ms: float | None) -> str:
    if ms is None:
        return ""
    ms = round(ms)  # percentiles interpolate between whole milliseconds
    if ms < 1000:
        return f"{ms} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    minutes, seconds = divmod(round(ms / 1000), 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def unread_label(count: int) -> str:
    return f"{UNREAD_COUNT_CAP}+" if count > UNREAD_COUNT_CAP else str(count)


def pretty_json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def filter_args(flt: ActivityFilter | None = None, **changes) -> dict[str, list[str]]:
    """A filter as `url_for` arguments, with some keys replaced (None removes one)."""
    args: dict[str, list[str]] = {}
    for key, value in (flt or ActivityFilter()).to_args():
        args.setdefault(key, []).append(value)
    for key, value in changes.items():
        if value is None or value == "":
            args.pop(key, None)
        else:
            args[key] = [value]
    return args


def filter_url(endpoint: str, flt: ActivityFilter | None = None, **changes) -> str:
    """The URL of a page that takes the feed's filter (the feed, stats, export)."""
    return url_for(endpoint, **filter_args(flt, **changes))


def feed_url(flt: ActivityFilter | None = None, **changes) -> str:
    """The feed URL for a filter, with some keys replaced (None removes one)."""
    return filter_url("web.feed", flt, **changes)


def socket_path(endpoint: str, **values) -> str:
    """A socket's path and query.

    Relative on purpose: werkzeug builds WebSocket rules as absolute ws://
    URLs from the request's host, which is wrong behind a TLS proxy; the ws
    extension completes a path with the page's own host and ws/wss scheme.
    """
    parts = urlsplit(url_for(endpoint, **values))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def feed_socket_url(flt: ActivityFilter) -> str:
    """The feed socket's path and query for a filter."""
    return socket_path("feed_socket.feed_socket", **filter_args(flt))


def register(app) -> None:
    app.jinja_env.filters.update(
        relative_time=relative_time, absolute_time=absolute_time, duration=duration,
        pretty_json=pretty_json, iso=iso, unread_label=unread_label,
    )
    app.jinja_env.globals.update(family_of=family_of, is_important=is_important, feed_url=feed_url,
                                  filter_url=filter_url, feed_socket_url=feed_socket_url, socket_path=socket_path,
                                  next_cursor=next_cursor,
                                  filter_fields=FIELDS, relative_time_rule=RELATIVE_TIME,
                                  unread_cap=UNREAD_COUNT_CAP)

"""How an activity looks on the page: family, icon, times, durations, links.

Template filters and globals only; they read an activity dict and never the
database.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from urllib.parse import urlsplit

from flask import url_for

from ..filters import FIELDS, RANGE_LABELS, ActivityFilter
from ..serialize import iso, next_cursor
from ..store import UNREAD_COUNT_CAP
from ..timeline import NOT_AN_OUTCOME

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


# ------------------------------------------------------------ one row per call
# A tool call is two events, its start and its outcome (same correlation id);
# the feed shows it as one row whose element id is the call's, so the outcome
# (in the page, in "load more" or live) takes the start's row: "running"
# while only the start exists, then its outcome and duration. The API keeps
# both events; only the dashboard folds them.


def call_key(activity: dict) -> str | None:
    """The row id a tool call's start and outcome share, or None for any other event."""
    if activity.get("entity_type") != "tool" or not activity.get("correlation_id"):
        return None
    if activity.get("status") in NOT_AN_OUTCOME and activity.get("status") != "started":
        return None  # a permission asked mid-call is a row of its own
    digest = hashlib.sha1(f"{activity['source']}\x00{activity['correlation_id']}".encode()).hexdigest()[:16]
    return f"call-{digest}"


def row_id(activity: dict) -> str:
    return call_key(activity) or f"activity-{activity['id']}"


def is_running(activity: dict) -> bool:
    return call_key(activity) is not None and activity.get("status") == "started"


@dataclass
class Row:
    """One feed row: the event it shows, and the day header above it, if a new day starts."""

    a: dict
    day: str | None = None


def feed_rows(items: list[dict], previous: datetime | None = None, now: datetime | None = None) -> list[Row]:
    """A page of events (newest first) as rows: a call's outcome shown in its
    start's place when both are on the page, and a day header where the day
    changes (`previous`: the time of the row above the page, for "load more")."""
    started_here = {key for a in items if (key := call_key(a)) and a.get("status") == "started"}
    outcomes: dict[str, dict] = {}
    for a in items:
        key = call_key(a)
        if key and a.get("status") != "started":
            outcomes.setdefault(key, a)  # the newest outcome
    rows, shown = [], set()
    last_day = previous.date() if previous else None
    for a in items:
        key = call_key(a)
        if key:
            if key in shown or (a.get("status") != "started" and key in started_here):
                continue  # folded into the start's row
            shown.add(key)
            shown_as = outcomes.get(key, a)
        else:
            shown_as = a
        day = a["occurred_at"].date()
        rows.append(Row(shown_as, day_label(day, now) if day != last_day else None))
        last_day = day
    return rows


def day_label(day: date, now: datetime | None = None) -> str:
    today = (now or datetime.now(timezone.utc)).date()
    if day == today:
        return "Today"
    if day == today - timedelta(days=1):
        return "Yesterday"
    return day.strftime("%A %-d %B") + ("" if day.year == today.year else f" {day.year}")


def session_label(activity: dict, names: dict[str, str] | None = None) -> str:
    """What a person calls an event's session: its first prompt, else its project, never its id."""
    conversation_id = activity.get("conversation_id")
    name = (names or {}).get(conversation_id)
    if name:
        return name if len(name) <= 60 else name[:59].rstrip() + "…"
    if activity.get("project"):
        return f"session in {activity['project']}"
    return f"session {conversation_id[:8]}" if conversation_id else "session"


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


# The most of a step's input or output the timeline shows inline.
STEP_DETAIL_CHARS = 4000
# What a hook payload says about itself rather than the step.
_HOOK_KEYS = ("hook_event_name", "transcript_path", "cwd", "permission_mode", "tool_use_id", "tool_name")


def capped_json(value, limit: int = STEP_DETAIL_CHARS) -> str:
    """Pretty JSON (or the text itself), cut at `limit` characters and saying so."""
    text = value if isinstance(value, str) else pretty_json(value)
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


def step_input(event: dict) -> str | None:
    """What a step was given: a tool's input, else its data less the hook's own fields."""
    data = event.get("data") or {}
    if "tool_input" in data:
        return capped_json(data["tool_input"])
    rest = {k: v for k, v in data.items() if k not in _HOOK_KEYS and k not in ("prompt", "last_assistant_message")}
    return capped_json(rest) if rest else None


def step_output(result: dict) -> str | None:
    """What a step gave back: a tool's response or error, else the result's data less the hook's fields."""
    data = result.get("data") or {}
    for key in ("tool_response", "error"):
        if key in data:
            return capped_json(data[key])
    rest = {k: v for k, v in data.items() if k not in _HOOK_KEYS}
    return capped_json(rest) if rest else None


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


def feed_socket_url(flt: ActivityFilter, **options) -> str:
    """The feed socket's path and query for a filter (and view options: group=day)."""
    return socket_path("feed_socket.feed_socket", **filter_args(flt, **options))


def register(app) -> None:
    app.jinja_env.filters.update(
        relative_time=relative_time, absolute_time=absolute_time, duration=duration,
        pretty_json=pretty_json, iso=iso, unread_label=unread_label,
    )
    app.jinja_env.globals.update(family_of=family_of, is_important=is_important, feed_url=feed_url,
                                  row_id=row_id, is_running=is_running, feed_rows=feed_rows,
                                  step_input=step_input, step_output=step_output,
                                  session_label=session_label, day_label=day_label,
                                  filter_url=filter_url, feed_socket_url=feed_socket_url, socket_path=socket_path,
                                  next_cursor=next_cursor,
                                  filter_fields=FIELDS, relative_time_rule=RELATIVE_TIME,
                                  unread_cap=UNREAD_COUNT_CAP, range_labels=RANGE_LABELS)

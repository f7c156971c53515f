"""The feed's grouped view (`?group=day`): similar events of a day in one row.

A view option, not a filter: it changes how the page draws what the filter
shows, so it stays out of the filter table and rides in the URL beside it.
The page groups its events with `activityweb.grouping`; the live socket of a
grouped page sends an arriving event into its group (the event into the
group's list and the group's summary, both swapped by id, the count from the
database) or, first of its group today, as a new group at the top.
"""
from __future__ import annotations

from collections import Counter

from flask import render_template, request

from ..grouping import Group, group_key
from ..store.grouping import group_counts

GROUP_DAY = "day"


def grouping_of(args=None) -> str | None:
    """The view's grouping from the URL: "day", or None (anything else is ignored)."""
    return GROUP_DAY if (args if args is not None else request.args).get("group") == GROUP_DAY else None


def grouped_live_message(events: list[dict], tenant_id: int, flt) -> str:
    """One WebSocket message for a grouped page: each event into its group, newest first."""
    counts = group_counts(tenant_id, flt, events)
    in_batch = Counter(group_key(e) for e in events)
    groups: dict[str, Group] = {}
    for event in sorted(events, key=lambda a: a["id"], reverse=True):
        key = group_key(event)
        groups.setdefault(key, Group(key, event["occurred_at"].date(), total=max(counts[key], in_batch[key])))
        groups[key].events.append(event)
    # A group whose every event is in this batch is new to the page; the others join one it has.
    new = [g for g in groups.values() if g.count <= in_batch[g.key]]
    joined = [g for g in groups.values() if g.count > in_batch[g.key]]
    return render_template("feed/_live_grouped.html", new=new, joined=joined)

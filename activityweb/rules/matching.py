"""Matching a batch of new events against many filters at once.

`ActivityFilter.matches` asks one event one filter; with 50 rules and a
1,000-event batch that is 50,000 calls on ingest's path. Here the batch is
indexed once by the columns the filters name (value -> positions), and each
filter's exact fields become set lookups and intersections; only what an
index cannot answer (tags, search, times) is asked of the filter table's own
`Kind.matches`, and only for the events left. The result is the same as
`flt.matches` on each event (tests/test_rules_matching.py checks it).
"""
from __future__ import annotations

import functools

from ..filters import ActivityFilter, OneOf, TypeName


class BatchIndex:
    def __init__(self, events: list[dict]):
        self.events = events
        self._by: dict[str, dict] = {}
        self._hits: dict = {}  # (kind, values) -> positions: rules share fields (project=x)
        self._epoch: list[int] | None = None
        self._buckets: dict[int, list[int]] = {}
        self._failed: list[bool] | None = None
        self._metrics: dict[str, list[float]] = {}

    @property
    def epoch(self) -> list[int]:
        """Each event's occurred_at in whole epoch seconds (windows and buckets compare these)."""
        if self._epoch is None:
            self._epoch = [int(e["occurred_at"].timestamp()) for e in self.events]
        return self._epoch

    @functools.cached_property
    def span(self) -> tuple[int, int]:
        """(oldest, newest) of `epoch`."""
        return min(self.epoch, default=0), max(self.epoch, default=0)

    def since(self, positions: list[int], start: int) -> list[int]:
        """The positions whose event occurred at `start` or later (a batch of
        live events usually all did: then the list is returned as it is)."""
        if self.span[0] >= start:
            return positions
        epoch = self.epoch
        return [p for p in positions if epoch[p] >= start]

    def one_bucket(self, size: int) -> int | None:
        """The bucket of `size` seconds every event of the batch falls in, if there is one."""
        oldest, newest = self.span
        return oldest // size * size if oldest // size == newest // size else None

    def metric(self, metric) -> list[float]:
        """Each event's value of a `conditions.Metric`, read once per batch."""
        found = self._metrics.get(metric.name)
        if found is None:
            found = self._metrics[metric.name] = [metric.of(e) for e in self.events]
        return found

    def by(self, column: str) -> dict:
        found = self._by.get(column)
        if found is None:
            found = {}
            for position, event in enumerate(self.events):
                found.setdefault(event.get(column), []).append(position)
            self._by[column] = found
        return found

    def buckets(self, size: int) -> list[int]:
        """Each event's counting bucket of `size` seconds (its start, in epoch seconds)."""
        found = self._buckets.get(size)
        if found is None:
            found = self._buckets[size] = [e // size * size for e in self.epoch]
        return found

    @property
    def failed(self) -> list[bool]:
        if self._failed is None:
            from .conditions import FAILED_STATUSES

            self._failed = [e.get("status") in FAILED_STATUSES for e in self.events]
        return self._failed


def _positions(kind, values, index: BatchIndex) -> set[int] | None:
    """Positions an indexable field matches, or None if the index cannot say."""
    if type(kind) is OneOf:
        by = index.by(kind.column)
        return {p for v in values for p in by.get(v, ())}
    if type(kind) is TypeName:
        exact = {v for v in values if not v.endswith(".*")}
        prefixes = tuple(v[:-1] for v in values if v.endswith(".*"))
        return {p for kind_value, positions in index.by(kind.column).items()
                if kind_value is not None and (kind_value in exact or (prefixes and kind_value.startswith(prefixes)))
                for p in positions}
    return None


def matching(flt: ActivityFilter, index: BatchIndex) -> list[int]:
    """Positions of the batch's events the filter passes, in batch order."""
    candidates: set[int] | None = None
    rest = []
    for declared, value in flt.active:
        key = (declared.kind, value)
        hit = index._hits.get(key, False)
        if hit is False:
            hit = index._hits[key] = _positions(declared.kind, value, index)
        if hit is None:
            rest.append((declared.kind, value))
            continue
        candidates = hit if candidates is None else candidates & hit
        if not candidates:
            return []
    events = index.events
    chosen = sorted(candidates) if candidates is not None else range(len(events))
    if rest:
        return [p for p in chosen
                if all(kind.matches(value, functools.partial(dict.get, events[p])) for kind, value in rest)]
    return list(chosen)

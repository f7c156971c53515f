"""Positions in the log of events, in commit order: the resume token.

An event stands at (txid, id): its inserting transaction (`xid8` on
PostgreSQL, the SQLite clock; migration 0007) and its id. Readers read only
below the horizon, where every transaction has ended, so the log is final
there and "after position P" is exact: no overlap window, no repeats.

A position says which events its holder has had: every event at or before
(txid, id), except those of `pending` transactions. Those were still open
when a page took its snapshot (a page may be rendered while a transaction
that started earlier has not committed yet); for each, the id it has had
up to (none yet: NIL). A position read from a reader's own deliveries has no
pending part; it drops away once delivery passes it.

Clients see an opaque token (`Position.token`): the SSE `id:`, `since=` on
`/ws`, what the dashboard sends when its socket reopens.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

NIL = "00000000-0000-0000-0000-000000000000"
MAX = "ffffffff-ffff-ffff-ffff-ffffffffffff"
# A page's snapshot may list many open transactions; a token keeps this many
# (more would make a long URL). With more, the position falls back to just
# before the oldest of them: some events the page has may come again (the
# page replaces them by id), none is lost.
MAX_PENDING = 32

_PART = r"(\d{1,20})-([0-9a-f]{32})"
_TOKEN = re.compile(rf"{_PART}(?:~{_PART})*")
_PARTS = re.compile(_PART)


def _hex(event_id: str) -> str:
    return event_id.replace("-", "")


def _uuid(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


@dataclass(frozen=True)
class Position:
    txid: int
    id: str = MAX
    # Transactions at or before `txid` whose events are not all had yet:
    # txid -> the id had up to in it.
    pending: dict[int, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def of_snapshot(cls, xmin: int, xmax: int, open_txids) -> "Position":
        """What a reader of this snapshot has seen: everything before `xmax`
        except the transactions still open in it."""
        open_txids = sorted(set(open_txids))
        if len(open_txids) > MAX_PENDING:
            return cls(xmin - 1)  # see MAX_PENDING
        return cls(xmax - 1, MAX, {t: NIL for t in open_txids})

    @property
    def key(self) -> tuple[int, str]:
        return (self.txid, self.id)

    def has(self, txid: int, event_id: str) -> bool:
        """Whether the holder already had the event at (txid, id)."""
        if txid in self.pending:
            return event_id <= self.pending[txid]
        return (txid, event_id) <= (self.txid, self.id)

    def advanced(self, txid: int, event_id: str) -> "Position":
        """The position once the event at (txid, id) is had too (events come in commit order)."""
        if (txid, event_id) > (self.txid, self.id):
            # In commit order, every pending transaction (all before txid) has ended and been read.
            return Position(txid, event_id)
        if txid in self.pending and event_id > self.pending[txid]:
            return Position(self.txid, self.id, {**self.pending, txid: event_id})
        return self

    def passed(self, end: "Position") -> "Position":
        """The position once everything up to `end`, a reader's position with
        no pending part, has been read (and what matched, had)."""
        if end.key > self.key:
            return Position(end.txid, end.id)
        if not self.pending:
            return self
        pending = {t: i for t, i in self.pending.items() if t > end.txid}
        if end.txid in self.pending:
            pending[end.txid] = max(self.pending[end.txid], end.id)
        return Position(self.txid, self.id, pending)

    @property
    def token(self) -> str:
        parts = [(self.txid, self.id), *sorted(self.pending.items())]
        return "~".join(f"{t}-{_hex(i)}" for t, i in parts)

    @classmethod
    def from_token(cls, token: str | None) -> "Position | None":
        """The position a token stands for, or None if it is not one."""
        if not token or len(token) > 2000 or not _TOKEN.fullmatch(token):
            return None
        parts = [(int(t), _uuid(h)) for t, h in _PARTS.findall(token)]
        (txid, event_id), rest = parts[0], parts[1:]
        if any(t > txid for t, _ in rest):
            return None
        return cls(txid, event_id, dict(rest))

    def __str__(self) -> str:
        return self.token


def is_token(value: str | None) -> bool:
    return Position.from_token(value) is not None

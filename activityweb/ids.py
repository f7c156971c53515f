"""Server-made ids: UUIDv7 text, so the id order is the order we received events in.

Python 3.11 has no `uuid.uuid7`; this follows RFC 9562 section 5.7 with the
"monotonic random" method (6.2, method 2) so ids made in the same millisecond
by this process still sort in the order they were made.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import datetime, timezone

_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_RAND_BITS = 74
_RAND_MAX = (1 << _RAND_BITS) - 1


def _pack(ms: int, rand: int) -> str:
    rand_a = rand >> 62  # 12 bits
    rand_b = rand & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7() -> str:
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            # Leave headroom in the top bit so increments within a ms cannot overflow.
            rand = int.from_bytes(os.urandom(10), "big") & (_RAND_MAX >> 1)
        else:
            ms = _last_ms
            rand = _last_rand + 1 + (int.from_bytes(os.urandom(2), "big") & 0xFF)
            if rand > _RAND_MAX:  # pragma: no cover - 2**73 ids in one ms
                ms += 1
                rand = 0
        _last_ms, _last_rand = ms, rand
    return _pack(ms, rand)


def uuid7_floor(moment: datetime) -> str:
    """The smallest UUIDv7 of that millisecond: ids >= it were made at or after it."""
    ms = int(moment.timestamp() * 1000)
    return _pack(ms, 0)


def uuid7_time(value: str) -> datetime | None:
    """When a UUIDv7 was made, or None if `value` is not one."""
    try:
        u = uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return None
    if u.version != 7:
        return None
    return datetime.fromtimestamp((u.int >> 80) / 1000, tz=timezone.utc)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        return False
    return len(value) == 36

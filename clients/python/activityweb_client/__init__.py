"""Send activities to ActivityWeb from application code: `track(type, title, **fields)`.

A package of its own, standard library only: `pip install ./clients/python`
(or `pip install "git+<repository URL>#subdirectory=clients/python"`), or
copy this one file as `activityweb_client.py`. Tracking never hurts the caller:

- `track` only puts the event on a bounded queue: it does not block, does
  not raise, and drops the event (counting it in `dropped`) when the queue
  is full;
- a daemon thread sends batches to `POST /api/v1/activities`, retrying with
  exponential backoff (and jitter) while the server is unreachable or busy;
- at exit (`close`, or the interpreter's), what could not be sent is written
  to a spool file and delivered first the next time a client starts;
- every event gets a `source_id` when it has none, so a batch sent twice (a
  retry after a lost answer, a spool delivered again) is stored once.

Settings: `ACTIVITYWEB_URL` (default http://127.0.0.1:5000),
`ACTIVITYWEB_TOKEN`, `ACTIVITYWEB_SPOOL_DIR` (default ~/.activityweb/spool),
or `configure(...)`. The Claude Code command hook (hooks/activityweb_hook.py)
shares the spool and delivery code below.
"""
from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import logging
import os
import queue
import random
import re
import stat
import threading
import time
import uuid
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

try:  # POSIX; elsewhere concurrent writers are not serialised (the server still drops repeats)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__version__ = "1.0.0"  # clients/python/pyproject.toml says the same

log = logging.getLogger("activityweb.client")

DEFAULT_URL = "http://127.0.0.1:5000"
ACTIVITIES = "/api/v1/activities"
SPOOL_MAX_BYTES = 5 * 1024 * 1024
# What one request carries, well inside the server's limits (1,000 events, 1 MiB).
BATCH_ITEMS = 200
BATCH_BYTES = 768 * 1024

# What became of a batch.
SENT, RETRY, REJECTED = "sent", "retry", "rejected"


def default_spool_dir() -> Path:
    return Path(os.environ.get("ACTIVITYWEB_SPOOL_DIR") or Path.home() / ".activityweb" / "spool")


# ------------------------------------------------------------------ sending


def post_json(url: str, token: str | None, body, timeout: float) -> int:
    """POST `body` as JSON; the HTTP status, or 0 when the server could not be reached."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    headers = {"Content-Type": "application/json", "User-Agent": "activityweb-client/1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    connection = connection_class(parts.netloc, timeout=timeout)
    try:
        connection.request("POST", parts.path or "/", body=_encode(body), headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


def outcome(status: int) -> str:
    """SENT, RETRY (unreachable, busy, failing, or refusing the token, which
    someone may fix) or REJECTED (the server will never take this batch)."""
    if 200 <= status < 300:
        return SENT
    if status in (0, 401, 403, 408, 425, 429) or status >= 500:
        return RETRY
    return REJECTED


def deliver(items: list, send: Callable[[list], str]) -> list:
    """Send `items` with `send`; returns those still to retry, a suffix of `items`.

    A rejected batch is halved until the items the server refuses are found;
    they are dropped (and logged), so one bad event does not hold back the
    rest for ever.
    """
    if not items:
        return []
    result = send(items)
    if result == SENT:
        return []
    if result == RETRY:
        return items
    if len(items) == 1:
        log.warning("activityweb refused an event; dropped it: %.300s", _encode(items[0]).decode(errors="replace"))
        return []
    middle = len(items) // 2
    left = deliver(items[:middle], send)
    if left:
        return left + items[middle:]
    return deliver(items[middle:], send)


def _encode(value) -> bytes:
    # allow_nan=False: NaN and Infinity are not JSON, and a server that
    # stores JSON could never take them.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=_json_default).encode()


def _json_default(value):
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


# ---------------------------------------------------------------- redaction
#
# What is spooled lies on disk, maybe for days: secrets the server would mask
# are masked before they are written. The same patterns as the server's
# (activityweb/integrations/redact.py; a test keeps the two equal), copied so
# this module stays standard library only.

REDACT_MASK = "[REDACTED]"
REDACT_PATTERNS = (
    r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----|[\s\S]*)",
    r"(?i)authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?(?P<secret>[^\s\"',;]{8,})",
    r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/-]{16,}=*)",
    r"(?i)(?:passw(?:or)?d|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[\w.-]{0,30}"
    r"[\"']?\s*[:=]\s*(?P<quote>[\"'])(?P<secret>(?:(?!(?P=quote))[^\n]){1,256})(?P=quote)",
    r"(?i)(?:passw(?:or)?d|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[\w.-]{0,30}"
    r"[\"']?\s*[:=]\s*[\"']?(?P<secret>(?!\d+\b)[^\s\"',;&}]{4,})",
    r"(?i)\b(?:passw(?:or)?d|passwd|secret|token|api[_-]?key)\s+is\s+[\"']?(?P<secret>(?=[^\s\"']*\d)[^\s\"',;]{6,})",
    r"(?i)\bkey[\"']?\s*[:=]\s*[\"']?(?P<secret>(?=[^\s\"',;&}]*\d)(?=[^\s\"',;&}]*[a-z])[^\s\"',;&}]{12,})",
    r"(?i)\b[a-z][a-z0-9+.-]{0,20}://[^\s:/@]{1,256}:(?P<secret>[^\s@/]{1,256})@",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bgh[pousr]_[A-Za-z0-9]{36,}",
    r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}",
    r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
    r"\bAIza[0-9A-Za-z_-]{35}",
    r"\baw_[A-Za-z0-9_-]{40,}",
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
)
REDACT_SECRET_KEY = (r"(?i)(?:passw(?:or)?d|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|authorization"
                     r"|credentials?|cookie)$")
_redact_patterns: list = []


def _mask_match(match) -> str:
    if "secret" not in match.re.groupindex or match.group("secret") is None:
        return REDACT_MASK
    start, end = match.span("secret")
    whole, offset = match.group(0), match.start()
    return whole[: start - offset] + REDACT_MASK + whole[end - offset:]


def redact(value, depth: int = 0):
    """A JSON value with secrets masked: text by the patterns, and whole values
    under secret-looking keys. Nesting beyond 64 levels is left as it is."""
    if not _redact_patterns:
        _redact_patterns.extend(re.compile(p) for p in REDACT_PATTERNS)
    if isinstance(value, str):
        for pattern in _redact_patterns:
            value = pattern.sub(_mask_match, value)
        return value
    if depth > 64:
        return value
    if isinstance(value, list):
        return [redact(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: REDACT_MASK if isinstance(v, str) and v and re.search(REDACT_SECRET_KEY, str(k))
                else redact(v, depth + 1) for k, v in value.items()}
    return value


# -------------------------------------------------------------------- spool


class UnsafeSpool(OSError):
    """A spool directory others can write to (they could plant a symlink or read
    what we spool): nothing is written there."""


class Spool:
    """A bounded file of undelivered items, one JSON document a line, shared by processes.

    Every read and write holds an exclusive lock on a sidecar file, only for
    the file operation and never across the network. Items leave the spool
    only once the server has taken them: a crash in between sends them again,
    and the server's idempotency keys make that a duplicate. `draining()`
    lets one process at a time deliver, so each item is normally sent once.
    When the spool is full, new items are dropped: the oldest are kept, so
    what is delivered stays in the order it happened.

    On disk: secrets are masked before an item is written (`redact`); every
    file is opened with O_NOFOLLOW, so a symlink planted in the directory is
    never followed; and a directory that is not ours or that others can write
    to is refused (`UnsafeSpool`).
    """

    def __init__(self, path: Path, max_bytes: int | None = None):
        self.path = Path(path)
        self.max_bytes = max_bytes or int(os.environ.get("ACTIVITYWEB_SPOOL_MAX_BYTES") or SPOOL_MAX_BYTES)

    def append(self, items: list) -> int:
        """Add items; returns how many fitted."""
        lines = [_encode(redact(item)) + b"\n" for item in items]
        with self._locked(".lock"):
            size = self.path.stat().st_size if self.path.exists() else 0
            kept = []
            for line in lines:
                if size + len(line) > self.max_bytes:
                    break
                kept.append(line)
                size += len(line)
            if kept:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o600)
                with os.fdopen(fd, "ab") as spool:
                    spool.write(b"".join(kept))
        if len(kept) < len(lines):
            log.warning("activityweb spool %s is full; dropped %d item(s)", self.path, len(lines) - len(kept))
        return len(kept)

    def read(self, max_items: int = BATCH_ITEMS, max_bytes: int = BATCH_BYTES) -> list[tuple[object, int]]:
        """The oldest items as (item, bytes it takes); item is None for a line that is not JSON."""
        entries: list[tuple[object, int]] = []
        total = 0
        with self._locked(".lock"):
            if not self.path.exists():
                return entries
            with os.fdopen(os.open(self.path, os.O_RDONLY | _NOFOLLOW), "rb") as spool:
                for line in spool:
                    if entries and (len(entries) >= max_items or total + len(line) > max_bytes):
                        break
                    try:
                        item = json.loads(line)
                    except ValueError:
                        item = None
                    entries.append((item, len(line)))
                    total += len(line)
        return entries

    def discard(self, nbytes: int) -> None:
        """Remove the first `nbytes` (whole lines that were delivered)."""
        with self._locked(".lock"):
            with os.fdopen(os.open(self.path, os.O_RDONLY | _NOFOLLOW), "rb") as spool:
                spool.seek(nbytes)
                rest = spool.read()
            temporary = self.path.with_suffix(".tmp")
            # A new file of our own: whatever lies at the name (a crash's
            # leftover, a planted symlink) is removed, not written through.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(rest)
            os.replace(temporary, self.path)

    def has_items(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    @contextlib.contextmanager
    def draining(self) -> Iterator[bool]:
        """True inside if this process may deliver the spool now (no other one is)."""
        with self._locked(".drain.lock", blocking=False) as mine:
            yield mine

    @contextlib.contextmanager
    def _locked(self, suffix: str, blocking: bool = True) -> Iterator[bool]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        check_spool_dir(self.path.parent)
        fd = os.open(str(self.path) + suffix, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o600)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    yield False
                    return
            yield True
        finally:
            os.close(fd)  # releases the lock


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def check_spool_dir(directory: Path) -> None:
    """Raise UnsafeSpool unless `directory` is ours and only we can write to it."""
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode):
        info = os.stat(directory)  # a symlink to a directory of ours (a moved home) is fine
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeSpool(f"activityweb spool {directory} is not a directory")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise UnsafeSpool(f"activityweb spool {directory} belongs to another user; refusing to use it")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeSpool(f"activityweb spool {directory} is writable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                          "refusing to use it: chmod 700 it")


def deliver_spool(spool: Spool, send: Callable[[list], str]) -> bool:
    """Deliver the spool oldest first, chunk by chunk; False if the server
    could not take everything (what it did not take stays spooled)."""
    while True:
        entries = spool.read()
        if not entries:
            return True
        items = [item for item, _ in entries if item is not None]
        left = deliver(items, send)
        # The delivered (or dropped) items are the first ones: discard their lines.
        done = len(items) - len(left)
        nbytes, valid = 0, 0
        for item, size in entries:
            if item is not None:
                if valid == done:
                    break
                valid += 1
            nbytes += size
        if nbytes:
            spool.discard(nbytes)
        if left:
            return False


# ------------------------------------------------------------------- client


class Client:
    """Tracks events in the background; see the module docstring."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        spool_dir: str | Path | None = None,
        timeout: float = 2.0,
        batch_size: int = 100,
        flush_interval: float = 0.25,
        max_queue: int = 10_000,
        max_backoff: float = 30.0,
    ):
        base = (url or os.environ.get("ACTIVITYWEB_URL") or DEFAULT_URL).rstrip("/")
        self.url = base + ACTIVITIES
        self.token = token if token is not None else os.environ.get("ACTIVITYWEB_TOKEN")
        self.spool = Spool(Path(spool_dir or default_spool_dir()) / "client.jsonl")
        self.timeout = timeout
        self.batch_size = min(batch_size, BATCH_ITEMS)
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.max_backoff = max_backoff
        self.dropped = 0
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._stop = threading.Event()
        self._pending: list = []  # the batch being sent; `close` spools it if the sender is stuck
        # Events tracked and not yet sent, spooled or given up on: `flush` waits for none.
        self._outstanding = 0
        self._settled = threading.Condition()

    def track(self, type: str, title: str, **fields) -> None:
        """Queue an event; returns at once and never raises."""
        try:
            event = {"type": type, "title": title, **fields}
            event.setdefault("source_id", uuid.uuid4().hex)
            event.setdefault("occurred_at", datetime.now(timezone.utc).isoformat())
            # JSON now, so an odd value (a datetime, a set) cannot fail the sender later.
            event = json.loads(_encode(event))
            if self._stop.is_set():  # tracked during shutdown: straight to the spool
                self.spool.append([event])
                return
            self._ensure_started()
            with self._settled:
                self._queue.put_nowait(event)
                self._outstanding += 1
        except queue.Full:
            self.dropped += 1
        except Exception:  # tracking never fails the caller
            self.dropped += 1
            log.debug("activityweb: could not track an event", exc_info=True)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything tracked so far was sent, spooled or given up on; True if so."""
        with self._settled:
            return self._settled.wait_for(lambda: self._outstanding == 0, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the sender: one last try to send, then spool what is left."""
        self._stop.set()
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        thread.join(timeout)
        if thread.is_alive():
            # The sender is stuck in a request: keep its batch and the queue.
            # Should that request land after all, the repeat is a duplicate.
            self._spool(list(self._pending) + self._take_queued())

    def _ensure_started(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            # First use, or a forked child (which inherits the queue but not the thread).
            first = self._thread is None
            self._pid = os.getpid()
            self._queue = queue.Queue(maxsize=self.max_queue)
            self._outstanding = 0
            self._thread = threading.Thread(target=self._run, name="activityweb-client", daemon=True)
            self._thread.start()
            if first:
                atexit.register(self.close)

    def _run(self) -> None:
        backoff = 0.0
        while True:
            try:
                done = self._send_what_is_waiting()
            except Exception:  # the sender must outlive a full disk or a bug
                log.exception("activityweb client: sending failed")
                done = False
            if done is None:  # stopped, and everything sent or spooled
                return
            if done:
                backoff = 0.0
                continue
            if self._stop.is_set():
                self._spool(self._pending + self._take_queued())
                self._pending = []
                return
            # Unreachable or busy: wait longer each time, with jitter so that
            # many clients do not all come back at the same moment.
            backoff = min(self.max_backoff, backoff * 2 or 0.25)
            self._stop.wait(backoff * random.uniform(0.5, 1.0))

    def _send_what_is_waiting(self) -> bool | None:
        """One round: the spool first (older events), then a batch from the queue.

        True when the server took what there was, False when it should be
        tried again later, None when stopping with nothing left.
        """
        if self.spool.has_items():
            with self.spool.draining() as mine:
                if mine and not deliver_spool(self.spool, self._send):
                    return False
        if not self._pending:
            try:
                self._pending = [self._queue.get(timeout=self.flush_interval)]
            except queue.Empty:
                return None if self._stop.is_set() else True
        self._pending += self._take_queued(self.batch_size - len(self._pending))
        before = len(self._pending)
        self._pending = deliver(self._pending, self._send)
        self._settle(before - len(self._pending))
        return not self._pending

    def _send(self, items: list) -> str:
        return outcome(post_json(self.url, self.token, items, self.timeout))

    def _spool(self, items: list) -> None:
        if items:
            self.spool.append(items)
        self._settle(len(items))

    def _settle(self, count: int) -> None:
        with self._settled:
            self._outstanding = max(0, self._outstanding - count)
            self._settled.notify_all()

    def _take_queued(self, limit: int | None = None) -> list:
        items = []
        while limit is None or len(items) < limit:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items


_default: Client | None = None
_default_lock = threading.Lock()


def configure(url: str | None = None, token: str | None = None, **options) -> Client:
    """Replace the client `track` uses (the old one sends or spools what it holds)."""
    global _default
    with _default_lock:
        old, _default = _default, Client(url, token, **options)
    if old is not None:
        old.close()
    return _default


def client() -> Client:
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Client()
    return _default


def track(type: str, title: str, **fields) -> None:
    """Record an activity; returns at once and never raises (see the module docstring)."""
    try:
        client().track(type, title, **fields)
    except Exception:  # pragma: no cover - Client.track already guards itself
        pass


def flush(timeout: float = 5.0) -> bool:
    return client().flush(timeout)

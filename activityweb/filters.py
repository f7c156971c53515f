"""The feed's filter, declared once: every field in one table, `ActivityFilter`.

Each field names its kind, its OpenAPI description and its control on the
dashboard's filter form; everything a filter does is driven from that table:

- parsing a query string (`parse_filter`) and printing one back (`to_args`),
  so a filter round-trips through a URL;
- the in-memory match (`ActivityFilter.matches`) the live fan-out uses
  instead of a query per event;
- its SQL: `store/filtering.py` gives each kind its clause;
- the OpenAPI parameters (`api/openapi.py` lists `FIELDS`);
- the filter form (`templates/feed/_filters.html` draws `FIELDS`).

Adding a filter of an existing kind is one line below, plus the index that
serves it (models.py and a migration); a new kind is a class here and its
clause in the store. `tests/test_filter_table.py` proves the uses agree.
Repeating a key offers alternatives (`type=a&type=b` is a or b); different
keys narrow.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, ClassVar

from .errors import InvalidQuery
from .ids import is_uuid
from .schemas import PRIORITIES

MAX_VALUES = 50
MAX_VALUE_CHARS = 200
MAX_SEARCH_CHARS = 200
# Keys of the list endpoints that are not filters.
PAGE_KEYS = frozenset({"limit", "cursor"})

_WORD = re.compile(r"[^\W_]+")
_TYPE_FILTER = re.compile(r"^-?([a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?|\*)$")
Get = Callable[[str], Any]  # an event's field by name


def search_terms(text: str) -> list[str]:
    """Words of a search box, lower-cased, as the full-text indexes split them."""
    return [w.lower() for w in _WORD.findall(text or "")][:16]


def parse_time(name: str, value: str) -> datetime:
    text = value.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):  # a date picker sends a bare date
        text += "T00:00:00+00:00"
    elif re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?", text):
        text += "+00:00"  # datetime-local has no offset; we mean UTC
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidQuery(name, f"{value!r} is not an ISO 8601 date or time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return in_time_range(name, moment)


# Times a filter or cursor may name. Python's datetime ends at years 1 and
# 9999: `0001-01-01T00:00+01:00` in UTC is before the first, and code that
# steps a day past the last overflows. A day's margin at each end keeps every
# such step in range.
EARLIEST = datetime(1, 1, 2, tzinfo=timezone.utc)
LATEST = datetime(9999, 12, 30, tzinfo=timezone.utc)


def in_time_range(name: str, moment: datetime) -> datetime:
    """`moment` in UTC, if it is between EARLIEST and LATEST; else an InvalidQuery naming `name`."""
    try:
        moment = moment.astimezone(timezone.utc)
    except OverflowError:
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        raise InvalidQuery(name, f"must be between {EARLIEST.date()} and {LATEST.date()}")
    return moment


# ------------------------------------------------------------------- kinds


class Kind:
    """How a field reads from a query string, prints back, matches an event in
    memory, and is documented. Its SQL is the store's (`store/filtering.py`)."""

    empty: ClassVar[Any] = ()  # the value of a field not asked for
    repeatable: ClassVar[bool] = True  # whether the key may be given several times
    comma = False  # whether the dashboard's text field takes several values as "a, b"

    def parse(self, name: str, raw: list[str]) -> Any:
        """The field's value from the key's non-blank values, or None to leave it out."""
        raise NotImplementedError

    def to_args(self, value) -> list[str]:
        return list(value)

    def matches(self, value, get: Get) -> bool:
        raise NotImplementedError

    def schema(self) -> dict:
        """The OpenAPI schema of one value."""
        return {"type": "string"}


@dataclass(frozen=True)
class OneOf(Kind):
    """The event's `column` is one of the values."""

    column: str
    comma: bool = False
    choices: tuple[str, ...] = ()

    def parse(self, name: str, raw: list[str]) -> tuple[str, ...] | None:
        if not raw:
            return None
        if len(raw) > MAX_VALUES:
            raise InvalidQuery(name, f"at most {MAX_VALUES} values")
        if any(len(v) > MAX_VALUE_CHARS for v in raw):
            raise InvalidQuery(name, f"values are at most {MAX_VALUE_CHARS} characters")
        for v in raw:
            if self.choices and v not in self.choices:
                raise InvalidQuery(name, f"{v!r} is not one of {', '.join(self.choices)}")
        return self.checked(name, tuple(dict.fromkeys(raw)))

    def checked(self, name: str, values: tuple[str, ...]) -> tuple[str, ...] | None:
        return values

    def matches(self, values, get: Get) -> bool:
        return get(self.column) in values

    def schema(self) -> dict:
        return {"type": "string", "enum": list(self.choices)} if self.choices else {"type": "string"}


@dataclass(frozen=True)
class TypeName(OneOf):
    """Dotted types; a value ending in `.*` matches the prefix, and `*` alone
    everything. A value led by `-` excludes (`-claude.tool.started`): the
    event matches one of the others (if any) and none of the excluded."""

    def checked(self, name: str, values: tuple[str, ...]) -> tuple[str, ...] | None:
        for v in values:
            if not _TYPE_FILTER.match(v):
                raise InvalidQuery(name, f"{v!r} is not a type like `tool.completed`, a prefix like `tool.*`, "
                                         "or one of those led by `-` to exclude it")
        if "*" in values:  # everything, less what is excluded
            values = tuple(v for v in values if v.startswith("-"))
        return values or None

    def matches(self, values, get: Get) -> bool:
        kind = get(self.column)
        included, excluded = split_types(values)
        return ((not included or any(type_matches(kind, v) for v in included))
                and not any(type_matches(kind, v) for v in excluded))

    def schema(self) -> dict:
        return {"type": "string", "pattern": _TYPE_FILTER.pattern}


def split_types(values: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """A type filter's values: those it includes, and those (led by `-`) it excludes, without the `-`."""
    return [v for v in values if not v.startswith("-")], [v[1:] for v in values if v.startswith("-")]


def type_matches(kind: str, pattern: str) -> bool:
    return kind.startswith(pattern[:-1]) if pattern.endswith(".*") else kind == pattern


@dataclass(frozen=True)
class AnyTag(OneOf):
    """The event carries at least one of the tags (its `column` is a list)."""

    def matches(self, values, get: Get) -> bool:
        return bool(set(values) & set(get(self.column) or ()))


@dataclass(frozen=True)
class Moment(Kind):
    """The event's time `column` is at or after (`after`) or before the given time."""

    empty: ClassVar[Any] = None
    repeatable: ClassVar[bool] = False
    column: str
    after: bool

    def parse(self, name: str, raw: list[str]) -> datetime | None:
        return parse_time(name, raw[0]) if raw else None

    def to_args(self, value: datetime) -> list[str]:
        return [value.isoformat().replace("+00:00", "Z")]

    def matches(self, value: datetime, get: Get) -> bool:
        return get(self.column) >= value if self.after else get(self.column) < value

    def schema(self) -> dict:
        return {"type": "string", "format": "date-time"}


@dataclass(frozen=True)
class Search(Kind):
    """Every word of the text is a prefix of a word of the `columns`."""

    empty: ClassVar[Any] = ""
    repeatable: ClassVar[bool] = False
    columns: tuple[str, ...]

    def parse(self, name: str, raw: list[str]) -> str | None:
        text = " ".join(raw)
        if len(text) > MAX_SEARCH_CHARS:
            raise InvalidQuery(name, f"at most {MAX_SEARCH_CHARS} characters")
        return text if search_terms(text) else None

    def to_args(self, value: str) -> list[str]:
        return [value]

    def matches(self, value: str, get: Get) -> bool:
        words = search_terms(" ".join(get(column) or "" for column in self.columns))
        return all(any(w.startswith(t) for w in words) for t in search_terms(value))


# Quick time ranges: how far back from now, by name.
RANGES = {"15m": 15 * 60, "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}


@dataclass(frozen=True)
class Within(Kind):
    """The event's time `column` is within this long before now (`range=1h`).
    Relative: a saved or shared link means "the last hour" whenever it is opened,
    and the live feed goes on matching new events."""

    empty: ClassVar[Any] = None
    repeatable: ClassVar[bool] = False
    column: str

    def parse(self, name: str, raw: list[str]) -> str | None:
        if not raw:
            return None
        if raw[0] not in RANGES:
            raise InvalidQuery(name, f"{raw[0]!r} is not one of {', '.join(RANGES)}")
        return raw[0]

    def to_args(self, value: str) -> list[str]:
        return [value]

    @staticmethod
    def start(value: str, now: datetime | None = None) -> datetime:
        """The earliest time the range takes, now."""
        return (now or datetime.now(timezone.utc)) - timedelta(seconds=RANGES[value])

    def matches(self, value: str, get: Get) -> bool:
        return get(self.column) >= self.start(value)

    def schema(self) -> dict:
        return {"type": "string", "enum": list(RANGES)}


class ReadState(Kind):
    """Read (true) or unread (false) by whoever asks (see `store.reading.Reader`)."""

    empty: ClassVar[Any] = None
    repeatable: ClassVar[bool] = False

    def parse(self, name: str, raw: list[str]) -> bool | None:
        if raw and raw[0] not in ("true", "false"):
            raise InvalidQuery(name, "is true (read by you) or false (unread)")
        return raw[0] == "true" if raw else None

    def to_args(self, value: bool) -> list[str]:
        return ["true" if value else "false"]

    def matches(self, value: bool, get: Get) -> bool:
        return not value  # an event that has just arrived is unread, whoever reads

    def schema(self) -> dict:
        return {"type": "string", "enum": ["true", "false"]}


# ------------------------------------------------------------ form controls


@dataclass(frozen=True)
class Control:
    """How the filter form asks for a field; `feed/_filters.html` draws it by `widget`."""

    widget: str  # "search", "text", "menu" or "datetime"
    label: str
    placeholder: str = ""
    options: tuple = ()  # a menu's values or (value, label) pairs; a text field's suggestions


def text(label: str, placeholder: str = "", suggestions: tuple[str, ...] = ()) -> Control:
    return Control("text", label, placeholder, suggestions)


def menu(label: str, options: tuple) -> Control:
    return Control("menu", label, options=options)


def when(label: str) -> Control:
    return Control("datetime", label)


def search_box(placeholder: str) -> Control:
    return Control("search", "Search", placeholder)


SOURCES = ("api", "claude_code", "github", "hubspot", "salesforce", "webhook", "system")
KNOWN_TYPES = ("claude.*", "claude.tool.*", "claude.prompt.submitted", "claude.session.*", "project.*",
               "deployment.*", "github.*", "lead.*", "deal.won", "system.*")
READ_STATES = (("false", "unread"), ("true", "read"))
RANGE_LABELS = (("15m", "last 15 min"), ("1h", "last hour"), ("24h", "last 24 h"), ("7d", "last 7 days"),
                ("30d", "last 30 days"))


# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class FilterField:
    """One declared field of `ActivityFilter` (see the module docstring)."""

    kind: Kind
    description: str  # for OpenAPI
    form: Control | None  # None: no control; the value rides along from links, hidden
    name: str = ""

    def schema(self) -> dict:
        one = self.kind.schema()
        return {"type": "array", "items": one} if self.kind.repeatable else one


def declare(kind: Kind, description: str, form: Control | None = None):
    return field(default=kind.empty, metadata={"filter": FilterField(kind, description, form)})


@dataclass(frozen=True)
class ActivityFilter:
    """What a reader asked to see. Hashable, so live fan-out can group sockets by it."""

    type: tuple[str, ...] = declare(TypeName("type", comma=True), "Event type; repeat for several; `tool.*` "
                                    "matches a prefix; a leading `-` excludes (`-claude.tool.started`).",
                                    text("Type", "e.g. claude.tool.*, -claude.tool.started", KNOWN_TYPES))
    source: tuple[str, ...] = declare(OneOf("source", comma=True), "Producer family (api, claude_code, github, ...).",
                                      menu("Source", SOURCES))
    priority: tuple[str, ...] = declare(OneOf("priority", comma=True, choices=PRIORITIES),
                                        "low, normal, high or critical.", menu("Priority", PRIORITIES[::-1]))
    read: bool | None = declare(ReadState(), "`false`: only events the caller (this token) has not read; `true`: "
                                "only those it has.", menu("Read", READ_STATES))
    status: tuple[str, ...] = declare(OneOf("status", comma=True), "Outcome, e.g. success, failed.",
                                      text("Status", "e.g. failed", ("success", "failed", "started")))
    actor: tuple[str, ...] = declare(OneOf("actor_id"), "actor_id.", text("Actor", "e.g. an actor id"))
    project: tuple[str, ...] = declare(OneOf("project"), "Project.", text("Project", "e.g. billing"))
    environment: tuple[str, ...] = declare(OneOf("environment"), "Environment.", text("Environment", "e.g. production"))
    tag: tuple[str, ...] = declare(AnyTag("tags", comma=True), "Events carrying this tag; repeat for any of several.",
                                   text("Tag", "e.g. deploy"))
    range: str | None = declare(Within("occurred_at"), "occurred_at within this long before now: "
                                + ", ".join(RANGES) + ". Stays relative: the same link shows the latest hour whenever "
                                "it is read.", menu("Time range", tuple((k, label) for k, label in RANGE_LABELS)))
    since: datetime | None = declare(Moment("occurred_at", after=True), "occurred_at at or after this RFC 3339 time.",
                                     when("From"))
    until: datetime | None = declare(Moment("occurred_at", after=False), "occurred_at before this RFC 3339 time.",
                                     when("Until"))
    entity_type: tuple[str, ...] = declare(OneOf("entity_type"), "Entity type.")
    entity_id: tuple[str, ...] = declare(OneOf("entity_id"), "Entity id.")
    conversation_id: tuple[str, ...] = declare(OneOf("conversation_id"), "Conversation.")
    session_id: tuple[str, ...] = declare(OneOf("session_id"), "Session.")
    correlation_id: tuple[str, ...] = declare(OneOf("correlation_id"), "Correlation id.")
    q: str = declare(Search(("title", "summary", "actor_name", "entity_name")), "Full-text search over title, "
                     "summary, actor and entity names; each word matches as a prefix.",
                     search_box("Search, e.g. deploy billing"))

    def is_empty(self) -> bool:
        return self == ActivityFilter()

    @functools.cached_property
    def active(self) -> tuple[tuple[FilterField, Any], ...]:
        """The fields asked for, with their values, in table order."""
        return tuple((f, value) for f in FIELDS if (value := getattr(self, f.name)) != f.kind.empty)

    def to_args(self) -> list[tuple[str, str]]:
        """The filter as query-string pairs, the inverse of `parse_filter`."""
        return [(f.name, arg) for f, value in self.active for arg in f.kind.to_args(value)]

    @property
    def terms(self) -> list[str]:
        return search_terms(self.q)

    def matches(self, event) -> bool:
        """Whether an event (model or mapping) passes; the live path uses this
        instead of a query per event. It agrees with `store.apply_filter`."""
        get = event.get if isinstance(event, dict) else functools.partial(getattr, event)
        return all(f.kind.matches(value, get) for f, value in self.active)


FIELDS: tuple[FilterField, ...] = tuple(replace(f.metadata["filter"], name=f.name) for f in fields(ActivityFilter))
BY_NAME = {f.name: f for f in FIELDS}


def parse_filter(args, *, strict: bool = True, extra_keys: frozenset = frozenset()) -> ActivityFilter:
    """Build a filter from a query string (a werkzeug MultiDict).

    Empty values are ignored (an untouched form field). In strict mode (the
    JSON API) an unknown key is an error, so a typo does not silently widen
    the result; the dashboard's text fields may hold "a, b".
    """
    values: dict[str, Any] = {}
    for key in args.keys():
        raw = [v.strip() for v in args.getlist(key) if v.strip()]
        declared = BY_NAME.get(key)
        if not strict and declared is not None and declared.kind.comma:
            raw = [part.strip() for v in raw for part in v.split(",") if part.strip()]
        if any("\x00" in v for v in raw):
            raise InvalidQuery(key, "must not contain the NUL character")
        if declared is not None:
            value = declared.kind.parse(key, raw)
            if value is not None:
                values[key] = value
        elif strict and key not in PAGE_KEYS and key not in extra_keys:
            raise InvalidQuery(key, "is not a filter this endpoint knows")
    if values.get("since") and values.get("until") and values["since"] >= values["until"]:
        raise InvalidQuery("until", "must be after since")
    return ActivityFilter(**values)


def parse_stream_args(args, last_event_id: str | None = None) -> tuple[ActivityFilter, str | None]:
    """Filter and resume point of a stream (SSE, /ws).

    `since` is the time filter when it is a time, and the resume point when
    it is an event id (SSE's Last-Event-ID header wins); the two cannot be
    confused, since an event id is never a valid time.
    """
    since_id = None
    rest = args.copy()
    value = rest.get("since", "").strip()
    if is_uuid(value):
        since_id = value
        rest.poplist("since")
    if last_event_id:
        if not is_uuid(last_event_id.strip()):
            raise InvalidQuery("Last-Event-ID", "is not an event id")
        since_id = last_event_id.strip()
    return parse_filter(rest), since_id


# ------------------------------------------------------------ conversations
CONVERSATION_STATES = ("running", "ended")
CONVERSATION_KEYS = frozenset({"person", "failed", "state"})


@dataclass(frozen=True)
class ConversationQuery:
    """What the conversations page and API ask for: words in any of a
    conversation's events, its project, a person in it, only those with
    failures, whether it is running or ended (`ConversationSummary.state`),
    and (the API) any feed filter one of its events must match."""

    q: str = ""
    project: str = ""
    person: str = ""
    failed: bool = False
    state: str = ""  # "", "running" or "ended"
    events: ActivityFilter = ActivityFilter()


def parse_conversation_query(args, events: ActivityFilter | None = None) -> ConversationQuery:
    """The query from URL arguments. The API hands in its feed filter as
    `events` (q and project are among the feed's filters there)."""
    def text(name: str) -> str:
        value = args.get(name, "").strip()
        if len(value) > (MAX_SEARCH_CHARS if name == "q" else MAX_VALUE_CHARS):
            raise InvalidQuery(name, f"at most {MAX_SEARCH_CHARS if name == 'q' else MAX_VALUE_CHARS} characters")
        if "\x00" in value:
            raise InvalidQuery(name, "must not contain the NUL character")
        return value

    state, failed = text("state"), text("failed")
    if state and state not in CONVERSATION_STATES:
        raise InvalidQuery("state", "is running or ended")
    if failed not in ("", "true", "false"):
        raise InvalidQuery("failed", "is true or false")
    if events is not None:
        return ConversationQuery(person=text("person"), failed=failed == "true", state=state, events=events)
    return ConversationQuery(q=text("q"), project=text("project"), person=text("person"), failed=failed == "true",
                             state=state)

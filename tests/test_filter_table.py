"""The filter's one table (`filters.FIELDS`) drives five things; they stay in step.

For every declared field: the query string round-trips through the parser,
the OpenAPI document lists it on every filtered endpoint, the dashboard's
form carries it (and gives back the same filter), the SQL and the in-memory
match (`ActivityFilter.matches`, which live delivery uses) pick the same
events on both databases, and the index test covers it.
"""
import itertools
import random
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from werkzeug.datastructures import MultiDict

from activityweb import filters, store
from activityweb.filters import FIELDS, ActivityFilter, parse_filter
from activityweb.store.filtering import CLAUSES
from conftest import event
from test_indexes import FILTERS as INDEXED_QUERIES

# Relative to now, so quick ranges (range=24h) narrow the corpus too.
T0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(days=5)


def sample(declared) -> object:
    """A value of the field's kind, as `parse_filter` would make it."""
    kind = declared.kind
    if isinstance(kind, filters.TypeName):
        return ("deploy.*", "lead.replied")
    if isinstance(kind, filters.OneOf):
        return tuple(kind.choices[-2:]) if kind.choices else ("a-1", "b-2")
    if isinstance(kind, filters.Moment):
        return T0 if kind.after else T0 + timedelta(days=2)
    if isinstance(kind, filters.Search):
        return "deploy fail"
    if isinstance(kind, filters.ReadState):
        return False
    if isinstance(kind, filters.Within):
        return "7d"
    raise AssertionError(f"{declared.name}: a kind this test has no sample for ({type(kind).__name__})")


def everything() -> ActivityFilter:
    return ActivityFilter(**{f.name: sample(f) for f in FIELDS})


def test_every_field_round_trips_through_its_query_string():
    flt = everything()
    assert {name for name, _ in flt.to_args()} == {f.name for f in FIELDS}
    assert parse_filter(MultiDict(flt.to_args())) == flt
    assert parse_filter(MultiDict(flt.to_args()), strict=False) == flt
    for declared in FIELDS:  # and each alone
        alone = ActivityFilter(**{declared.name: sample(declared)})
        assert parse_filter(MultiDict(alone.to_args())) == alone, declared.name
    assert parse_filter(MultiDict(ActivityFilter(read=True).to_args())) == ActivityFilter(read=True)


def test_every_kind_has_its_sql():
    assert {type(f.kind) for f in FIELDS} <= set(CLAUSES)


def test_every_field_is_a_parameter_of_every_filtered_endpoint(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    filtered = [("/api/v1/activities", "get"), ("/api/v1/activities/stats", "get"),
                ("/api/v1/activities/export", "get"), ("/api/v1/activities/read-all", "post"),
                ("/api/v1/conversations", "get")]
    for path, method in filtered:
        parameters = {p["name"]: p for p in spec["paths"][path][method]["parameters"]}
        for declared in FIELDS:
            assert declared.name in parameters, f"{declared.name} is not a parameter of {method.upper()} {path}"
            is_array = parameters[declared.name]["schema"]["type"] == "array"
            assert is_array == declared.kind.repeatable, declared.name
            assert parameters[declared.name]["description"] == declared.description


class FormFields(HTMLParser):
    """The names and values the filter form would submit, as a browser sends them."""

    def __init__(self):
        super().__init__()
        self.pairs, self._in_form, self._select, self._option = [], False, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == "filter-form":
            self._in_form = True
        elif self._in_form and tag == "input" and attrs.get("name") and attrs.get("type") != "submit":
            self.pairs.append((attrs["name"], attrs.get("value", "")))
        elif self._in_form and tag == "select":
            self._select = attrs["name"]
        elif self._select and tag == "option" and "selected" in attrs:
            self.pairs.append((self._select, attrs.get("value", "")))

    def handle_endtag(self, tag):
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None


def held_by_the_form(declared):
    """A sample the field's control can hold: a menu holds one of its options,
    and a text field that does not split on commas (an id may hold one) one value."""
    form, value = declared.form, sample(declared)
    if form is not None and form.widget == "menu":
        option = form.options[0]
        return declared.kind.parse(declared.name, [option if isinstance(option, str) else option[0]])
    if form is not None and isinstance(value, tuple) and not declared.kind.comma:
        return value[:1]
    return value


def test_the_form_carries_every_field_and_gives_the_same_filter_back(local_app):
    flt = ActivityFilter(**{f.name: held_by_the_form(f) for f in FIELDS})
    html = local_app.test_client().get("/", query_string=flt.to_args()).get_data(as_text=True)
    form = FormFields()
    form.feed(html)
    names = {name for name, _ in form.pairs}
    for declared in FIELDS:
        assert declared.name in names, f"the filter form has no field for {declared.name}"
    assert parse_filter(MultiDict(form.pairs), strict=False) == flt


def test_the_index_test_covers_every_field():
    indexed = {kv.split("=")[0] for query in INDEXED_QUERIES for kv in query.split("&") if kv}
    # Read state is the reader's (read_cursors, read_marks), not a column of activities.
    assert {f.name for f in FIELDS} - {"read"} <= indexed


# ------------------------------------------------------ SQL and matches agree

TYPES = ["deploy.succeeded", "deploy.failed", "deployment.started", "lead.replied", "claude.tool.completed",
         "claude.tool", "claude.prompt.submitted"]


def corpus() -> list[dict]:
    rng = random.Random(7)
    pick = lambda *values: rng.choice(values)  # noqa: E731
    events = []
    for i in range(40):
        events.append(event(
            type=TYPES[i % len(TYPES)], title=pick("Deploy failed on billing", "Deployed web", "Lead replied",
                                                    "Bash: npm test", "Edit src/app.py"),
            summary=pick(None, "failing health check", "all green"), source=pick("api", "github", "hubspot"),
            actor_id=pick(None, "u-1", "u-2"), actor_name=pick(None, "Ada Lovelace", "Bob"),
            entity_type=pick(None, "project", "tool"), entity_id=pick(None, "p-1", "Bash"),
            entity_name=pick(None, "Billing API"), status=pick(None, "success", "failed", "started"),
            priority=pick("low", "normal", "high", "critical"), project=pick(None, "billing", "web"),
            environment=pick(None, "production", "staging"), conversation_id=pick(None, "c-1", "c-2"),
            session_id=pick(None, "s-1", "s-2"), correlation_id=pick(None, "r-1", "r-2"),
            tags=rng.sample(["deploy", "ci", "lead", "prod"], rng.randint(0, 2)),
            occurred_at=(T0 + timedelta(hours=3 * i)).isoformat()))
    return events


def candidates(declared, stored: list[dict]) -> list:
    """Values of the field worth asking for against this corpus, as parse_filter makes them."""
    kind = declared.kind
    if isinstance(kind, filters.Moment):
        times = sorted({e[kind.column] for e in stored})
        return [times[0], times[len(times) // 2], times[len(times) // 2] + timedelta(microseconds=1), times[-1]]
    if isinstance(kind, filters.Search):
        return ["deploy", "dep fail", "lovelace", "npm test", "app py", "nothing"]
    if isinstance(kind, filters.ReadState):
        return [False, True]
    if isinstance(kind, filters.Within):
        return list(filters.RANGES)
    if isinstance(kind, filters.AnyTag):
        seen = sorted({t for e in stored for t in e[kind.column]})
    else:
        seen = sorted({e[kind.column] for e in stored if e[kind.column] is not None})
    values = [(v,) for v in seen] + [tuple(seen[:2]), ("nope",)]
    if isinstance(kind, filters.TypeName):
        values += [("deploy.*",), ("claude.*",), ("claude.tool.*",), ("deploy.*", "lead.replied"),
                   ("-claude.tool.*",), ("-deploy.failed", "-lead.replied"), ("claude.*", "-claude.tool.completed")]
    return values


@pytest.fixture
def stored(app, client, auth_headers):
    assert client.post("/api/v1/activities", json=corpus(), headers=auth_headers).status_code == 201
    with app.app_context():
        tenant = store.find_tenant("acme")
        return tenant.id, list(store.stream_activities(tenant.id, ActivityFilter()))


def test_sql_and_the_in_memory_match_pick_the_same_events(app, stored):
    tenant_id, events = stored
    reader = store.Reader(tenant_id, "token:0")  # has read nothing, like everyone for an event just arrived
    asked = [ActivityFilter(**{f.name: value}) for f in FIELDS for value in candidates(f, events)]
    rng = random.Random(11)
    for _ in range(60):  # and fields together
        chosen = rng.sample(FIELDS, 3)
        asked.append(ActivityFilter(**{f.name: rng.choice(candidates(f, events)) for f in chosen}))
    with app.app_context():
        for flt in asked:
            by_sql = {e["id"] for e in store.stream_activities(tenant_id, flt, reader)}
            in_memory = {e["id"] for e in events if flt.matches(e)}
            assert by_sql == in_memory, f"{flt.to_args()}: SQL and matches disagree"
    # The corpus tells the filters apart: most fields match some events but not all.
    narrowing = [f for f in FIELDS if any(0 < sum(ActivityFilter(**{f.name: v}).matches(e) for e in events) < len(events)
                                          for v in candidates(f, events))]
    assert {f.name for f in FIELDS} - {f.name for f in narrowing} == {"read"}


def test_every_pair_of_fields_narrows_together():
    """Different keys narrow: a filter of two fields is the intersection of each alone."""
    events = [dict(store_shape(e), id=str(i)) for i, e in enumerate(corpus())]
    for a, b in itertools.combinations(FIELDS, 2):
        for va, vb in itertools.islice(itertools.product(candidates(a, events), candidates(b, events)), 6):
            both = ActivityFilter(**{a.name: va, b.name: vb})
            one, other = ActivityFilter(**{a.name: va}), ActivityFilter(**{b.name: vb})
            assert [both.matches(e) for e in events] == [one.matches(e) and other.matches(e) for e in events]


def store_shape(body: dict) -> dict:
    """A posted event as the store returns it (times as datetimes, defaults filled)."""
    shaped = {"source": "api", "priority": "normal", "tags": [], "summary": None, **body}
    shaped["occurred_at"] = datetime.fromisoformat(body["occurred_at"])
    return shaped

"""The hourly and daily rollups stats read: equal to a scan after every kind of write, on both databases."""
import random
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from activityweb import store
from activityweb.extensions import db
from activityweb.filters import parse_filter
from activityweb.models import DURATION_BOUNDS, ROLLUP_SHARDS
from activityweb.store import rollups
from conftest import event

BUCKET_ERROR = 2 ** 0.25 - 1
START = datetime(2026, 11, 20, 6, tzinfo=timezone.utc)
TYPES = ["claude.tool.completed", "claude.tool.failed", "claude.prompt.submitted", "deployment.succeeded",
         "lead.new"]
FILTERS = ["", "type=claude.tool.*", "type=lead.new&type=deployment.*", "source=github", "status=failed",
           "priority=high&source=claude_code", "since=2026-11-20T07:20:00Z",
           "since=2026-11-20T07:20:00Z&until=2026-11-20T11:45:10Z", "until=2026-11-20T09:00:00Z",
           "since=2026-11-20T08:10:00Z&until=2026-11-20T08:50:00Z&type=claude.*"]


# Filters over several days, for series by the day: whole days, part-days and part-hours at the ends.
DAY_FILTERS = ["", "type=claude.tool.*", "status=failed&source=claude_code", "since=2026-11-21T07:20:00Z",
               "until=2026-11-22T13:10:00Z", "since=2026-11-20T22:59:59Z&until=2026-11-23T00:00:01Z",
               "since=2026-11-21T00:00:00Z&until=2026-11-23T00:00:00Z&type=lead.new",
               "since=2026-11-21T03:00:00Z&until=2026-11-21T20:30:00Z"]


def corpus(count: int = 400, seed: int = 7, hours: int = 8) -> list[dict]:
    """`count` events over `hours` hours from START."""
    rng = random.Random(seed)
    events = []
    for i in range(count):
        kind = rng.choice(TYPES)
        tool = kind.startswith("claude.tool")
        events.append(event(
            title=f"e{i}", source_id=f"{seed}-{i}", type=kind,
            source="claude_code" if kind.startswith("claude") else rng.choice(["github", "hubspot"]),
            status=rng.choice(["success", "failed", None, "started"]), priority=rng.choice(["normal", "high"]),
            entity_type="tool" if tool else rng.choice([None, "project"]),
            entity_id=rng.choice(["Bash", "Edit", "Read"]) if tool else rng.choice([None, "billing"]),
            actor_id=rng.choice(["u-1", "u-2", None]),
            duration_ms=rng.choice([None, 0, 1, 7, int(rng.lognormvariate(6, 2))]),
            occurred_at=(START + timedelta(seconds=rng.randrange(hours * 3600))).isoformat()))
    return events


def stats_pair(app, query: str = "", bucket: str = "hour"):
    with app.app_context():
        flt = parse_filter(MultiDict([kv.split("=", 1) for kv in query.split("&") if kv]))
        rolled = store.activity_stats(1, flt, bucket)
        scanned = store.activity_stats(1, flt, bucket, use_rollups=False)
        db.session.rollback()
        return rolled, scanned


def assert_same(rolled, scanned, query=""):
    assert rolled.path == "rollups" and scanned.path == "scan"
    for name in ("total", "first_at", "last_at", "by_type", "by_source", "by_status", "by_priority", "bucket",
                 "series", "top_actors", "top_entities"):
        assert getattr(rolled, name) == getattr(scanned, name), f"{query}: {name}"
    assert [t for t, _ in rolled.tools] == [t for t, _ in scanned.tools], query
    for got, exact in [(rolled.durations, scanned.durations)] + [
            (a, b) for (_, a), (_, b) in zip(rolled.tools, scanned.tools)]:
        assert (got.count, got.max) == (exact.count, exact.max), query
        for p in ("p50", "p95"):
            if getattr(exact, p) is None:
                assert getattr(got, p) is None
            else:
                assert getattr(got, p) == pytest.approx(getattr(exact, p), rel=BUCKET_ERROR, abs=1), (query, p)


def rollup_rows(app, table=rollups.rollups) -> dict:
    """A rollup table summed over shards, by key."""
    r = table.c
    key = [r.tenant_id, r[rollups.PERIOD[table]], r.type, r.source, r.status, r.priority, r.tool]
    values = [c for c in r if c.name not in {k.name for k in key} | {"shard", "duration_max"}]
    with app.app_context():
        rows = db.session.execute(sa.select(*key, sa.func.max(r.duration_max), *(sa.func.sum(v) for v in values))
                                  .group_by(*key)).all()
        db.session.rollback()
    # By key: (events, timed, max, d0, ...).
    return {tuple(row[:7]): (int(row[8]), int(row[9]), row[7], *(int(v) for v in row[10:])) for row in rows}


def assert_days_sum_their_hours(app) -> None:
    """Every daily row is its hours' rows added up (the maximum by max), for
    every compacted day; the days after have none."""
    with app.app_context():
        marker = rollups.daily_before(db.session.connection())
        db.session.rollback()
    days: dict = {}
    for (tenant, hour, *rest), (events, timed, longest, *buckets) in rollup_rows(app).items():
        day = rollups.truncate_day(hour if hour.tzinfo else hour.replace(tzinfo=timezone.utc))
        if day >= marker:
            continue
        key = (tenant, day, *rest)
        was = days.get(key)
        days[key] = (events, timed, longest, *buckets) if was is None else (
            was[0] + events, was[1] + timed, max(x for x in (was[2], longest) if x is not None)
            if (was[2], longest) != (None, None) else None, *(a + b for a, b in zip(was[3:], buckets)))
    stored = {(tenant, rollups.truncate_day(day if day.tzinfo else day.replace(tzinfo=timezone.utc)), *rest): v
              for (tenant, day, *rest), v in rollup_rows(app, rollups.daily_rollups).items()}
    assert stored == days


def post(client, headers, events, size=100):
    for start in range(0, len(events), size):
        assert client.post("/api/v1/activities", json=events[start:start + size], headers=headers).status_code == 201


def test_the_bucket_in_python_is_the_bucket_in_sql(app):
    durations = [0, 1, 2, 3, 4, 5, 999, 1000, 1024, 1025, 16777215, 16777216, 10 ** 12] + list(DURATION_BOUNDS)
    with app.app_context():
        dialect = db.engine.dialect.name
        got = {d: db.session.execute(sa.select(rollups._bucket_of(sa.literal(d, sa.BigInteger), dialect))).scalar()
               for d in durations}
    assert got == {d: rollups.duration_bucket(d) for d in durations}


@pytest.mark.parametrize("query", FILTERS)
def test_rollups_equal_a_scan_after_ingest(app, client, auth_headers, query):
    post(client, auth_headers, corpus())
    post(client, auth_headers, corpus(50, seed=8)[:50])  # more batches into the same hours
    assert_same(*stats_pair(app, query), query)


@pytest.mark.parametrize("query", DAY_FILTERS)
def test_daily_rollups_equal_a_scan_by_the_day(app, client, auth_headers, query):
    """Four days of events: whole days come from the daily rows, the hours and
    part-hours at either end from the hourly rows and the events."""
    post(client, auth_headers, corpus(600, hours=4 * 24))
    post(client, auth_headers, corpus(60, seed=8, hours=4 * 24))
    assert_days_sum_their_hours(app)
    rolled, scanned = stats_pair(app, query, "day")
    assert rolled.bucket == "day" and rolled.total > 0
    assert_same(rolled, scanned, query)


def test_days_are_compacted_once_over_and_late_events_still_count(app, client, auth_headers, monkeypatch):
    """With the marker moved back, the later days' events go to the hourly
    rows only and stats by the day read those days' hours; compacting sums
    them into daily rows and moves the marker; an event then posted into a
    compacted day is added to its daily rows by the writer; and a stats read
    compacts what has ended since."""
    from activityweb.store import stats

    monkeypatch.setattr(stats, "compact_if_due", lambda: None)  # compacted by hand below
    with app.app_context():
        db.session.execute(sa.update(rollups.rollup_state).values(daily_before=START + timedelta(days=1, hours=-6)))
        db.session.commit()
    post(client, auth_headers, corpus(300, hours=4 * 24))
    with app.app_context():
        d = rollups.daily_rollups.c
        assert db.session.execute(sa.select(sa.func.max(d.day))).scalar().day == 20  # only the 20th is compacted
        db.session.rollback()
    assert_days_sum_their_hours(app)
    for query in DAY_FILTERS[:3]:
        assert_same(*stats_pair(app, query, "day"), query)
    with app.app_context():
        assert rollups.compact(db.session.connection(), now=START + timedelta(days=3, hours=5)) == 2
        db.session.commit()
        assert rollups.compact(db.session.connection(), now=START + timedelta(days=3, hours=6)) == 0
        marker = rollups.daily_before(db.session.connection())
        db.session.rollback()
    assert marker == datetime(2026, 11, 23, tzinfo=timezone.utc)
    assert_days_sum_their_hours(app)
    late = event(title="late", source_id="late-1", type="lead.new", source="hubspot", duration_ms=40,
                 occurred_at=(START + timedelta(days=1, hours=3)).isoformat())
    post(client, auth_headers, [late])
    assert_days_sum_their_hours(app)
    for query in DAY_FILTERS:
        assert_same(*stats_pair(app, query, "day"), query)
    monkeypatch.undo()
    assert_same(*stats_pair(app, "", "day"))
    with app.app_context():
        assert rollups.daily_before(db.session.connection()) == rollups.truncate_day(datetime.now(timezone.utc))
        db.session.rollback()
    assert_days_sum_their_hours(app)


def test_a_series_by_the_day_reads_the_daily_rows(app, client, auth_headers):
    """Not just equal: the daily rows are what is read (a daily row changed
    by hand shows in the stats by the day, not in those by the hour)."""
    post(client, auth_headers, corpus(200, hours=3 * 24))
    with app.app_context():
        d = rollups.daily_rollups.c
        changed = db.session.execute(sa.update(rollups.daily_rollups)
                                     .where(d.day == datetime(2026, 11, 21, tzinfo=timezone.utc))
                                     .values(events=d.events + 1000)).rowcount
        db.session.commit()
    by_day, by_hour = stats_pair(app, "", "day")[0], stats_pair(app, "", "hour")[0]
    assert changed > 0 and by_hour.total == 200
    assert by_day.total == 200 + 1000 * changed


def test_repeats_are_not_counted_twice(app, client, auth_headers):
    events = corpus(60)
    post(client, auth_headers, events)
    before = rollup_rows(app)
    post(client, auth_headers, events[:30] + corpus(5, seed=9))  # 30 repeats, 5 new
    after = rollup_rows(app)
    assert sum(v[0] for v in after.values()) == sum(v[0] for v in before.values()) + 5
    assert_same(*stats_pair(app))


def test_prune_and_a_retention_change_keep_rollups_equal_to_a_scan(app, client, auth_headers):
    post(client, auth_headers, corpus())
    with app.app_context():
        # Keep 5 days: with `now` 5 days and 3.5 hours past START, the events
        # of the first 3.5 hours have expired; pruning cuts an hour in two.
        store.set_retention(1, 5, restamp=True)
        pruned = store.prune(1, batch_size=37, now=START + timedelta(days=5, hours=3, minutes=30))
    assert pruned.deleted > 0 and pruned.batches > 1
    for query in FILTERS:
        assert_same(*stats_pair(app, query), query)
    assert_days_sum_their_hours(app)


def test_prune_across_days_keeps_daily_rollups_equal_to_a_scan(app, client, auth_headers):
    post(client, auth_headers, corpus(500, hours=4 * 24))
    with app.app_context():
        store.set_retention(1, 5, restamp=True)  # the first day and a half expire
        pruned = store.prune(1, batch_size=60, now=START + timedelta(days=6, hours=12))
    assert pruned.deleted > 0 and pruned.batches > 1
    assert_days_sum_their_hours(app)
    for query in DAY_FILTERS:
        assert_same(*stats_pair(app, query, "day"), query)


def test_rebuild_equals_what_ingest_kept(app, client, auth_headers, runner):
    post(client, auth_headers, corpus())
    kept = rollup_rows(app)
    result = runner.invoke(args=["rollups", "rebuild", "--tenant", "acme"])
    assert result.exit_code == 0, result.output
    assert "rebuilt" in result.output
    assert rollup_rows(app) == kept
    with app.app_context():
        db.session.execute(sa.delete(rollups.rollups))
        db.session.commit()
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    assert rollup_rows(app) == kept
    assert_days_sum_their_hours(app)


def test_seeding_keeps_rollups(app, runner):
    assert runner.invoke(args=["seed", "--events", "3000", "--seed", "1"]).exit_code == 0
    seeded = rollup_rows(app)
    assert sum(v[0] for v in seeded.values()) == 3000
    assert_days_sum_their_hours(app)
    assert runner.invoke(args=["rollups", "rebuild"]).exit_code == 0
    assert rollup_rows(app) == seeded


@pytest.mark.parametrize("backend", ["postgresql"])
def test_eight_writers_to_one_hour_do_not_wait_for_each_other(backend, app, make_token):
    """Eight transactions add to the same rollup key and stay open until all
    eight have written: if they queued on one row lock, the barrier would
    never fill. Then all eight commit and every event is counted."""
    from activityweb.store import ingest

    make_token()
    writers = 8
    barrier = threading.Barrier(writers, timeout=20)
    errors = []
    with app.app_context():
        engine = db.engine

    def write(n: int):
        try:
            with app.app_context(), engine.connect() as conn:
                now = datetime.now(timezone.utc)
                rows = [{**event(title=f"w{n}-{i}", type="tool.done", status="success", duration_ms=100),
                         "id": f"{n:08d}-0000-7000-8000-{i:012d}", "tenant_id": 1, "source_id": f"w{n}-{i}",
                         "source": "api", "priority": "normal",
                         "occurred_at": START + timedelta(minutes=i), "received_at": now,
                         "tags": [], "data": {}} for i in range(10)]
                for name in ingest._PG_COLUMNS:
                    for row in rows:
                        row.setdefault(name, None)
                with conn.begin():
                    assert len(ingest._insert_rows(conn, rows)) == 10
                    barrier.wait()  # every writer has written, none has committed
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with app.app_context():
        shards, events = db.session.execute(sa.select(
            sa.func.count(sa.distinct(rollups.rollups.c.shard)), sa.func.sum(rollups.rollups.c.events))).one()
    assert events == writers * 10 and shards == writers <= ROLLUP_SHARDS
    assert_days_sum_their_hours(app)


def test_stats_say_when_the_scan_or_the_top_lists_are_capped(app, client, auth_headers, monkeypatch):
    from activityweb.store import stats

    post(client, auth_headers, corpus(100))
    monkeypatch.setattr(stats, "SCAN_CAP", 40)
    monkeypatch.setattr(stats, "TOP_WINDOW", 30)
    with app.app_context():
        scanned = store.activity_stats(1, parse_filter(MultiDict([("actor", "u-1")])))
        rolled = store.activity_stats(1, parse_filter(MultiDict()))
        c = store.activities.c
        newest = db.session.execute(sa.select(c.occurred_at, c.actor_id).order_by(c.occurred_at.desc())).all()
    # The scan reads the newest 40 events, matching or not, and counts u-1's among them.
    assert scanned.path == "scan" and scanned.scanned_since == newest[39][0]
    assert scanned.total == sum(actor == "u-1" for at, actor in newest if at >= newest[39][0])
    assert rolled.path == "rollups" and rolled.total == 100 and rolled.top_lists_since == newest[29][0]
    assert sum(n for _, _, n in rolled.top_actors) <= 30
    # A rare filter's lists count its events among the newest 40 of any kind, not its newest 30.
    with app.app_context():
        rare = store.activity_stats(1, parse_filter(MultiDict([("source", "github")])))
        github = db.session.execute(sa.select(c.occurred_at, c.actor_id, c.source)
                                    .order_by(c.occurred_at.desc())).all()
    in_window = [actor for at, actor, source in github if source == "github" and at >= newest[39][0]]
    assert rare.path == "rollups" and 0 < len(in_window) < 30 and rare.top_lists_since == newest[39][0]
    assert sum(n for _, _, n in rare.top_actors) == sum(actor is not None for actor in in_window)


def test_the_filter_fields_the_rollups_serve_exist():
    from activityweb.filters import BY_NAME
    from activityweb.store.stats import ROLLUP_FIELDS

    assert ROLLUP_FIELDS <= set(BY_NAME)
    assert replace(parse_filter(MultiDict([("q", "x")])), q="").is_empty()


def test_the_migration_rolls_up_the_events_already_stored(backend, tmp_path, request):
    """A populated database upgraded from 0006 gets rollups of its events."""
    from flask_migrate import downgrade, upgrade

    from activityweb.models import Activity
    from conftest import unmigrated_app

    now = datetime.now(timezone.utc)
    events = [{**e, "id": f"01900000-0000-7000-8000-{i:012d}", "tenant_id": 1, "received_at": now,
               "occurred_at": datetime.fromisoformat(e["occurred_at"]),
               "expires_at": datetime.fromisoformat(e["occurred_at"]) + timedelta(days=365), "tags": [], "data": {},
               "priority": e["priority"]} for i, e in enumerate(corpus(120))]
    tally = rollups.Tally()
    for e in events:
        tally.add(e, 1)
    with unmigrated_app(backend, tmp_path, request, "roll") as app:
        with app.app_context():
            upgrade(revision="0006")
            db.session.execute(sa.text("INSERT INTO tenants (slug, name, created_at) VALUES ('acme', 'Acme', :t)"),
                               {"t": now})
            columns = {c.name for c in Activity.__table__.columns}
            db.session.execute(sa.insert(Activity.__table__), [{k: v for k, v in e.items() if k in columns}
                                                               for e in events])
            db.session.commit()
            upgrade()
            db.session.remove()
        expected = {tuple(p[k] for k in rollups.ROLLUP_KEY[:-1]): (p["events"], p["timed"], p["duration_max"],
                                                                   *(p[f"d{k}"] for k in range(98)))
                    for p in tally.params()}
        assert rollup_rows(app) == expected
        assert_days_sum_their_hours(app)
        with app.app_context():
            downgrade(revision="0006")
            assert "activity_rollups" not in sa.inspect(db.engine).get_table_names()
            db.session.remove()
            db.engine.dispose()


def test_the_compact_command_and_prune_sum_ended_days(app, client, auth_headers, runner):
    post(client, auth_headers, corpus(100, hours=3 * 24))
    with app.app_context():
        db.session.execute(sa.update(rollups.rollup_state).values(daily_before=START.replace(hour=0)))
        db.session.execute(sa.delete(rollups.daily_rollups))
        db.session.commit()
    result = runner.invoke(args=["rollups", "compact"])
    ended = (datetime.now(timezone.utc).date() - START.date()).days  # every day from START's to yesterday
    assert result.exit_code == 0 and f"rollups: summed {ended} ended day(s) into daily rows" in result.output, \
        result.output
    assert_days_sum_their_hours(app)
    assert "rollups:" not in runner.invoke(args=["rollups", "compact"]).output  # nothing left to do
    with app.app_context():
        db.session.execute(sa.update(rollups.rollup_state).values(daily_before=START.replace(hour=0)))
        db.session.execute(sa.delete(rollups.daily_rollups))
        db.session.commit()
    result = runner.invoke(args=["prune"])
    assert result.exit_code == 0 and f"rollups: summed {ended} ended day(s)" in result.output, result.output
    assert_days_sum_their_hours(app)

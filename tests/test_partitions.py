"""PostgreSQL's monthly partitions (migration 0017, store/partitions.py), on a
populated database of their own: the upgrade keeps every event where its month
is, duplicates are caught across months, an expired month is dropped whole with
what refers to it, and months are made before they are needed."""
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from activityweb import store
from activityweb.extensions import db
from activityweb.store import partitions
from activityweb.store.tables import activities
from conftest import event
from test_rollups import assert_days_sum_their_hours, rollup_rows

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])

DAYS = 130  # events over the last 130 days: five months or so
KEEP_DAYS = 40


def _valid(occurred_at: datetime | None = None, **fields) -> dict:
    """An event as ingest takes it: validated, every field present."""
    from activityweb.schemas import ActivityIn

    body = ActivityIn.model_validate(event(**fields)).model_dump()
    return {**body, "occurred_at": occurred_at or body["occurred_at"]}


def _scalar(sql: str, **params):
    return db.session.execute(sa.text(sql), params).scalar()


def _month_of(event_id: str) -> str:
    return _scalar("SELECT tableoid::regclass::text FROM activities WHERE id = :id", id=event_id)


def _rows_equal_a_rebuild(app) -> None:
    kept = rollup_rows(app)
    with app.app_context():
        store.rebuild_rollups(None)
        db.session.remove()
    assert rollup_rows(app) == kept
    assert sum(v[0] for v in kept.values()) == _count(app)


def _count(app) -> int:
    with app.app_context():
        n = _scalar("SELECT count(*) FROM activities")
        db.session.remove()
    return n


@pytest.fixture
def populated(backend, tmp_path, request):
    """An app on a database filled at revision 0016 (one table), then upgraded."""
    from flask_migrate import upgrade

    from activityweb.models import Activity
    from conftest import unmigrated_app

    now = datetime.now(timezone.utc)
    with unmigrated_app(backend, tmp_path, request, "parts") as app:
        with app.app_context():
            upgrade(revision="0016")
            db.session.execute(sa.text("INSERT INTO tenants (slug, name, created_at) VALUES ('acme', 'Acme', :t)"),
                               {"t": now})
            rows = []
            for i in range(DAYS * 2):
                at = now - timedelta(days=DAYS) + timedelta(hours=12 * i)
                rows.append({"id": f"01900000-0000-7000-8000-{i:012d}", "tenant_id": 1, "type": "deploy.done",
                             "source": "ci", "source_id": f"run-{i}", "title": f"run {i}", "priority": "normal",
                             "status": "success", "duration_ms": 100 + i, "tags": [], "data": {},
                             "occurred_at": at, "received_at": now, "expires_at": at + timedelta(days=365)})
            columns = {c.name for c in Activity.__table__.columns}
            db.session.execute(sa.insert(Activity.__table__), [{k: v for k, v in r.items() if k in columns}
                                                               for r in rows])
            db.session.execute(sa.text("INSERT INTO read_marks VALUES (1, 'ada', :first), (1, 'ada', :last)"),
                               {"first": rows[0]["id"], "last": rows[-1]["id"]})
            db.session.commit()
            upgrade()
            db.session.remove()
        yield app, rows
        from conftest import teardown_app
        teardown_app(app)


def test_the_upgrade_puts_each_event_in_its_month(populated):
    app, rows = populated
    with app.app_context():
        assert _scalar("SELECT count(*) FROM activities") == len(rows)
        assert _scalar("SELECT count(*) FROM activity_keys") == len(rows)
        for row in rows[::37] + [rows[-1]]:
            assert _month_of(row["id"]) == partitions.month_name(partitions.month_start(row["occurred_at"]))
        names = {p.name for p in partitions.partitions(db.session.connection())}
        ahead = partitions.add_months(partitions.month_start(datetime.now(timezone.utc)), partitions.AHEAD_MONTHS)
        assert {partitions.BEFORE, partitions.DEFAULT, partitions.month_name(ahead)} <= names
        assert not db.session.execute(sa.text(
            "SELECT EXISTS (SELECT 1 FROM ONLY activities_default UNION ALL SELECT 1 FROM activities_before)")).scalar()
        db.session.remove()
    _rows_equal_a_rebuild(app)


def test_a_duplicate_is_caught_across_months(populated):
    from activityweb import auth

    app, rows = populated
    with app.app_context():
        _, secret = auth.create_token(store.get_or_create_tenant("acme"), "test", ["ingest", "read"])
    headers = {"Authorization": f"Bearer {secret}"}
    old = rows[0]
    client = app.test_client()
    # The same key, told as having occurred now: another month than the stored one.
    again = client.post("/api/v1/activities", headers=headers, json=event(source="ci", source_id=old["source_id"]))
    assert again.status_code == 200 and again.get_json()["duplicate"] is True
    assert again.get_json()["id"] == old["id"]
    fresh = client.post("/api/v1/activities", headers=headers, json=event(source="ci", source_id="run-new"))
    assert fresh.status_code == 201
    assert _count(app) == len(rows) + 1


def test_search_finds_upgraded_and_new_events_in_every_month(populated):
    """The upgraded months keep their events' search vectors; new events get theirs."""
    from activityweb import auth

    app, rows = populated
    with app.app_context():
        _, secret = auth.create_token(store.get_or_create_tenant("acme"), "test", ["ingest", "read"])
    headers = {"Authorization": f"Bearer {secret}"}
    client = app.test_client()
    assert client.post("/api/v1/activities", headers=headers,
                       json=event(title="run fresh-one", source="ci", source_id="run-fresh")).status_code == 201
    assert [a["title"] for a in client.get("/api/v1/activities?q=fresh", headers=headers).get_json()["items"]] \
        == ["run fresh-one"]
    for i in range(0, len(rows), 20):  # every month's events, one by one
        found = client.get(f"/api/v1/activities?q=run+{i}&limit=200", headers=headers).get_json()["items"]
        assert rows[i]["id"] in {a["id"] for a in found}, (i, rows[i]["occurred_at"])


def test_every_month_has_the_position_index_without_the_id(populated):
    """Migration 0018's index is on each partition, the upgraded ones and one made after."""
    app, _ = populated
    with app.app_context():
        partitions.ensure(datetime.now(timezone.utc) + timedelta(days=130))  # months made after the migration
        db.session.remove()

        def indexed(sql_filter: str) -> int:
            return _scalar(
                "SELECT count(*) FROM pg_partition_tree('activities') t WHERE t.isleaf AND " + sql_filter + " ("
                "SELECT 1 FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid "
                "WHERE i.inhparent = 'ix_activities_position'::regclass AND x.indrelid = t.relid AND x.indisvalid "
                "AND pg_get_indexdef(x.indexrelid) LIKE '%(tenant_id, txid)')")

        assert indexed("NOT EXISTS") == 0
        assert indexed("EXISTS") == len(partitions.partitions(db.session.connection())) >= 7
        assert _scalar("SELECT to_regclass('ix_activities_position_0007')") is None
        db.session.remove()


def test_a_key_whose_event_was_deleted_by_hand_does_not_block_it(populated):
    app, rows = populated
    with app.app_context():
        db.session.execute(sa.text("DELETE FROM activities WHERE id = :id"), {"id": rows[5]["id"]})
        db.session.commit()
        again = store.write_activities([(1, [_valid(source="ci", source_id=rows[5]["source_id"])])])[0][0]
        assert not again.duplicate
        assert _scalar("SELECT count(*) FROM activities WHERE source_id = :s", s=rows[5]["source_id"]) == 1
        assert _scalar("SELECT activity_id::text FROM activity_keys WHERE key = activity_key(1, 'ci', :s)",
                       s=rows[5]["source_id"]) == again.activity["id"]
        db.session.remove()


def test_twenty_writers_of_one_key_in_twenty_months_store_one_event(populated):
    """Each writer its own connection and statement: the key table, not the
    process's batcher, is what keeps one."""
    app, _ = populated
    now = datetime.now(timezone.utc)

    def write(i):
        with app.app_context():
            return store.write_activities([(1, [_valid(now - timedelta(days=6 * i), source="ci",
                                                       source_id="race")])])[0][0]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(write, range(20)))
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.activity["id"] for r in results}) == 1
    with app.app_context():
        assert _scalar("SELECT count(*) FROM activities WHERE source_id = 'race'") == 1
        assert _scalar("SELECT count(*) FROM activity_keys WHERE activity_id = :id", id=results[0].activity["id"]) == 1
        db.session.remove()


def test_an_expired_month_is_dropped_with_its_keys_marks_and_rollups(populated):
    app, rows = populated
    now = datetime.now(timezone.utc)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["tenants", "retention", "acme", str(KEEP_DAYS), "--restamp"]).exit_code == 0
    expired_months = {partitions.month_name(partitions.month_start(r["occurred_at"])) for r in rows
                      if partitions.next_month(partitions.month_start(r["occurred_at"])) <= now - timedelta(days=KEEP_DAYS)}
    assert len(expired_months) >= 2
    result = runner.invoke(args=["prune"])
    assert result.exit_code == 0, result.output
    dropped = {line.split()[2].rstrip(":") for line in result.output.splitlines() if line.startswith("dropped partition")}
    assert dropped == expired_months
    kept = [r for r in rows if r["occurred_at"] > now - timedelta(days=KEEP_DAYS)]
    with app.app_context():
        names = {p.name for p in partitions.partitions(db.session.connection())}
        assert not names & expired_months
        assert not db.session.execute(sa.text(
            "SELECT relname FROM pg_class WHERE relname = ANY(:names)"), {"names": list(expired_months)}).first()
        # The rest of the expired went row by row; what is kept is exactly what has not expired.
        assert {str(i) for i in db.session.execute(sa.select(activities.c.id)).scalars()} == {r["id"] for r in kept}
        assert _scalar("SELECT count(*) FROM activity_keys") == len(kept)
        assert list(db.session.execute(sa.text("SELECT activity_id::text FROM read_marks")).scalars()) == [rows[-1]["id"]]
        db.session.remove()
    _rows_equal_a_rebuild(app)
    assert_days_sum_their_hours(app)
    assert "dropped partition" not in runner.invoke(args=["prune"]).output  # nothing more to drop


def test_a_month_is_made_before_it_is_needed(populated):
    app, _ = populated
    now = datetime.now(timezone.utc)
    later = now + timedelta(days=200)
    with app.app_context():
        made = partitions.ensure(later)
        names = {p.name for p in partitions.partitions(db.session.connection())}
        db.session.remove()
    month = partitions.month_start(later)
    for _ in range(partitions.AHEAD_MONTHS + 1):
        assert partitions.month_name(month) in names
        month = partitions.next_month(month)
    assert made and all(name in names for name in made)
    with app.app_context():
        assert partitions.ensure(later) == []  # nothing left to make
        db.session.remove()


def test_events_without_their_month_move_into_it_when_it_is_made(populated):
    """A month missing (ensure has not run): its events go to the default
    partition, and move into the month once it is made, counted once."""
    app, _ = populated
    month = partitions.next_month(partitions.month_start(datetime.now(timezone.utc)))
    name = partitions.month_name(month)
    with app.app_context():
        db.session.execute(sa.text(f"DROP TABLE {name}"))
        db.session.commit()
        stray = store.write_activities([(1, [_valid(month + timedelta(hours=1), source_id="early")])])[0][0]
        assert _month_of(stray.activity["id"]) == partitions.DEFAULT
        db.session.remove()
    before = rollup_rows(app)
    with app.app_context():
        assert name in partitions.ensure()
        assert _month_of(stray.activity["id"]) == name
        assert _scalar("SELECT count(*) FROM activities WHERE source_id = 'early'") == 1
        db.session.remove()
    assert rollup_rows(app) == before


def test_ingest_makes_the_months_ahead(populated):
    from activityweb.store import ingest

    app, _ = populated
    ahead = partitions.add_months(partitions.month_start(datetime.now(timezone.utc)), partitions.AHEAD_MONTHS)
    with app.app_context():
        db.session.execute(sa.text(f"DROP TABLE {partitions.month_name(ahead)}"))
        db.session.commit()
        ingest._MONTHS_AHEAD = partitions.EnsureTimer()  # a process that has not checked yet
        store.write_activities([(1, [_valid()])])
        assert partitions.month_name(ahead) in {p.name for p in partitions.partitions(db.session.connection())}
        db.session.remove()


def test_the_downgrade_keeps_every_event(populated):
    from flask_migrate import downgrade, upgrade

    app, rows = populated
    with app.app_context():
        downgrade(revision="0016")
        assert _scalar("SELECT relkind FROM pg_class WHERE oid = 'activities'::regclass") == "r"
        assert _scalar("SELECT count(*) FROM activities") == len(rows)
        assert _scalar("SELECT count(*) FROM pg_constraint WHERE conname = 'uq_activities_source'") == 1
        db.session.remove()  # upgrade() runs on a connection of its own
        upgrade()
        assert _scalar("SELECT count(*) FROM activity_keys") == len(rows)
        db.session.remove()

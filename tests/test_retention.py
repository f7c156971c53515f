"""Retention: expires_at per event from its tenant's period, and `flask
prune` deleting expired events in bounded batches, tenant by tenant."""
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from activityweb import store
from activityweb.extensions import db
from activityweb.models import Activity, Tenant
from conftest import event

A = "/api/v1/activities"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def expiries(app, tenant_slug):
    with app.app_context():
        rows = db.session.execute(
            sa.select(Activity.title, Activity.occurred_at, Activity.expires_at)
            .join(Tenant, Tenant.id == Activity.tenant_id).where(Tenant.slug == tenant_slug)).all()
    return {title: (occurred, expires) for title, occurred, expires in rows}


def titles(app, tenant_slug):
    return set(expiries(app, tenant_slug))


def post(client, headers, *events):
    assert client.post(A, json=list(events), headers=headers).status_code == 201


def test_each_event_expires_after_its_tenants_retention(app, client, make_token, runner):
    acme, globex = make_token("acme"), make_token("globex")
    assert runner.invoke(args=["tenants", "retention", "globex", "30"]).exit_code == 0
    post(client, acme, event(title="one", occurred_at="2026-01-02T03:04:05.678901Z"))
    post(client, globex, event(title="two", occurred_at="2026-01-02T03:04:05.678901Z"),
         event(title="three"))  # no occurred_at: now
    occurred, expires = expiries(app, "acme")["one"]
    assert expires == occurred + timedelta(days=365) and expires.microsecond == 678901
    occurred, expires = expiries(app, "globex")["two"]
    assert expires == occurred + timedelta(days=30)
    occurred, expires = expiries(app, "globex")["three"]
    assert expires == occurred + timedelta(days=30)
    listed = client.get(A, headers=acme).get_json()["items"][0]
    assert "expires_at" not in listed  # bookkeeping, not part of the event


def test_seeded_events_expire_too(app, runner):
    assert runner.invoke(args=["seed", "--events", "50", "--tenant", "acme"]).exit_code == 0
    for occurred, expires in expiries(app, "acme").values():
        assert expires == occurred + timedelta(days=365)


def test_prune_deletes_the_expired_keeps_the_rest_and_other_tenants(app, client, make_token):
    acme, globex = make_token("acme"), make_token("globex")
    old = [event(title=f"old {i}", occurred_at=f"2025-{1 + i % 10:02d}-01T00:00:00Z") for i in range(25)]
    post(client, acme, *old, event(title="recent", occurred_at="2026-11-20T00:00:00Z"))
    post(client, globex, event(title="globex old", occurred_at="2025-01-01T00:00:00Z"))
    # A read mark on an expired event goes with it.
    first = client.get(f"{A}?limit=200", headers=acme).get_json()["items"][-1]
    assert client.patch(f"{A}/{first['id']}/read", headers=acme).status_code == 200
    with app.app_context():
        acme_id = db.session.execute(sa.select(Tenant.id).where(Tenant.slug == "acme")).scalar_one()
        pruned = store.prune(acme_id, batch_size=10, now=NOW)
        assert (pruned.deleted, pruned.batches) == (25, 3)
        assert pruned.deleted_through == datetime(2025, 10, 1, tzinfo=timezone.utc)
        assert db.session.execute(sa.select(sa.func.count()).select_from(store.read_marks)).scalar_one() == 0
        run = store.last_prune(acme_id)
        assert (run.deleted, run.retention_days, run.deleted_through) == (25, 365, pruned.deleted_through)
        again = store.prune(acme_id, batch_size=10, now=NOW)
        assert (again.deleted, again.batches) == (0, 0)
        assert store.last_prune(acme_id).id == run.id  # a pass that deleted nothing is not news
    assert titles(app, "acme") == {"recent"}
    assert titles(app, "globex") == {"globex old"}  # another tenant's expired events wait for its own prune
    # Full-text search forgot the deleted rows too.
    assert [a["title"] for a in client.get(f"{A}?q=old", headers=acme).get_json()["items"]] == []


def test_the_batch_size_bounds_each_transaction(app, client, make_token):
    post(client, make_token("acme"), *[event(title=f"e{i}", occurred_at="2024-06-01T00:00:00Z") for i in range(23)])
    log = []  # each DELETE statement, and the rows left after each commit (counted on another connection)

    def on_statement(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE FROM ACTIVITIES"):
            log.append("delete")

    def on_commit(session):
        with db.engine.connect() as other:
            log.append(other.execute(sa.select(sa.func.count()).select_from(store.activities)).scalar_one())

    with app.app_context():
        sa.event.listen(db.engine, "after_cursor_execute", on_statement)
        sa.event.listen(db.session, "after_commit", on_commit)
        try:
            store.prune(1, batch_size=5, now=NOW)
        finally:
            sa.event.remove(db.engine, "after_cursor_execute", on_statement)
            sa.event.remove(db.session, "after_commit", on_commit)
    # One DELETE per transaction, each taking at most five rows; then the record of the pass.
    assert log == ["delete", 18, "delete", 13, "delete", 8, "delete", 3, "delete", 0, 0]
    assert titles(app, "acme") == set()


def test_flask_prune_and_retention_commands(app, client, make_token, runner):
    acme = make_token("acme")
    post(client, acme, event(title="a year ago", occurred_at="2025-11-01T00:00:00Z"),
         event(title="last month", occurred_at="2026-10-20T00:00:00Z"), event(title="today"))
    make_token("globex")
    result = runner.invoke(args=["prune"])
    assert result.exit_code == 0 and "acme: deleted 1 expired events in 1 batches" in result.output
    assert "globex: deleted 0" in result.output
    # A shorter period applies to stored events only when asked.
    assert runner.invoke(args=["tenants", "retention", "acme", "30"]).exit_code == 0
    assert "deleted 0" in runner.invoke(args=["prune", "--tenant", "acme"]).output
    restamp = runner.invoke(args=["tenants", "retention", "acme", "30", "--restamp"])
    assert restamp.exit_code == 0 and "2 stored events restamped" in restamp.output
    occurred, expires = expiries(app, "acme")["last month"]
    assert expires == occurred + timedelta(days=30)
    assert "deleted 1" in runner.invoke(args=["prune", "--tenant", "acme", "--batch-size", "1"]).output
    assert titles(app, "acme") == {"today"}
    assert "kept 30 days" in runner.invoke(args=["tenants", "list"]).output
    assert runner.invoke(args=["tenants", "retention", "acme", "0"]).exit_code != 0
    assert runner.invoke(args=["prune", "--tenant", "nope"]).exit_code != 0


def test_the_feed_says_older_events_were_pruned(local_app):
    web = local_app.test_client()
    assert web.post(A, json=[event(title="ancient", occurred_at="2024-03-01T10:00:00Z"),
                             event(title="fresh")]).status_code == 201
    assert "retention-notice" not in web.get("/").get_data(as_text=True)
    with local_app.app_context():
        store.prune(1)
    html = web.get("/").get_data(as_text=True)
    assert 'id="retention-notice"' in html and "keeps\n      events 365 days" in html
    assert 'datetime="2024-03-01T10:00:00.000000Z"' in html
    assert "ancient" not in html and "fresh" in html
    assert 'id="retention-notice"' in web.get("/?type=x.*", headers={"HX-Request": "true"}).get_data(as_text=True)


def test_the_migration_gives_stored_events_their_expiry(backend, tmp_path, request):
    """Events stored before retention existed expire after their tenant's period (0005 -> 0006)."""
    from flask_migrate import downgrade, upgrade

    from conftest import unmigrated_app

    with unmigrated_app(backend, tmp_path, request, "ret") as app, app.app_context():
        upgrade(revision="0005")
        db.session.execute(sa.text("INSERT INTO tenants (slug, name, created_at) VALUES ('acme', 'Acme', :t)"),
                           {"t": NOW})
        # The model's table, minus expires_at: only the columns given are written.
        db.session.execute(sa.insert(Activity.__table__).values(
            id="01900000-0000-7000-8000-000000000001", tenant_id=1, type="a.b", source="api", source_id="x",
            title="before retention", priority="normal", tags=[], data={},
            occurred_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc), received_at=NOW))
        db.session.commit()
        upgrade()
        row = db.session.execute(sa.select(Activity.occurred_at, Activity.expires_at)).one()
        assert row.expires_at == row.occurred_at + timedelta(days=365)
        assert db.session.execute(sa.select(Tenant.retention_days)).scalar_one() == 365
        db.session.remove()  # our read locks would make the downgrade's ALTER TABLE wait forever
        downgrade(revision="0005")
        assert "expires_at" not in {c["name"] for c in sa.inspect(db.engine).get_columns("activities")}
        db.session.remove()
        db.engine.dispose()


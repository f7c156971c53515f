"""Rules stay exact when batches are written concurrently, each in its own transaction.

Each thread writes with `store.ingest.write_activities` (one transaction of
its own, as separate gunicorn workers do; the in-process batcher would
serialise them). All of a batch's rule work is in its ingest transaction, on
both databases: these check that the window's crossing is seen by exactly
one batch and that the cool-down's claim has one winner.
"""
from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timedelta, timezone

import pytest

from activityweb import store
from activityweb.store import ingest
from test_rules import _complete, add_rule, firings, rules_app, tenant  # noqa: F401 (fixtures)

WRITERS = 8


def write_concurrently(app, tenant_id: int, batches: list[list[dict]]) -> None:
    start = threading.Barrier(len(batches))
    errors: list[BaseException] = []

    def write(events):
        with app.app_context():
            try:
                start.wait(10)
                ingest.write_activities([(tenant_id, [_complete(e) for e in events])])
            except BaseException as exc:  # noqa: BLE001: reported below
                errors.append(exc)

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors


def test_a_window_crossed_by_concurrent_batches_fires_exactly_once(rules_app, tenant):
    # The threshold is every event of every batch: only the batch that commits
    # last can see it, and it must. Each batch's events are in a second of
    # their own (a counting bucket of their own), so no counter row is shared
    # and only the rule's lock orders the batches.
    per_batch = 5
    rule = add_rule(rules_app, tenant, condition="count", threshold=WRITERS * per_batch, window_seconds=600,
                    filter="type=deploy.failed")
    base = datetime.now(timezone.utc) - timedelta(seconds=60)
    batches = [[{"type": "deploy.failed", "title": f"b{b}-{i}",
                 "occurred_at": (base + timedelta(seconds=b)).isoformat()} for i in range(per_batch)]
               for b in range(WRITERS)]
    write_concurrently(rules_app, tenant, batches)
    fired = firings(rules_app, tenant, rule)
    assert len(fired) == 1, [f["reason"] for f in fired]
    assert fired[0]["reason"].startswith(f"{WRITERS * per_batch} matching events")


def test_concurrent_batches_claim_a_cool_down_once(rules_app, tenant):
    every = add_rule(rules_app, tenant, condition="every", cooldown_seconds=3600, filter="type=deploy.failed")
    counted = add_rule(rules_app, tenant, name="count", condition="count", threshold=1, window_seconds=600,
                       cooldown_seconds=3600, filter="type=deploy.failed")
    write_concurrently(rules_app, tenant, [[{"type": "deploy.failed", "title": f"b{b}"}] for b in range(WRITERS)])
    assert len(firings(rules_app, tenant, every)) == 1
    assert len(firings(rules_app, tenant, counted)) == 1


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_failed_evaluation_rolls_back_nothing_of_the_batch(rules_app, tenant, monkeypatch):
    """On PostgreSQL the evaluation shares the insert's transaction: a fault in
    it must not take the events with it."""
    from activityweb.store import firing

    add_rule(rules_app, tenant, condition="count", threshold=1, window_seconds=60)

    def broken(*args):
        raise RuntimeError("the rules are broken")

    monkeypatch.setattr(firing, "_fire", broken)
    write_concurrently(rules_app, tenant, [[{"type": "x.y", "title": f"kept {b}"}] for b in range(3)])
    with rules_app.app_context():
        assert store.count_activities(tenant) == 3
    assert firings(rules_app, tenant) == []


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_statement_the_database_refuses_in_the_pipeline_keeps_the_batch(rules_app, tenant):
    """The counts, totals and every-match firings go to PostgreSQL as one
    pipeline: a statement in it that the server fails (here a trigger raising
    on the counters) must roll back to the events alone, not lose them."""
    every = add_rule(rules_app, tenant, condition="every", filter="type=deploy.failed")
    add_rule(rules_app, tenant, name="count", condition="count", threshold=1, window_seconds=600,
             filter="type=deploy.failed")
    with counters_trigger(rules_app, "RAISE EXCEPTION 'counters refused';"):
        write_concurrently(rules_app, tenant, [[{"type": "deploy.failed", "title": f"kept {b}"}] for b in range(3)])
        with rules_app.app_context():
            assert store.count_activities(tenant) == 3
    assert firings(rules_app, tenant, every) == []  # its claim was in the pipeline that failed
    write_concurrently(rules_app, tenant, [[{"type": "deploy.failed", "title": "after"}]])
    assert len(firings(rules_app, tenant, every)) == 1  # the connections went on working


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_connection_lost_in_the_rules_pipeline_keeps_the_batch(rules_app, tenant):
    """The backend dies in the middle of the counts' pipeline (a trigger
    terminates its own backend): the batch is written again, alone, on a new
    connection, and nothing raises to the producer."""
    add_rule(rules_app, tenant, condition="count", threshold=1, window_seconds=600, filter="type=deploy.failed")
    with counters_trigger(rules_app, "PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW;"):
        write_concurrently(rules_app, tenant, [[{"type": "deploy.failed", "title": "kept"}]])
        with rules_app.app_context():
            assert store.count_activities(tenant) == 1


@contextlib.contextmanager
def counters_trigger(app, body: str):
    """A PL/pgSQL trigger before each write to rule_counters, running `body`:
    a fault inside the rules' pipeline, made by the server itself."""
    import sqlalchemy as sa

    from activityweb.extensions import db

    with app.app_context(), db.engine.begin() as conn:
        conn.execute(sa.text(f"CREATE OR REPLACE FUNCTION counters_fault() RETURNS trigger LANGUAGE plpgsql AS "
                             f"$$ BEGIN {body} END $$"))
        conn.execute(sa.text("CREATE TRIGGER counters_fault BEFORE INSERT OR UPDATE ON rule_counters "
                             "FOR EACH ROW EXECUTE FUNCTION counters_fault()"))
    try:
        yield
    finally:
        with app.app_context(), db.engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER counters_fault ON rule_counters"))

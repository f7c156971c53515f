"""Every filter of the feed has an index that serves it on PostgreSQL.

With sequential scans priced out (`enable_seqscan = off`), the plan of each
filtered first page must read `activities` through an index; a filter
without one would still show `Seq Scan on activities`.
"""
import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from activityweb import store
from activityweb.extensions import db
from activityweb.filters import parse_filter
from activityweb.serialize import decode_cursor
from conftest import event

FILTERS = ["", "type=deploy.succeeded", "type=claude.tool.*", "source=github", "actor=u-1", "entity_type=project",
           "entity_id=p-1", "entity_type=project&entity_id=p-1", "status=failed", "priority=high", "tag=deploy",
           "project=billing", "environment=production", "conversation_id=c-1", "session_id=s-1",
           "correlation_id=r-1", "since=2026-11-01&until=2026-11-02", "range=24h", "type=-claude.tool.started", "q=deploy", "q=npm+test"]


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("query", FILTERS)
def test_each_filter_reads_through_an_index(backend, app, client, auth_headers, query):
    client.post("/api/v1/activities", headers=auth_headers, json=[
        event(title=f"deploy {i}", type="deploy.succeeded", source="github", actor_id="u-1", entity_type="project",
              entity_id="p-1", status="failed", priority="high", tags=["deploy"], project="billing",
              environment="production", conversation_id="c-1", session_id="s-1", correlation_id="r-1")
        for i in range(20)])
    page = client.get("/api/v1/activities?limit=5", headers=auth_headers).get_json()
    with app.app_context():
        flt = parse_filter(MultiDict([tuple(kv.split("=", 1)) for kv in query.replace("+", " ").split("&") if kv]))
        for after in (None, decode_cursor(page["next_cursor"])):  # the first page and a later one
            select = store.apply_filter(sa.select(store.activities).where(store.activities.c.tenant_id == 1), flt)
            if after:
                select = select.where(store.activities.c.occurred_at <= after[0])
            compiled = select.order_by(*store.FEED_ORDER).limit(51).compile(
                db.engine, compile_kwargs={"render_postcompile": True})
            connection = db.session.connection()
            connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
            # The driver gets what SQLAlchemy would send: values through their type's bind processors.
            processors = compiled._bind_processors
            params = {k: processors[k](v) if k in processors else v for k, v in compiled.params.items()}
            plan = "\n".join(r[0] for r in connection.exec_driver_sql("EXPLAIN " + str(compiled), params))
            assert "Seq Scan on activities" not in plan, f"{query}:\n{plan}"
            assert "activities" in plan
        db.session.rollback()

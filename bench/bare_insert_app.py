"""The second ceiling for single-event POSTs: the bare Flask handler of
bare_app.py that also stores the event, with one INSERT ... VALUES on a
pooled psycopg connection in autocommit (one round trip, one commit), into
the same table as ActivityWeb, under the same gunicorn settings.

It is what a POST costs with nothing but the write: no authentication,
validation, idempotency key, rate limit, rules, live wake-up or answer
beyond the id. The table's rollup trigger still runs, as for any insert."""
import json
import os
import queue

import psycopg
from flask import Flask, request

from activityweb.ids import uuid7  # ids in insert order, as ActivityWeb's and raw_rows' are

app = Flask(__name__)
_DSN = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
_idle: "queue.LifoQueue[psycopg.Connection]" = queue.LifoQueue()
_INSERT = (
    "INSERT INTO activities (id, tenant_id, type, source, source_id, title, actor_id, actor_name, status, "
    "priority, tags, data, occurred_at, received_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "'normal', %s, %s, now(), now(), now() + interval '365 days')"
)


def _connection() -> psycopg.Connection:
    try:
        return _idle.get_nowait()
    except queue.Empty:
        # Quiet: the live trigger sends nothing (nobody listens to a ceiling).
        return psycopg.connect(_DSN, autocommit=True, options="-c activityweb.quiet=on")


with psycopg.connect(_DSN) as _conn:
    _TENANT = _conn.execute("SELECT id FROM tenants WHERE slug = 'bench'").fetchone()[0]


@app.post("/api/v1/activities")
def create():
    body = json.loads(request.get_data())
    event_id = uuid7()
    conn = _connection()
    try:
        conn.execute(_INSERT, (event_id, _TENANT, body["type"], body["source"], body["source_id"], body["title"],
                               body.get("actor_id"), body.get("actor_name"), body.get("status"),
                               json.dumps(body.get("tags", [])), json.dumps(body.get("data", {}))))
    finally:
        if not conn.broken:
            _idle.put(conn)
    return {"id": str(event_id), "title": body["title"]}, 201

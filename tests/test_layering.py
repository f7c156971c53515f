"""Data flows one way: edges -> store -> models.

Templates run no queries: the header's figures come from one context
processor, computed before rendering, and views hand templates plain values.
"""
import contextlib
import re
from pathlib import Path

import sqlalchemy as sa
from flask import before_render_template, template_rendered

from activityweb.extensions import db
from conftest import csrf_from, event, sign_in

PACKAGE = Path(__file__).resolve().parent.parent / "activityweb"
# SQL, or a session to run it on.
SQL = re.compile(r"db\.session|\bsa\.(select|text)\b|exec_driver_sql|\.execute\(")


def test_no_sql_outside_the_store():
    """Edges (api/, web/, integrations/), services and models reach the
    database only through store/. The live listener's own LISTEN connection
    is the one exception; what it reads goes through the store."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        if module.startswith("store/"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if SQL.search(line) and not (module == "live.py" and '"LISTEN {}"' in line):
                found.append(f"activityweb/{module}:{number}: {line.strip()}")
    assert found == []


def test_no_module_is_over_500_lines():
    long = {path.relative_to(PACKAGE).as_posix(): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 500}
    assert set(long) <= {"api/openapi.py"}, long


@contextlib.contextmanager
def queries_while_rendering(app):
    """SQL statements run while a template renders (between render_template's two signals)."""
    rendering, seen = [], []

    def started(sender, template, context, **extra):
        rendering.append(template.name)

    def finished(sender, template, context, **extra):
        rendering.pop()

    def statement(conn, cursor, sql, params, context, executemany):
        if rendering:
            seen.append((rendering[-1], sql.split()[0:6]))

    with app.app_context():
        engine = db.engine
    before_render_template.connect(started, app)
    template_rendered.connect(finished, app)
    sa.event.listen(engine, "before_cursor_execute", statement)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", statement)
        before_render_template.disconnect(started, app)
        template_rendered.disconnect(finished, app)


def test_no_template_runs_a_query(app, client, make_user, make_token):
    headers = make_token("acme", "ingest,read")
    make_user("admin@example.com", "acme", "admin")
    make_user("admin@example.com", "globex", "viewer")  # two tenants: the header offers a switch
    [one, _] = client.post("/api/v1/activities", headers=headers, json=[
        event(title="first", conversation_id="c-1", type="claude.prompt.submitted", entity_type="prompt"),
        event(title="second", conversation_id="c-1")]).get_json()["items"]
    sign_in(client, "admin@example.com")
    with queries_while_rendering(app) as seen:
        pages = ["/", "/?limit=1&type=test.*", "/?since=nonsense", "/stats", "/conversations", "/conversations/c-1",
                 f"/activities/{one['id']}", "/activities/no-such-id", "/settings/tokens", "/login"]
        for path in pages:
            response = client.get(path)
            assert response.status_code in (200, 400, 404), path
            assert client.get(path, headers={"HX-Request": "true"}).status_code in (200, 400, 404), path
        csrf = csrf_from(client.get("/").get_data(as_text=True))
        assert client.post(f"/activities/{one['id']}/read", headers={"HX-Request": "true", "X-CSRFToken": csrf}
                           ).status_code == 200
        assert client.post("/read-all", headers={"HX-Request": "true", "X-CSRFToken": csrf}).status_code == 200
        assert client.post("/settings/tokens", data={"name": "t", "scopes": ["read"], "csrf_token": csrf}
                           ).status_code == 303
        assert 'id="new-token-secret"' in client.get("/settings/tokens").get_data(as_text=True)
    assert seen == []


def test_the_header_comes_from_one_context_processor(app, client, make_user):
    make_user("both@example.com", "acme", "viewer")
    make_user("both@example.com", "globex", "viewer")
    sign_in(client, "both@example.com")
    html = client.get("/").get_data(as_text=True)
    assert re.search(r'id="unread-count"[^>]*data-count="0"', html)
    assert '<select name="tenant_id"' in html and ">acme<" in html and ">globex<" in html
    # An error page and a partial show no one's figures (and so ask the database nothing for them).
    assert 'id="unread-count"' not in client.get("/activities/no-such-id").get_data(as_text=True)
    assert 'id="unread-count"' not in client.get("/", headers={"HX-Request": "true"}).get_data(as_text=True)


def test_the_event_is_declared_once_and_the_schemas_agree_with_it():
    from activityweb.models import ACTIVITY_FIELDS, Activity
    from activityweb.schemas import ActivityIn
    from activityweb.serialize import ActivityOut

    columns = [c.name for c in Activity.__table__.columns]
    assert [f for f in columns if f in ACTIVITY_FIELDS] == list(ACTIVITY_FIELDS)
    assert set(ActivityIn.model_fields) == set(ACTIVITY_FIELDS) - {"id", "received_at"}
    assert set(ActivityOut.model_fields) == set(ACTIVITY_FIELDS) | {"tenant", "duplicate"}

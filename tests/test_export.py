"""Export: CSV and NDJSON are exactly the filtered list, streamed; the API,
the dashboard and `flask export` agree."""
import csv
import io
import json

import pytest

from conftest import csrf_from, event, sign_in

A = "/api/v1/activities"
QUERIES = ["", "type=deploy.*&status=failed", "q=billing", "source=github&since=2026-11-10T00:00:00Z",
           "tag=ci&priority=high", "read=false"]


@pytest.fixture
def corpus(client, auth_headers):
    events = []
    for i in range(260):
        events.append(event(
            title=f"{'Deploy billing' if i % 3 else 'Push'} #{i}, with \"quotes\"\nand a second line",
            type="deploy.failed" if i % 7 == 0 else ("deploy.succeeded" if i % 3 else "github.push"),
            source="github" if i % 3 == 0 else "api", status="failed" if i % 7 == 0 else "success",
            priority="high" if i % 5 == 0 else "normal", tags=["ci"] if i % 2 else [],
            data={"n": i, "nested": {"ok": i % 2 == 0}}, duration_ms=i * 10 if i % 4 else None,
            summary="ünïcødé ✓" if i % 11 == 0 else None,
            occurred_at=f"2026-11-{1 + i % 20:02d}T{i % 24:02d}:{i % 60:02d}:00Z"))
    for start in range(0, len(events), 100):
        assert client.post(A, json=events[start:start + 100], headers=auth_headers).status_code == 201
    first = client.get(f"{A}?limit=3", headers=auth_headers).get_json()["items"]
    for item in first:  # read=false has something to leave out
        client.patch(f"{A}/{item['id']}/read", headers=auth_headers)


def listed(client, headers, query):
    items, cursor = [], None
    while True:
        body = client.get(f"{A}?limit=200&{query}" + (f"&cursor={cursor}" if cursor else ""), headers=headers).get_json()
        items += body["items"]
        if not (cursor := body["next_cursor"]):
            return items


def as_csv_row(item: dict) -> dict:
    """The documented CSV shape of a listed event."""
    def cell(value):
        if value is None:
            return ""
        if isinstance(value, (list, dict)):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return str(value)

    return {key: cell(value) for key, value in item.items()}


@pytest.mark.parametrize("query", QUERIES)
def test_ndjson_and_csv_are_exactly_the_filtered_list(client, auth_headers, corpus, query):
    expected = listed(client, auth_headers, query)
    assert expected or query == "tag=ci&priority=high"
    ndjson = client.get(f"{A}/export?format=ndjson&{query}", headers=auth_headers)
    assert ndjson.status_code == 200 and ndjson.is_streamed
    assert ndjson.headers["Content-Type"] == "application/x-ndjson"
    assert [json.loads(line) for line in ndjson.get_data(as_text=True).splitlines()] == expected
    exported = client.get(f"{A}/export?format=csv&{query}", headers=auth_headers)
    assert exported.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert 'attachment; filename="activities-acme-' in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert rows == [as_csv_row(item) for item in expected]


def test_csv_defuses_spreadsheet_formulas(client, auth_headers):
    client.post(A, json=[event(title="=HYPERLINK(\"http://evil\")", summary="+1", actor_name="@me"),
                         event(title="-rf", source_id="x")], headers=auth_headers)
    rows = list(csv.DictReader(io.StringIO(client.get(f"{A}/export", headers=auth_headers).get_data(as_text=True))))
    assert {(r["title"], r["summary"], r["actor_name"]) for r in rows} == {
        ("'=HYPERLINK(\"http://evil\")", "'+1", "'@me"), ("'-rf", "", "")}


def test_export_checks_its_parameters_and_tenant(client, auth_headers, make_token, corpus):
    from test_openapi import check

    spec = client.get("/api/v1/openapi.json").get_json()
    assert client.get(f"{A}/export?format=xlsx", headers=auth_headers).status_code == 400
    check(spec, client.get(f"{A}/export?format=xlsx", headers=auth_headers), f"{A}/export", "get")
    check(spec, client.get(f"{A}/export?colour=red", headers=auth_headers), f"{A}/export", "get")
    check(spec, client.get(f"{A}/export"), f"{A}/export", "get")
    other = client.get(f"{A}/export?format=ndjson", headers=make_token("globex", "read"))
    assert other.status_code == 200 and other.get_data() == b""


def test_the_dashboard_exports_what_the_page_shows_with_the_session(app, client, make_user, auth_headers, corpus):
    make_user()
    assert client.get("/export?format=csv").status_code == 302  # sign in first
    sign_in(client, "ada@example.com")
    page = client.get("/?type=deploy.*&status=failed").get_data(as_text=True)
    assert 'href="/export?type=deploy.*&amp;status=failed&amp;format=csv"' in page
    exported = client.get("/export?type=deploy.*&status=failed&format=ndjson")
    assert [json.loads(line) for line in exported.get_data(as_text=True).splitlines()] == \
        listed(client, auth_headers, "type=deploy.*&status=failed")
    # The signed-in user's own read state, not the token's: a new person has
    # read everything up to their first visit, so only what arrives after is unread.
    def unread_export() -> list[str]:
        answer = client.get("/export?type=deploy.*&status=failed&read=false&format=ndjson")
        return [json.loads(line)["id"] for line in answer.get_data(as_text=True).splitlines()]

    assert unread_export() == []
    assert listed(client, auth_headers, "type=deploy.*&status=failed&read=false")  # the token has read few
    posted = client.post(A, json=event(type="deploy.failed", status="failed", title="After the first visit"),
                         headers=auth_headers)
    assert unread_export() == [posted.get_json()["id"]]
    client.post(f"/activities/{posted.get_json()['id']}/read", headers={"X-CSRFToken": csrf_from(page)})
    assert unread_export() == []


def test_flask_export(app, runner, client, auth_headers, corpus, tmp_path):
    out = tmp_path / "deploys.ndjson"
    result = runner.invoke(args=["export", "--tenant", "acme", "--where", "type=deploy.*&status=failed",
                                 "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in out.read_text().splitlines()] == \
        listed(client, auth_headers, "type=deploy.*&status=failed")
    as_csv = runner.invoke(args=["export", "--tenant", "acme", "--format", "csv", "--where", "source=github"])
    assert list(csv.DictReader(io.StringIO(as_csv.stdout))) == [
        as_csv_row(item) for item in listed(client, auth_headers, "source=github")]
    assert "not a filter" in runner.invoke(args=["export", "--tenant", "acme", "--where", "colour=red"]).output
    assert runner.invoke(args=["export", "--tenant", "acme", "--where", "read=false"]).exit_code != 0
    assert runner.invoke(args=["export", "--tenant", "nope"]).exit_code != 0

"""GET /api/v1/activities/stats and the stats page, on both databases."""
import re

import pytest

from conftest import event

S = "/api/v1/activities/stats"
DAY = "2026-11-20"


def at(hour: int, minute: int = 0, day: str = DAY) -> str:
    return f"{day}T{hour:02d}:{minute:02d}:00Z"


def percentile_cont(values, p):
    """PostgreSQL's percentile_cont, by hand."""
    values = sorted(values)
    rank = p * (len(values) - 1)
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return round(values[low] + (values[high] - values[low]) * (rank - low), 3)


# A percentile read from the rollups' histogram is in the true value's bucket:
# buckets are 2^(1/4) wide, so within 19 %.
BUCKET_ERROR = 2 ** 0.25 - 1


def near(value, exact):
    """Within one histogram bucket of `exact`."""
    return value == pytest.approx(exact, rel=BUCKET_ERROR)


def durations_near(got: dict, values: list[int]) -> bool:
    return (got["count"] == len(values) and got["max"] == max(values)
            and near(got["p50"], percentile_cont(values, 0.5)) and near(got["p95"], percentile_cont(values, 0.95)))


BASH = [120, 340, 560, 1000, 4250, 9000, 30]
EDIT = [31, 12, 18]


@pytest.fixture
def corpus(client, auth_headers):
    events = [
        *[event(title=f"Bash {i}", type="claude.tool.completed", source="claude_code", entity_type="tool",
                entity_id="Bash", actor_id="claude", actor_name="Claude", duration_ms=ms,
                status="failed" if i < 2 else "success", occurred_at=at(9 + i % 3, i))
          for i, ms in enumerate(BASH)],
        *[event(title=f"Edit {i}", type="claude.tool.completed", source="claude_code", entity_type="tool",
                entity_id="Edit", actor_id="claude", actor_name="Claude", duration_ms=ms, status="success",
                occurred_at=at(10, 30 + i)) for i, ms in enumerate(EDIT)],
        event(title="Deploy", type="deployment.succeeded", source="github", actor_id="u-ada", actor_name="Ada",
              entity_type="project", entity_id="billing", status="success", priority="high",
              duration_ms=94_000, occurred_at=at(13)),
        event(title="Started", type="deployment.started", source="github", status="started", occurred_at=at(12)),
        event(title="Next day", type="lead.new", source="hubspot", occurred_at=at(8, day="2026-11-22")),
    ]
    response = client.post("/api/v1/activities", json=events, headers=auth_headers)
    assert response.status_code == 201, response.get_json()
    return events


def test_counts_rates_and_durations(client, auth_headers, corpus):
    body = client.get(S, headers=auth_headers).get_json()
    assert body["total"] == 13
    assert body["first_at"] == "2026-11-20T09:00:00.000000Z" and body["last_at"] == "2026-11-22T08:00:00.000000Z"
    assert body["by_type"] == [{"value": "claude.tool.completed", "count": 10},
                               {"value": "deployment.started", "count": 1},
                               {"value": "deployment.succeeded", "count": 1}, {"value": "lead.new", "count": 1}]
    assert body["by_source"] == [{"value": "claude_code", "count": 10}, {"value": "github", "count": 2},
                                 {"value": "hubspot", "count": 1}]
    assert {s["value"]: s["count"] for s in body["by_status"]} == {"success": 9, "failed": 2, "started": 1, None: 1}
    assert body["by_priority"] == [{"value": "normal", "count": 12}, {"value": "high", "count": 1}]
    assert body["failures"] == {"failed": 2, "succeeded": 9, "rate": pytest.approx(2 / 11)}
    assert body["path"] == "rollups" and body["scanned_since"] is None and body["top_lists_since"] is None
    assert durations_near(body["duration_ms"], BASH + EDIT + [94_000])
    assert [tool["tool"] for tool in body["tools"]] == ["Bash", "Edit"]
    assert durations_near(body["tools"][0], BASH) and durations_near(body["tools"][1], EDIT)
    assert body["top_actors"] == [{"id": "claude", "name": "Claude", "count": 10},
                                  {"id": "u-ada", "name": "Ada", "count": 1}]
    assert body["top_entities"][0] == {"type": "tool", "id": "Bash", "name": None, "count": 7}


def test_a_scan_gives_exact_percentiles(client, auth_headers, corpus):
    """`q` is not in the rollups: the answer is a scan, and says so."""
    body = client.get(f"{S}?q=bash", headers=auth_headers).get_json()
    assert body["path"] == "scan" and body["total"] == 7
    assert body["duration_ms"] == {"count": 7, "p50": percentile_cont(BASH, 0.5),
                                   "p95": percentile_cont(BASH, 0.95), "max": 9000}
    assert body["tools"] == [{"tool": "Bash", "count": 7, "p50": percentile_cont(BASH, 0.5),
                              "p95": percentile_cont(BASH, 0.95), "max": 9000}]


def test_time_series_by_day_and_hour_with_empty_buckets(client, auth_headers, corpus):
    days = client.get(f"{S}?bucket=day", headers=auth_headers).get_json()["series"]
    assert days["bucket"] == "day"
    by_day = {p["at"][:10]: (p["count"], p["failed"]) for p in days["points"]}
    assert by_day == {"2026-11-20": (12, 2), "2026-11-21": (0, 0), "2026-11-22": (1, 0)}
    hours = client.get(f"{S}?since={DAY}T09:00:00Z&until={DAY}T14:00:00Z", headers=auth_headers).get_json()
    assert hours["series"]["bucket"] == "hour" and hours["total"] == 12
    points = {p["at"][11:13]: p for p in hours["series"]["points"]}
    assert sorted(points) == ["09", "10", "11", "12", "13", "14"]
    assert points["10"]["by_source"] == {"claude_code": 5} and points["09"]["failed"] == 1
    assert points["13"]["by_source"] == {"github": 1} and points["14"]["count"] == 0
    automatic = client.get(S, headers=auth_headers).get_json()["series"]  # hours, for up to three days
    assert automatic["bucket"] == "hour" and len(automatic["points"]) == 48


def test_stats_follow_the_filters(client, auth_headers, corpus, make_token):
    body = client.get(f"{S}?source=github", headers=auth_headers).get_json()
    assert body["total"] == 2 and body["tools"] == [] and body["duration_ms"]["count"] == 1
    assert client.get(f"{S}?q=bash&status=failed", headers=auth_headers).get_json()["total"] == 2
    assert client.get(f"{S}?read=false", headers=auth_headers).get_json()["total"] == 13
    client.post("/api/v1/activities/read-all?source=claude_code", headers=auth_headers)
    assert client.get(f"{S}?read=false", headers=auth_headers).get_json()["total"] == 3
    empty = client.get(S, headers=make_token("globex", "read")).get_json()  # another tenant sees none of it
    assert empty["total"] == 0 and empty["series"]["points"] == [] and empty["duration_ms"] == {
        "count": 0, "p50": None, "p95": None, "max": None}
    assert empty["failures"]["rate"] is None


def test_bad_stats_parameters(client, auth_headers, corpus):
    assert client.get(f"{S}?bucket=week", headers=auth_headers).status_code == 400
    too_fine = client.get(f"{S}?bucket=hour&since=2020-01-01", headers=auth_headers)
    assert too_fine.status_code == 400 and too_fine.get_json()["error"]["details"][0]["field"] == "bucket"
    assert client.get(f"{S}?colour=red", headers=auth_headers).status_code == 400
    assert client.get(S).status_code == 401


def test_stats_answers_match_the_document(client, auth_headers, corpus):
    from test_openapi import check

    spec = client.get("/api/v1/openapi.json").get_json()
    check(spec, client.get(S, headers=auth_headers), S, "get")
    check(spec, client.get(f"{S}?bucket=week", headers=auth_headers), S, "get")


def test_stats_page_draws_the_filter(local_app):
    web = local_app.test_client()
    web.post("/api/v1/activities", json=[event(title=f"e{i}", source="github" if i % 2 else "api",
                                              status="failed" if i % 3 == 0 else "success",
                                              occurred_at=at(9 + i % 4)) for i in range(12)])
    html = web.get("/stats?source=github").get_data(as_text=True)
    assert 'id="events-over-time"' in html and 'id="failures-over-time"' in html
    values = [int(v) for v in re.findall(r'<rect class="bar [^"]*"[^>]*data-value="(\d+)" data-series="github"', html)]
    assert sum(values) == 6 and 'data-series="api"' not in html
    assert 'id="stat-total">6<' in html
    partial = web.get("/stats?source=api", headers={"HX-Request": "true"})
    assert "<html" not in partial.get_data(as_text=True) and "HX-Request" in partial.headers["Vary"]
    bad = web.get("/stats?since=soon", headers={"HX-Request": "true"})
    assert bad.status_code == 400 and "That filter does not work" in bad.get_data(as_text=True)
